"""Training: one `TrainConfig`, one `train(config)` that notebooks call, and a CLI.

    python -m ctx.train --loss ce --out runs/ce
    python -m ctx.train --loss contextrast --negatives bane --out runs/contextrast
    torchrun --nproc_per_node=2 -m ctx.train --device cpu ...      # data-parallel (DDP)

Checkpoints and histories are written atomically to `--out`; running the same command again
resumes where it stopped (or just loads a finished run), and a resumed run continues exactly as
an uninterrupted one would. Taught in notebooks 01 and 04.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from itertools import islice
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from ctx.io import load_checkpoint, read_json, save_checkpoint, write_json
from ctx.labels import IGNORE_INDEX
from ctx.metrics import ConfusionMatrix
from ctx.model import ModelConfig, SegmentationNet, build_model

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
# Fields that may differ between a checkpoint and the run that resumes or loads it.
RUN_FIELDS = {
    "max_steps",
    "epochs",
    "device",
    "progress",
    "out",
    "eval_every",
    "threads",
    "num_workers",
}


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults: the CPU tutorial setting on digit scenes."""

    # loss
    loss: str = "ce"  # "ce" | "contextrast"
    negatives: str = "bane"  # "bane" | "random"
    fusion: bool = True
    stages: tuple[int, ...] | None = None  # stages in the PA sum; None = all
    tau: float = 0.1
    alpha: float = 0.1
    stage_weights: tuple[float, ...] = (0.1, 0.3, 0.7, 1.0)
    w_l: float = 0.3
    w_h: float = 0.7
    k: float = 0.5
    fill: bool = True
    max_positives: int = 1024
    max_negatives: int = 256
    detach_anchors: bool = False
    warmup_steps: int = 0  # CE-only steps before the contrastive term starts
    # data
    dataset: str = "digits"  # "digits" | "cityscapes" | "camvid"
    data_root: str | None = None
    image_size: int = 64
    train_scenes: int = 3000
    val_scenes: int = 500
    data_seed: int = 0
    # digit scenes (ctx.data.SceneConfig; the regimes in ctx.regimes set these)
    min_digits: int = 2
    max_digits: int = 5
    max_overlap: float = 0.1
    touching: float = 0.0
    distractors: int = 0
    train_digits_per_class: int | None = None  # None: all 350 per class
    # model
    arch: str = "plain"
    widths: tuple[int, ...] = (16, 32, 64, 128)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    embed_dim: int = 64
    # optimisation
    max_steps: int = 6000
    epochs: int | None = None  # if set, overrides max_steps
    batch_size: int = 16  # global: split evenly over processes under DDP
    lr: float = 3e-3
    weight_decay: float = 1e-4
    pct_start: float = 0.25  # OneCycle warm-up fraction
    bf16: bool = False  # bf16 autocast, CUDA only
    seed: int = 0
    # run
    device: str = "auto"
    out: str = "runs/ce"
    eval_every: int = 1  # epochs
    threads: int | None = None
    num_workers: int = 0
    progress: bool = True

    def model_config(self) -> ModelConfig:
        return ModelConfig(self.arch, tuple(self.widths), tuple(self.blocks), self.embed_dim)

    def scene_config(self):
        """The digit-scene composition of every split (ctx.data.SceneConfig)."""
        from ctx.data import SceneConfig

        return SceneConfig(
            image_size=self.image_size,
            min_digits=self.min_digits,
            max_digits=self.max_digits,
            max_overlap=self.max_overlap,
            touching=self.touching,
            distractors=self.distractors,
        )

    def digit_scenes(self, split: str, num_scenes: int | None = None):
        """A split of this config's digit scenes (training ones augmented, from the limited
        pool when `train_digits_per_class` is set). num_scenes None: the config's count for
        train/val, the frozen 500 for test."""
        from ctx.data import DigitScenes

        counts = {"train": self.train_scenes, "val": self.val_scenes, "test": None}
        return DigitScenes(
            split,
            counts[split] if num_scenes is None else num_scenes,
            self.scene_config(),
            self.data_seed,
            augment=split == "train",
            digits_per_class=self.train_digits_per_class if split == "train" else None,
        )


def resolve_device(name: str = "auto") -> torch.device:
    """ "auto" picks cuda, then mps, then cpu; an explicit name must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.split(":")[0] not in {"cpu", "cuda", "mps"}:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda (or cuda:N) or mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' asked for but CUDA is not available here: use --device auto or cpu"
        )
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError(
            "device 'mps' asked for but MPS is not available here: use --device auto or cpu"
        )
    return torch.device(name)


def make_datasets(cfg: TrainConfig) -> tuple[Dataset, Dataset, int]:
    """(train, val, num_classes) for the configured dataset."""
    if cfg.dataset == "digits":
        from ctx.data import NUM_CLASSES

        return cfg.digit_scenes("train"), cfg.digit_scenes("val"), NUM_CLASSES
    if cfg.dataset in {"cityscapes", "camvid"}:
        from ctx import benchmark_data

        return benchmark_data.make_datasets(cfg.dataset, cfg.data_root, cfg.image_size)
    raise ValueError(f"unknown dataset {cfg.dataset!r}: use digits, cityscapes or camvid")


def make_loss(cfg: TrainConfig, num_classes: int):
    """The loss a config names, callable as loss(logits, embeddings, labels) -> (total, parts)."""
    from ctx.losses import ContextrastLoss, CrossEntropyLoss

    if cfg.loss == "ce":
        return CrossEntropyLoss(num_classes, ignore_index=IGNORE_INDEX)
    if cfg.loss == "contextrast":
        return ContextrastLoss(
            num_classes,
            tau=cfg.tau,
            alpha=cfg.alpha,
            stage_weights=tuple(cfg.stage_weights),
            w_l=cfg.w_l,
            w_h=cfg.w_h,
            fusion=cfg.fusion,
            negatives=cfg.negatives,
            k=cfg.k,
            fill=cfg.fill,
            stages=None if cfg.stages is None else tuple(cfg.stages),
            ignore_index=IGNORE_INDEX,
            max_positives=cfg.max_positives,
            max_negatives=cfg.max_negatives,
            detach_anchors=cfg.detach_anchors,
            seed=cfg.seed,
        )
    raise ValueError(f"unknown loss {cfg.loss!r}: use ce or contextrast")


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset: Dataset,
    device: torch.device,
    num_classes: int,
    batch_size: int = 64,
    rank: int = 0,
    world: int = 1,
) -> dict:
    """Metrics (percent) of `model` on `dataset`; under DDP each rank takes every world-th item
    and the confusion matrices are summed."""
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes)
    indices = list(range(rank, len(dataset), world))
    for start in range(0, len(indices), batch_size):
        items = [dataset[i] for i in indices[start : start + batch_size]]
        images = torch.stack([im for im, _ in items]).to(device)
        labels = torch.stack([lab for _, lab in items]).to(device)
        cm.update(model(images).argmax(1), labels)
    cm.all_reduce()
    model.train(was_training)
    return cm.summary()


def config_mismatch(saved: dict, cfg: TrainConfig) -> list[str]:
    """Fields (other than run-length and run-place ones) where a saved config differs. A field
    the saved config lacks (it predates the field) counts as that field's default."""
    now = json.loads(json.dumps(asdict(cfg)))
    saved = {**json.loads(json.dumps(asdict(TrainConfig()))), **saved}
    return [
        f"{k}: checkpoint {saved.get(k)!r} vs now {now[k]!r}"
        for k in now
        if k not in RUN_FIELDS and saved.get(k) != now[k]
    ]


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[SegmentationNet, dict]:
    """(model in eval mode on `device`, checkpoint dict) from a checkpoint file or run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    ckpt = load_checkpoint(path, map_location=device)
    cfg = config_from_dict(ckpt["config"])
    model = build_model(cfg.model_config(), ckpt["num_classes"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise ValueError(
            f"{path} does not match the model its config describes ({e}); retrain"
        ) from e
    return model.to(device).eval(), ckpt


def config_from_dict(d: dict) -> TrainConfig:
    """A TrainConfig from a JSON dict (lists become tuples; unknown keys are an error)."""
    names = {f.name for f in fields(TrainConfig)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(names)}")
    return TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _dist_setup(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """(rank, world, device); initialises torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, resolve_device(cfg.device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def train(
    cfg: TrainConfig, on_epoch_end: Callable[[torch.nn.Module, dict], None] | None = None
) -> dict:
    """Train (or resume, or just load a finished run) and return
    {"model", "history", "checkpoint", "config"}. `on_epoch_end(model, entry)` runs on rank 0
    after each evaluation, e.g. to snapshot anchors."""
    rank, world, device = _dist_setup(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {world} processes")
    if cfg.bf16 and device.type != "cuda":
        raise ValueError("--bf16 autocast is for CUDA devices only; drop it on cpu/mps")
    torch.manual_seed(cfg.seed)
    train_set, val_set, num_classes = make_datasets(cfg)
    per_rank = cfg.batch_size // world
    if world > 1:
        print(
            f"[rank {rank}/{world}] {device}, {per_rank} images per step",
            file=sys.stderr,
            flush=True,
        )
    sampler = DistributedSampler(
        train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    loader = DataLoader(
        train_set, batch_size=per_rank, sampler=sampler, drop_last=True, num_workers=cfg.num_workers
    )
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_set)} training images give no full batch of {cfg.batch_size}")
    max_steps = cfg.epochs * steps_per_epoch if cfg.epochs else cfg.max_steps

    model = build_model(cfg.model_config(), num_classes).to(device)
    loss_fn = make_loss(cfg, num_classes)
    ce_fn = make_loss(dataclasses.replace(cfg, loss="ce"), num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=max_steps, pct_start=cfg.pct_start
    )
    out = Path(cfg.out)
    # Wall seconds and this process's CPU seconds spent training (evaluation excluded); the CPU
    # seconds are what a step costs on a dedicated core, whatever else the machine runs.
    step, history, train_seconds, cpu_seconds = 0, [], 0.0, 0.0
    if (out / CHECKPOINT).exists():
        ckpt = load_checkpoint(out / CHECKPOINT, map_location=device)
        bad = config_mismatch(ckpt["config"], cfg)
        if bad:
            raise ValueError(
                f"{out / CHECKPOINT} was trained with other settings ({'; '.join(bad)}); "
                f"use another --out, or delete that folder to start again"
            )
        model.load_state_dict(ckpt["model"])
        step, history, train_seconds = ckpt["step"], ckpt["history"], ckpt["train_seconds"]
        cpu_seconds = ckpt.get("train_cpu_seconds", 0.0)
        if ckpt["max_steps"] != max_steps:
            state = "a finished" if step >= ckpt["max_steps"] else "an unfinished"
            raise ValueError(
                f"{out} holds {state} run of {ckpt['max_steps']} steps, not {max_steps} (the "
                f"learning-rate schedule depends on the length); use another --out"
            )
        if step < max_steps:
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])

    ddp = world > 1
    net = model
    if ddp:
        unused = cfg.loss == "ce" or cfg.warmup_steps > 0
        net = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=unused,
        )

    def checkpoint() -> None:
        if rank == 0:
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "step": step,
                    "max_steps": max_steps,
                    "history": history,
                    "train_seconds": train_seconds,
                    "train_cpu_seconds": cpu_seconds,
                    "config": json.loads(json.dumps(asdict(cfg))),
                    "num_classes": num_classes,
                    "world_size": world,
                },
                out / CHECKPOINT,
            )
            write_json({"config": asdict(cfg), "history": history}, out / HISTORY)
        if ddp:
            dist.barrier()

    model.train()
    bar = tqdm(
        total=max_steps,
        initial=step,
        desc=f"train {cfg.loss}",
        disable=not cfg.progress or rank != 0,
        dynamic_ncols=True,
    )
    sums: dict[str, float] = {}
    count = 0
    try:
        while step < max_steps:
            epoch, offset = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch)
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)
            tic, cpu_tic = time.perf_counter(), time.process_time()
            for images, labels in islice(loader, offset, steps_per_epoch):
                images, labels = (
                    images.to(device, non_blocking=True),
                    labels.to(device, non_blocking=True),
                )
                contrast = cfg.loss != "ce" and step >= cfg.warmup_steps
                fn = loss_fn if contrast else ce_fn
                if hasattr(fn, "reseed"):
                    fn.reseed(cfg.seed * 1_000_003 + step * world + rank)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                    out_net = net(images, return_embeddings=contrast)
                    logits, embeddings = out_net if contrast else (out_net, None)
                    total, parts = fn(
                        logits.float(), embeddings and [e.float() for e in embeddings], labels
                    )
                if not torch.isfinite(total):
                    raise FloatingPointError(
                        f"non-finite loss {total.item()} at step {step}: lower --lr or "
                        f"--alpha, or check the data; the last checkpoint is kept"
                    )
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
                sched.step()
                step += 1
                for key in ("ce", "pa"):
                    sums[key] = sums.get(key, 0.0) + float(parts[key].detach())
                sums["loss"] = sums.get("loss", 0.0) + float(total.detach())
                count += 1
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{sums['loss'] / count:.3f}")
                if step >= max_steps:
                    break
            train_seconds += time.perf_counter() - tic
            cpu_seconds += time.process_time() - cpu_tic
            epoch_done = step % steps_per_epoch == 0
            if (
                epoch_done and (step // steps_per_epoch) % cfg.eval_every == 0
            ) or step >= max_steps:
                val = evaluate(model, val_set, device, num_classes, rank=rank, world=world)
                entry = {
                    "epoch": step / steps_per_epoch,
                    "step": step,
                    "train_seconds": round(train_seconds, 2),
                    "train_cpu_seconds": round(cpu_seconds, 2),
                    "lr": sched.get_last_lr()[0],
                    "train": {k: v / max(count, 1) for k, v in sums.items()},
                    "val": {k: val[k] for k in ("miou", "boundary_miou", "pixel_acc")},
                    "val_per_class_iou": val["per_class_iou"],
                }
                history.append(entry)
                sums, count = {}, 0
                if rank == 0:
                    tqdm.write(
                        f"step {step:5d} | epoch {entry['epoch']:5.1f} | loss {entry['train'].get('loss', 0):.3f}"
                        f" | val mIoU {val['miou']:5.1f} % | boundary {val['boundary_miou']:5.1f} %"
                        f" | {train_seconds / 60:5.1f} min"
                    )
                    sys.stdout.flush()
                    if on_epoch_end is not None:
                        on_epoch_end(model, entry)
                checkpoint()
    except KeyboardInterrupt:  # keep what was trained: running again resumes from here
        checkpoint()
        raise
    bar.close()
    if ddp:
        dist.barrier()
    return {
        "model": model.eval(),
        "history": history,
        "checkpoint": out / CHECKPOINT,
        "config": cfg,
        "num_classes": num_classes,
    }


def train_or_load(cfg: TrainConfig, device: str | torch.device | None = None) -> dict:
    """Notebook helper (check, then train or load): load `cfg.out` if it holds this finished
    run, otherwise train (resuming what is there)."""
    path = Path(cfg.out) / CHECKPOINT
    if path.exists():
        ckpt = load_checkpoint(path, map_location="cpu")
        same_length = all(ckpt["config"].get(k) == getattr(cfg, k) for k in ("max_steps", "epochs"))
        finished = ckpt["step"] >= ckpt["max_steps"]
        if not config_mismatch(ckpt["config"], cfg) and same_length and finished:
            model, ckpt = load_model(path, device or resolve_device(cfg.device))
            return {
                "model": model,
                "history": ckpt["history"],
                "checkpoint": path,
                "config": cfg,
                "num_classes": ckpt["num_classes"],
            }
    return train(cfg)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ctx.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", type=Path, help="JSON file of TrainConfig fields (flags override it)"
    )
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = argparse.SUPPRESS
        if f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif "tuple" in str(f.type):
            elem = float if "float" in str(f.type) else int
            p.add_argument(flag, type=elem, nargs="+", default=default, metavar="N")
        else:
            kind = {"int": int, "float": float}.get(str(f.type).split(" |")[0], str)
            p.add_argument(flag, type=kind, default=default)
    return p


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """CLI flags (and an optional --config JSON) -> TrainConfig."""
    args = vars(_parser().parse_args(argv))
    base = read_json(args.pop("config")) if args.get("config") else {}
    args.pop("config", None)
    return config_from_dict({**base, **args})


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    try:
        result = train(cfg)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    if int(os.environ.get("RANK", "0")) == 0:
        last = result["history"][-1]["val"] if result["history"] else {}
        print(json.dumps({"checkpoint": str(result["checkpoint"]), **last}))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
