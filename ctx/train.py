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
import contextlib
import dataclasses
import difflib
import json
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from itertools import islice
from pathlib import Path
from typing import NoReturn

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from ctx.io import load_checkpoint, save_checkpoint, write_json
from ctx.labels import IGNORE_INDEX
from ctx.metrics import ConfusionMatrix
from ctx.model import ModelConfig, SegmentationNet, build_model
from ctx.validation import NO_RULE, ConfigError, Rule, field_types, inert_fields, show, validate

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


def _contrast_only(c) -> str | None:
    return None if c.loss == "contextrast" else "it only acts with loss contextrast"


def _fusion_only(c) -> str | None:
    return _contrast_only(c) or (None if c.fusion else "it only acts with fusion on")


def _bane_only(c) -> str | None:
    return _contrast_only(c) or (
        None if c.negatives == "bane" else "it only acts with negatives bane"
    )


def _digits_only(c) -> str | None:
    return None if c.dataset == "digits" else "it only acts on the digits dataset"


def _benchmark_only(c) -> str | None:
    return None if c.dataset != "digits" else "digit scenes are generated, not read from a folder"


def _resnet_only(c) -> str | None:
    return None if c.arch == "resnet" else "only arch resnet has blocks"


def _steps_only(c) -> str | None:
    return None if c.epochs is None else "epochs sets the length of the run"


# One rule per TrainConfig field (a new field needs a line here; tests/test_cli.py checks):
# the type comes from the annotation; bounds, choices, the fix to suggest, when it does nothing.
RULES: dict[str, Rule] = {
    "loss": Rule("ce: cross-entropy only; contextrast: CE + alpha * PA", choices=("ce", "contextrast")),
    "negatives": Rule("PA negatives: bane (next to wrong regions) or random", choices=("bane", "random"), inert=_contrast_only),
    "fusion": Rule("fuse each stage's anchors with the last stage's", inert=_contrast_only),
    "stages": Rule("stage indices in the PA sum; unset: all stages", ge=0, inert=_contrast_only),
    "tau": Rule("InfoNCE temperature", gt=0, inert=_contrast_only),
    "alpha": Rule("weight of the PA term", ge=0, inert=_contrast_only),
    "stage_weights": Rule("PA weight per stage, one per --widths entry", ge=0, inert=_contrast_only),
    "w_l": Rule("fusion weight of the lower stage (w_l + w_h = 1)", ge=0, le=1, inert=_fusion_only),
    "w_h": Rule("fusion weight of the last stage (w_l + w_h = 1)", ge=0, le=1, inert=_fusion_only),
    "k": Rule("fraction of boundary pixels BANE keeps", gt=0, le=1, inert=_bane_only),
    "fill": Rule("top hard negatives up with random ones", inert=_contrast_only),
    "max_positives": Rule("positives sampled per anchor and process", ge=1, inert=_contrast_only),
    "max_negatives": Rule("negatives per anchor and process", ge=1, inert=_contrast_only),
    "detach_anchors": Rule("no gradient through the anchors", inert=_contrast_only),
    "warmup_steps": Rule("CE-only steps before the PA term starts", ge=0, inert=_contrast_only),
    "dataset": Rule("digits (shipped) or a benchmark in --data-root", choices=("digits", "cityscapes", "camvid")),
    "data_root": Rule("folder holding cityscapes or camvid", inert=_benchmark_only),
    "image_size": Rule("side of the square training images, px", ge=1),
    "train_scenes": Rule("digit scenes to train on", ge=1, inert=_digits_only),
    "val_scenes": Rule("digit scenes to validate on", ge=1, inert=_digits_only),
    "data_seed": Rule("seed of the digit scenes", ge=0, inert=_digits_only),
    "min_digits": Rule("fewest digits per scene", ge=0, inert=_digits_only),
    "max_digits": Rule("most digits per scene", ge=0, inert=_digits_only),
    "max_overlap": Rule("fraction of a digit's strokes that may cover others", ge=0, le=1, inert=_digits_only),
    "touching": Rule("chance a digit is placed against an earlier one", ge=0, le=1, inert=_digits_only),
    "distractors": Rule("most digit fragments per scene, labelled background", ge=0, inert=_digits_only),
    "train_digits_per_class": Rule("digit images per class the training scenes draw from; unset: all 350", ge=1, le=350, inert=_digits_only),
    "arch": Rule("encoder: plain (CPU) or resnet", choices=("plain", "resnet")),
    "widths": Rule("channels per encoder stage, one stage each", ge=1),
    "blocks": Rule("residual blocks per stage (resnet)", ge=1, inert=_resnet_only),
    "embed_dim": Rule("embedding size of the projection heads", ge=1),
    "max_steps": Rule("training steps", ge=1, inert=_steps_only),
    "epochs": Rule("train this many epochs instead of --max-steps", ge=1, fix="leave it unset to train --max-steps"),
    "batch_size": Rule("global batch, split over processes", ge=1),
    "lr": Rule("peak learning rate (OneCycle)", gt=0),
    "weight_decay": Rule("AdamW weight decay", ge=0),
    "pct_start": Rule("OneCycle warm-up fraction", gt=0, lt=1),
    "bf16": Rule("bf16 autocast (CUDA only)"),
    "seed": Rule("seed of weights, batch order and sampling", ge=0),
    "device": Rule("auto, cpu, cuda, cuda:N or mps"),
    "out": Rule("run folder (checkpoint.pt, history.json)"),
    "eval_every": Rule("validate every N epochs (and at the end)", ge=1),
    "threads": Rule("CPU threads; unset: PyTorch's default", ge=1, fix="leave it unset for PyTorch's default"),
    "num_workers": Rule("DataLoader worker processes", ge=0),
    "progress": Rule("show a progress bar"),
}  # fmt: skip


def _num_stages(c) -> int:
    return len(c.widths)


def _check_stages(c, name) -> str | None:
    n = _num_stages(c)
    if c.arch == "resnet" and len(c.blocks) != n:
        return f"{name('blocks')} has {len(c.blocks)} entries but {name('widths')} has {n}: give one per stage"
    if c.loss != "contextrast":
        return None
    if len(c.stage_weights) != n:
        return (
            f"{name('stage_weights')} has {len(c.stage_weights)} weights but {name('widths')} "
            f"gives the model {n} stages: give {n} weights, one per stage"
        )
    if c.stages is not None and (len(set(c.stages)) != len(c.stages) or max(c.stages) >= n):
        return f"{name('stages')} must be distinct stage indices from 0 to {n - 1} (the model has {n} stages), got {show(c.stages)}"
    if c.fusion and abs(c.w_l + c.w_h - 1.0) > 1e-6:
        return f"{name('w_l')} + {name('w_h')} must be 1, got {c.w_l} + {c.w_h}"
    return None


def _check_sizes(c, name) -> str | None:
    n = _num_stages(c)
    stride = 2 ** (n + 1 if c.arch == "resnet" else n)
    if c.image_size < stride:
        return (
            f"{name('image_size')} {c.image_size} is smaller than the last stage's stride "
            f"({stride} px for {n} stages of arch {c.arch}): use at least {stride}"
        )
    if c.min_digits > c.max_digits:
        return f"{name('min_digits')} {c.min_digits} is above {name('max_digits')} {c.max_digits}: raise the maximum or lower the minimum"
    if c.dataset == "digits" and c.batch_size > c.train_scenes:
        return (
            f"{name('train_scenes')} {c.train_scenes} gives no full batch of {name('batch_size')} "
            f"{c.batch_size}: use more scenes or a smaller batch"
        )
    return None


def _check_place(c, name) -> str | None:
    if c.dataset != "digits" and c.data_root is None:
        return (
            f"{name('dataset')} {c.dataset} needs {name('data_root')} PATH, a folder you already "
            f"have (configs/README.md shows the layout; nothing is downloaded)"
        )
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", c.device):
        return f"{name('device')} must be auto, cpu, cuda, cuda:N or mps, got {c.device!r}"
    return None


CHECKS = (_check_stages, _check_sizes, _check_place)


def validate_config(cfg: TrainConfig, name: Callable[[str], str] = str) -> TrainConfig:
    """Raise ConfigError (a ValueError) naming the first bad setting and its fix; return cfg.
    `name(field)` is how messages call a field (the CLI passes its flags)."""
    validate(cfg, RULES, CHECKS, name)
    return cfg


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
            # Training's setting: no value check that reads tensors back to the host (a sync on
            # a GPU); the loop checks the losses it reads back every few steps instead.
            check_inputs=False,
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
        cm.update(model(images).logits.argmax(1), labels)
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
    return model_from_checkpoint(ckpt, path).to(device), ckpt


def model_from_checkpoint(ckpt: dict, path: Path) -> SegmentationNet:
    """The model (eval mode) a loaded checkpoint dict holds; `path` names it in errors."""
    cfg = config_from_dict(ckpt["config"])
    model = build_model(cfg.model_config(), ckpt["num_classes"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise ValueError(
            f"{path} does not match the model its config describes ({e}); retrain"
        ) from e
    return model.eval()


def config_from_dict(d: dict) -> TrainConfig:
    """A TrainConfig from a JSON dict (lists become tuples; unknown keys are an error)."""
    names = [f.name for f in fields(TrainConfig)]
    for key in d:
        if key not in names:
            close = difflib.get_close_matches(str(key).replace("-", "_"), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown config key {key!r}{hint}: the keys are TrainConfig's fields, the "
                f"flags of python -m ctx.train --help without the dashes"
            )
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


EpochEnd = Callable[[torch.nn.Module, dict], None]


@dataclass
class RunResult:
    """A trained or loaded run: the model (eval mode), its history (one entry per evaluation),
    the config it was trained with, its checkpoint file and its number of classes."""

    model: SegmentationNet
    history: list[dict]
    config: TrainConfig
    checkpoint: Path
    num_classes: int


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped training; the message says what was saved and how to resume."""


FLUSH_EVERY = 20  # steps between reading the losses back from the device (one sync each time)


def _check_out(out: Path) -> None:
    """Fail now, not after an epoch, when `out` can't hold the run."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise ValueError(
            f"can't write to --out {out} ({e.strerror or e}): choose a folder you can write to"
        ) from e


def _resumable(out: Path, cfg: TrainConfig, device: torch.device) -> dict | None:
    """The checkpoint in `out` if it was trained with these settings (None if there is none)."""
    if not (out / CHECKPOINT).exists():
        return None
    ckpt = load_checkpoint(out / CHECKPOINT, map_location=device)
    bad = config_mismatch(ckpt["config"], cfg)
    if bad:
        raise ValueError(
            f"{out / CHECKPOINT} was trained with other settings ({'; '.join(bad)}); "
            f"use another --out, or delete that folder to start again"
        )
    return ckpt


@contextlib.contextmanager
def _deferred_interrupt(announce: bool) -> Iterator[threading.Event]:
    """While active, a first Ctrl-C only sets the yielded event (the loop stops at the next step
    boundary and saves); a second one raises KeyboardInterrupt at once. Outside the main thread
    signals can't be caught and Ctrl-C raises as usual."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if announce:
            os.write(
                2, b"\nCtrl-C: stopping after this step to save it (again: stop now, unsaved)\n"
            )

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def train(cfg: TrainConfig, on_epoch_end: EpochEnd | None = None) -> RunResult:
    """Train (or resume, or just load a finished run) and return its RunResult.
    `on_epoch_end(model, entry)` runs on rank 0 after each evaluation, e.g. to snapshot anchors;
    if it has a `replay(history)` method, a resumed run first passes it the entries it holds.

    The config is checked first (ConfigError names the bad setting). Ctrl-C finishes the step
    it interrupts, saves, and raises `Interrupted`; running again resumes exactly."""
    validate_config(cfg)
    rank, world, device = _dist_setup(cfg)
    if cfg.batch_size % world:
        raise ValueError(
            f"--batch-size {cfg.batch_size} must be divisible by the {world} processes"
        )
    if cfg.bf16 and device.type != "cuda":
        raise ValueError(f"--bf16 autocast is for CUDA devices only, not {device}: drop --bf16")
    if cfg.data_root is not None and cfg.dataset != "digits" and not Path(cfg.data_root).is_dir():
        raise ValueError(f"--data-root {cfg.data_root} is not a folder: point it at your data")
    out = Path(cfg.out)
    if rank == 0:
        _check_out(out)
    ckpt = _resumable(out, cfg, device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
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
        raise ValueError(
            f"{len(train_set)} training images give no full batch of {cfg.batch_size}: "
            f"lower --batch-size"
        )
    max_steps = cfg.epochs * steps_per_epoch if cfg.epochs is not None else cfg.max_steps

    model = build_model(cfg.model_config(), num_classes).to(device)
    loss_fn = make_loss(cfg, num_classes)
    ce_fn = make_loss(dataclasses.replace(cfg, loss="ce"), num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=max_steps, pct_start=cfg.pct_start
    )
    # Wall seconds and this process's CPU seconds spent training (evaluation excluded); the CPU
    # seconds are what a step costs on a dedicated core, whatever else the machine runs.
    step, history, train_seconds, cpu_seconds = 0, [], 0.0, 0.0
    sums: dict[str, float] = {}  # running sums of the losses since the last evaluation
    count = 0
    saved_step = None  # the step of the checkpoint on disk
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        step, history, train_seconds = ckpt["step"], ckpt["history"], ckpt["train_seconds"]
        cpu_seconds = ckpt.get("train_cpu_seconds", 0.0)
        saved_step = step
        if ckpt["max_steps"] != max_steps:
            state = "a finished" if step >= ckpt["max_steps"] else "an unfinished"
            raise ValueError(
                f"{out} holds {state} run of {ckpt['max_steps']} steps, not {max_steps} (the "
                f"learning-rate schedule depends on the length); use another --out"
            )
        if step < max_steps:
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            sums, count = (
                dict(ckpt.get("running", {}).get("sums", {})),
                ckpt.get("running", {}).get("count", 0),
            )
            threads = ckpt.get("threads")
            if threads is not None and threads != torch.get_num_threads():
                warnings.warn(
                    f"{out} was trained on {threads} CPU thread(s) and resumes on "
                    f"{torch.get_num_threads()}: results depend on the thread count, so it may "
                    f"not end bit-identical to an uninterrupted run (use --threads {threads})",
                    RuntimeWarning,
                    stacklevel=2,
                )

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
        nonlocal saved_step
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
                    "running": {"sums": sums, "count": count},  # losses since the last evaluation
                    "threads": torch.get_num_threads(),
                    "config": json.loads(json.dumps(asdict(cfg))),
                    "num_classes": num_classes,
                    "world_size": world,
                },
                out / CHECKPOINT,
            )
            write_json({"config": asdict(cfg), "history": history}, out / HISTORY)
        saved_step = step
        if ddp:
            dist.barrier()

    # The losses stay on the device and are read back every FLUSH_EVERY steps and before each
    # evaluation or save: one sync then, not one per step. Summed on the host in float64, in
    # step order, exactly as a per-step float() would.
    pending: list[torch.Tensor] = []

    def flush() -> None:
        nonlocal count
        if not pending:
            return
        rows = torch.stack(pending).cpu().tolist()
        first = step - len(rows) + 1
        pending.clear()
        for i, (loss, ce, pa) in enumerate(rows):
            if not math.isfinite(loss):
                where = "" if saved_step is None else f" (step {saved_step})"
                raise FloatingPointError(
                    f"non-finite loss {loss} at step {first + i}: lower --lr or --alpha, or "
                    f"check the data; the last checkpoint{where} is kept"
                )
            sums["ce"] = sums.get("ce", 0.0) + ce
            sums["pa"] = sums.get("pa", 0.0) + pa
            sums["loss"] = sums.get("loss", 0.0) + loss
            count += 1

    def stop_requested() -> bool:
        """Whether Ctrl-C asked to stop; under DDP every process agrees (checked at flushes)."""
        if not ddp:
            return stop.is_set()
        if step % FLUSH_EVERY and step % steps_per_epoch and step < max_steps:
            return False
        flag = torch.tensor(float(stop.is_set()), device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    if rank == 0 and ckpt is not None:
        _replay(on_epoch_end, history)
    model.train()
    bar = tqdm(
        total=max_steps,
        initial=step,
        desc=f"train {cfg.loss}",
        disable=not cfg.progress or rank != 0,
        dynamic_ncols=True,
    )
    phase = "load"  # where an interrupt lands: "load" (between steps), "step", "eval"
    tic, cpu_tic = time.perf_counter(), time.process_time()
    with _deferred_interrupt(announce=rank == 0) as stop:
        try:
            while step < max_steps and not stop_requested():
                epoch, offset = divmod(step, steps_per_epoch)
                sampler.set_epoch(epoch)
                if hasattr(train_set, "set_epoch"):
                    train_set.set_epoch(epoch)
                tic, cpu_tic = time.perf_counter(), time.process_time()
                for images, labels in islice(loader, offset, steps_per_epoch):
                    if stop_requested():
                        break
                    phase = "step"
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
                        total, parts = fn(
                            out_net.logits.float(),
                            [e.float() for e in out_net.embeddings],
                            labels,
                        )
                    opt.zero_grad(set_to_none=True)
                    total.backward()
                    opt.step()
                    sched.step()
                    step += 1
                    pending.append(torch.stack([total.detach(), parts["ce"], parts["pa"]]))
                    phase = "load"
                    bar.update(1)
                    if step % FLUSH_EVERY == 0:
                        flush()
                        bar.set_postfix(loss=f"{sums['loss'] / count:.3f}")
                    if step >= max_steps:
                        break
                train_seconds += time.perf_counter() - tic
                cpu_seconds += time.process_time() - cpu_tic
                tic, cpu_tic = time.perf_counter(), time.process_time()
                flush()
                epoch_done = step % steps_per_epoch == 0
                if (
                    epoch_done and (step // steps_per_epoch) % cfg.eval_every == 0
                ) or step >= max_steps:
                    phase = "eval"
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
                    phase = "load"
                elif stop.is_set():
                    checkpoint()  # mid-epoch: the finished steps, their time and losses
            if stop.is_set() and step < max_steps:
                raise Interrupted(
                    f"interrupted at step {step} of {max_steps}: saved {out / CHECKPOINT}; "
                    f"run the same command to resume"
                )
        except Interrupted:
            bar.close()
            raise
        except KeyboardInterrupt as e:
            bar.close()
            if phase == "load":  # between steps: everything is consistent, keep it
                train_seconds += time.perf_counter() - tic
                cpu_seconds += time.process_time() - cpu_tic
                flush()
                checkpoint()
                raise Interrupted(
                    f"interrupted at step {step} of {max_steps}: saved {out / CHECKPOINT}; "
                    f"run the same command to resume"
                ) from e
            kept = (
                f"{out / CHECKPOINT} (step {saved_step}) is kept"
                if saved_step is not None
                else "nothing was saved"
            )
            what = f"inside step {step + 1}" if phase == "step" else f"while evaluating step {step}"
            raise Interrupted(
                f"interrupted {what}, which is discarded; {kept}: run the same command to "
                f"{'resume' if saved_step is not None else 'start again'}"
            ) from e
    bar.close()
    if ddp:
        dist.barrier()
    return RunResult(model.eval(), history, cfg, out / CHECKPOINT, num_classes)


def train_or_load(cfg: TrainConfig, on_epoch_end: EpochEnd | None = None) -> RunResult:
    """Check, then train or load: load `cfg.out` if it holds this finished run (on the device
    `cfg.device` names), otherwise `train` (resuming what is there). `on_epoch_end` as in
    `train`; a loaded run passes its history to `on_epoch_end.replay`, if it has one."""
    validate_config(cfg)
    path = Path(cfg.out) / CHECKPOINT
    if path.exists():
        ckpt = load_checkpoint(path, map_location="cpu")
        same_length = all(ckpt["config"].get(k) == getattr(cfg, k) for k in ("max_steps", "epochs"))
        finished = ckpt["step"] >= ckpt["max_steps"]
        if not config_mismatch(ckpt["config"], cfg) and same_length and finished:
            model = model_from_checkpoint(ckpt, path).to(resolve_device(cfg.device))
            _replay(on_epoch_end, ckpt["history"])
            return RunResult(model, ckpt["history"], cfg, path, ckpt["num_classes"])
    return train(cfg, on_epoch_end)


def _replay(on_epoch_end: EpochEnd | None, history: list[dict]) -> None:
    """Hand a loaded or resumed run's past entries to a callback that draws them."""
    replay = getattr(on_epoch_end, "replay", None)
    if replay is not None and history:
        replay(history)


# ------------------------------------------------------------------------------------------ CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not the (long) usage
        self.exit(2, f"error: {message} (python -m ctx.train --help lists the flags)\n")


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _default_text(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m ctx.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="JSON object of TrainConfig fields; flags override it (default: none)",
    )
    types = field_types(TrainConfig)
    for f in fields(TrainConfig):
        rule, ftype = RULES.get(f.name, NO_RULE), types[f.name]
        extra = f"; choices: {', '.join(rule.choices)}" if rule.choices else ""
        help_ = f"{rule.help} (default: {_default_text(f.default)}{extra})".replace("%", "%%")
        kw = {"default": argparse.SUPPRESS, "help": help_}
        if ftype.kind is bool:
            p.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, **kw)
        elif ftype.kind is tuple:
            metavar = "X" if ftype.elem is float else "N"
            p.add_argument(_flag(f.name), type=ftype.elem, nargs="+", metavar=metavar, **kw)
        elif rule.choices:
            p.add_argument(_flag(f.name), choices=rule.choices, **kw)
        else:
            metavar = {int: "N", float: "X"}.get(ftype.kind, "TEXT")
            p.add_argument(_flag(f.name), type=ftype.kind, metavar=metavar, **kw)
    return p


def _read_config_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {path} is a folder, not a JSON file") from None
    except OSError as e:
        raise ConfigError(f"--config {path} can't be read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path} is not a text file: give a JSON file") from None
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"--config {path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"--config {path} must hold a JSON object of TrainConfig fields, got a "
            f"{type(data).__name__}"
        )
    try:
        config_from_dict(data)  # unknown keys; the values are checked with the flags
    except ConfigError as e:
        raise ConfigError(f"--config {path}: {e}") from None
    return data


def _parse(argv: list[str] | None) -> tuple[TrainConfig, set[str], Callable[[str], str]]:
    """(config, the fields the user set, how to name a field in a message)."""
    args = vars(_parser().parse_args(argv))
    path = args.pop("config", None)
    base = _read_config_file(path) if path else {}
    cfg = config_from_dict({**base, **args})

    def name(field: str) -> str:
        if field in base and field not in args:
            return f"{field} (in {path})"
        return _flag(field)

    return validate_config(cfg, name), set(base) | set(args), name


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """CLI flags (and an optional --config JSON) -> a checked TrainConfig (ConfigError if bad)."""
    return _parse(argv)[0]


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """The CLI: every bad setting or file is one `error: ...` line (exit 2 for settings, 1 for
    what only shows at run time); Ctrl-C prints one line (exit 130)."""
    try:
        cfg, given, name = _parse(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if rank0:
        for field, why in inert_fields(cfg, RULES, given):
            print(f"warning: {name(field)} does nothing here: {why}", file=sys.stderr)
    warnings.showwarning = _one_line_warning
    try:
        result = train(cfg)
    except Interrupted as e:
        if rank0:
            print(e, file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        if rank0:
            print("interrupted before training started: nothing was saved", file=sys.stderr)
        sys.exit(130)
    except (ValueError, OSError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    if rank0:
        last = result.history[-1]["val"] if result.history else {}
        print(json.dumps({"checkpoint": str(result.checkpoint), **last}))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
