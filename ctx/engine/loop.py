"""`train(config)`: a short loop over `train_step` and `evaluate` that checkpoints after every
evaluation, resumes exactly, and stops cleanly on Ctrl-C; `train_or_load(config)`: check, then
train or load, the one way notebooks and widgets get a trained run.

A resumed run continues exactly as an uninterrupted one would: the data order, the loss's
sampling (reseeded from the seed, the step and the rank) and the running loss sums are all
functions of the step, and the checkpoint holds the rest. Taught in notebooks 01 and 04.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from ctx.engine import checkpoint
from ctx.engine.checkpoint import CHECKPOINT, Progress, model_from_checkpoint
from ctx.engine.config import (
    SEED_STRIDE,
    TrainConfig,
    config_mismatch,
    one_cycle_problem,
    seed_stream_problem,
    validate_config,
)
from ctx.engine.device import Place, any_rank, barrier, place, resolve_device, wrap
from ctx.engine.interrupt import Interrupted, deferred_interrupt
from ctx.engine.step import evaluate, make_loss, train_step
from ctx.io import load_checkpoint
from ctx.model import SegmentationNet, build_model
from ctx.validation import ConfigError

EpochEnd = Callable[[torch.nn.Module, dict], None]
FLUSH_EVERY = 20  # steps between reading the losses back from the device (one sync each time)


@dataclass
class RunResult:
    """A trained or loaded run: the model (eval mode), its history (one entry per evaluation),
    the config it was trained with, its checkpoint file and its number of classes."""

    model: SegmentationNet
    history: list[dict]
    config: TrainConfig
    checkpoint: Path
    num_classes: int


def make_datasets(cfg: TrainConfig) -> tuple[Dataset, Dataset, int]:
    """(train, val, num_classes) for the configured dataset."""
    if cfg.dataset == "digits":
        from ctx.data import NUM_CLASSES

        return cfg.digit_scenes("train"), cfg.digit_scenes("val"), NUM_CLASSES
    if cfg.dataset in {"cityscapes", "camvid"}:
        from ctx import benchmark_data

        return benchmark_data.make_datasets(cfg.dataset, cfg.data_root, cfg.image_size)
    raise ValueError(f"unknown dataset {cfg.dataset!r}: use digits, cityscapes or camvid")


def _check_place(cfg: TrainConfig, where: Place) -> None:
    """The checks that need the processes and the device."""
    if cfg.batch_size % where.world:
        raise ValueError(
            f"--batch-size {cfg.batch_size} must be divisible by the {where.world} processes"
        )
    if cfg.bf16 and where.device.type != "cuda":
        raise ValueError(
            f"--bf16 autocast is for CUDA devices only, not {where.device}: drop --bf16"
        )
    if cfg.data_root is not None and cfg.dataset != "digits" and not Path(cfg.data_root).is_dir():
        raise ValueError(f"--data-root {cfg.data_root} is not a folder: point it at your data")


def _loader(
    cfg: TrainConfig, train_set: Dataset, where: Place
) -> tuple[DistributedSampler, DataLoader]:
    """Each process's share of every epoch's batches (a fixed order per seed and epoch)."""
    per_rank = cfg.batch_size // where.world
    if where.ddp:
        print(
            f"[rank {where.rank}/{where.world}] {where.device}, {per_rank} images per step",
            file=sys.stderr,
            flush=True,
        )
    sampler = DistributedSampler(
        train_set, where.world, where.rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    loader = DataLoader(
        train_set, batch_size=per_rank, sampler=sampler, drop_last=True, num_workers=cfg.num_workers
    )
    if len(loader) == 0:
        raise ValueError(
            f"{len(train_set)} training images give no full batch of {cfg.batch_size}: "
            f"lower --batch-size"
        )
    return sampler, loader


class _Run:
    """One run's parts and progress, set up from a config (resuming what `cfg.out` holds)."""

    def __init__(self, cfg: TrainConfig, on_epoch_end: EpochEnd | None) -> None:
        validate_config(cfg)
        self.cfg, self.on_epoch_end, self.where = cfg, on_epoch_end, place(cfg.device)
        _check_place(cfg, self.where)
        if cfg.epochs is None and (problem := seed_stream_problem(cfg.max_steps, self.where.world)):
            raise ConfigError(problem)
        self.out = Path(cfg.out)
        if self.where.main:
            checkpoint.check_out(self.out)
        ckpt = checkpoint.resumable(self.out, cfg, self.where.device)
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.train_set, self.val_set, self.num_classes = make_datasets(cfg)
        self.sampler, self.loader = _loader(cfg, self.train_set, self.where)
        self.steps_per_epoch = len(self.loader)
        self.max_steps = (
            cfg.epochs * self.steps_per_epoch if cfg.epochs is not None else cfg.max_steps
        )
        if problem := one_cycle_problem(cfg.pct_start, self.max_steps, length="epochs"):
            raise ConfigError(f"{problem} ({cfg.epochs} epochs of {self.steps_per_epoch} steps)")
        if problem := seed_stream_problem(self.max_steps, self.where.world, "--epochs"):
            raise ConfigError(problem)  # --max-steps was checked before the data were made
        self.model = build_model(cfg.model_config(), self.num_classes).to(self.where.device)
        self.loss_fn = make_loss(cfg, self.num_classes)
        self.ce_fn = make_loss(dataclasses.replace(cfg, loss="ce"), self.num_classes)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt, max_lr=cfg.lr, total_steps=self.max_steps, pct_start=cfg.pct_start
        )
        self.progress = Progress()
        if ckpt is not None:
            args = (self.model, self.opt, self.sched, self.max_steps, self.out)
            self.progress = checkpoint.restore(ckpt, *args)
            if self.where.main:
                _replay(on_epoch_end, self.progress.history)
        # the heads get no gradient in CE steps: DDP must not wait for them
        unused = cfg.loss == "ce" or cfg.warmup_steps > 0
        self.net = wrap(self.model, self.where, find_unused=unused)
        # The losses stay on the device and are read back every FLUSH_EVERY steps and before
        # each evaluation or save: one sync then, not one per step.
        self.pending: list[torch.Tensor] = []
        self.phase = "load"  # where an interrupt lands: "load" (between steps), "step", "eval"
        self.tic, self.cpu_tic = time.perf_counter(), time.process_time()

    def save(self) -> None:
        if self.where.main:
            meta = {"num_classes": self.num_classes, "world_size": self.where.world}
            args = (self.cfg, self.model, self.opt, self.sched, self.progress, self.max_steps)
            checkpoint.save(self.out, *args, **meta)
        self.progress.saved_step = self.progress.step
        barrier(self.where)

    def flush(self) -> None:
        """Read the pending losses back and add them to the running sums: in float64 on the
        host, in step order, exactly as a per-step float() would. A non-finite loss stops."""
        if not self.pending:
            return
        p = self.progress
        rows = torch.stack(self.pending).cpu().tolist()
        first = p.step - len(rows) + 1
        self.pending.clear()
        for i, (loss, ce, pa) in enumerate(rows):
            if not math.isfinite(loss):
                where = "" if p.saved_step is None else f" (step {p.saved_step})"
                raise FloatingPointError(
                    f"non-finite loss {loss} at step {first + i}: lower --lr or --alpha, or "
                    f"check the data; the last checkpoint{where} is kept"
                )
            p.sums["ce"] = p.sums.get("ce", 0.0) + ce
            p.sums["pa"] = p.sums.get("pa", 0.0) + pa
            p.sums["loss"] = p.sums.get("loss", 0.0) + loss
            p.count += 1

    def stop_requested(self, stop: threading.Event) -> bool:
        """Whether Ctrl-C asked to stop; under DDP every process agrees (checked at flushes)."""
        step = self.progress.step
        if self.where.ddp and step % FLUSH_EVERY and step % self.steps_per_epoch:
            if step < self.max_steps:  # not at a flush, an epoch's end or the last step
                return False
        return any_rank(stop.is_set(), self.where)

    def clock(self) -> None:
        """Add the time since the last call to the training time."""
        now, cpu_now = time.perf_counter(), time.process_time()
        self.progress.train_seconds += now - self.tic
        self.progress.cpu_seconds += cpu_now - self.cpu_tic
        self.tic, self.cpu_tic = time.perf_counter(), time.process_time()

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        cfg, p, where = self.cfg, self.progress, self.where
        images = images.to(where.device, non_blocking=True)
        labels = labels.to(where.device, non_blocking=True)
        contrast = cfg.loss != "ce" and p.step >= cfg.warmup_steps  # after the CE warm-up
        losses = train_step(
            self.net,
            self.loss_fn if contrast else self.ce_fn,
            images,
            labels,
            self.opt,
            self.sched,
            contrast=contrast,
            bf16=cfg.bf16,
            seed=cfg.seed * SEED_STRIDE + p.step * where.world + where.rank,
        )
        p.step += 1
        self.pending.append(losses)

    def epoch(self, stop: threading.Event, bar) -> None:
        """The rest of the current epoch's steps (all of them unless resuming mid-epoch)."""
        p = self.progress
        epoch, offset = divmod(p.step, self.steps_per_epoch)
        self.sampler.set_epoch(epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        self.tic, self.cpu_tic = time.perf_counter(), time.process_time()
        for images, labels in islice(self.loader, offset, self.steps_per_epoch):
            if self.stop_requested(stop):
                break
            self.phase = "step"
            self.step(images, labels)
            self.phase = "load"
            bar.update(1)
            if p.step % FLUSH_EVERY == 0:
                self.flush()
                bar.set_postfix(loss=f"{p.sums['loss'] / p.count:.3f}")
            if p.step >= self.max_steps:
                break
        self.clock()
        self.flush()

    def validate(self) -> None:
        """Validate, append the history entry, report it, call back and save."""
        p, spe = self.progress, self.steps_per_epoch
        self.phase = "eval"
        w = self.where
        val = evaluate(
            self.model, self.val_set, w.device, self.num_classes, rank=w.rank, world=w.world
        )
        entry = {
            "epoch": p.step / spe,
            "step": p.step,
            "train_seconds": round(p.train_seconds, 2),
            "train_cpu_seconds": round(p.cpu_seconds, 2),
            "lr": self.sched.get_last_lr()[0],
            "train": {k: v / max(p.count, 1) for k, v in p.sums.items()},
            "val": {k: val[k] for k in ("miou", "boundary_miou", "pixel_acc")},
            "val_per_class_iou": val["per_class_iou"],
        }
        p.history.append(entry)
        p.sums, p.count = {}, 0
        if w.main:
            tqdm.write(
                f"step {p.step:5d} | epoch {entry['epoch']:5.1f} | loss {entry['train'].get('loss', 0):.3f}"
                f" | val mIoU {val['miou']:5.1f} % | boundary {val['boundary_miou']:5.1f} %"
                f" | {p.train_seconds / 60:5.1f} min"
            )
            sys.stdout.flush()
            if self.on_epoch_end is not None:
                self.on_epoch_end(self.model, entry)
        self.save()
        self.phase = "load"

    def loop(self, stop: threading.Event, bar) -> None:
        """Epochs until the last step or a Ctrl-C; evaluate (and save) every eval_every epochs
        and at the end, save mid-epoch when stopped there."""
        p, spe = self.progress, self.steps_per_epoch
        while p.step < self.max_steps and not self.stop_requested(stop):
            self.epoch(stop, bar)
            epoch_done = p.step % spe == 0
            if (
                epoch_done and (p.step // spe) % self.cfg.eval_every == 0
            ) or p.step >= self.max_steps:
                self.validate()
            elif stop.is_set():
                self.save()  # mid-epoch: the finished steps, their time and losses
        if stop.is_set() and p.step < self.max_steps:
            raise Interrupted(self.resume_message())

    def resume_message(self) -> str:
        return (
            f"interrupted at step {self.progress.step} of {self.max_steps}: saved "
            f"{self.out / CHECKPOINT}; run the same command to resume"
        )

    def interrupted(self) -> Interrupted:
        """What a second Ctrl-C (or one outside the deferred handler) leaves: between steps
        everything is consistent and saved; inside a step or an evaluation that work is lost."""
        p = self.progress
        if self.phase == "load":
            self.clock()
            self.flush()
            self.save()
            return Interrupted(self.resume_message())
        kept = (
            f"{self.out / CHECKPOINT} (step {p.saved_step}) is kept"
            if p.saved_step is not None
            else "nothing was saved"
        )
        what = (
            f"inside step {p.step + 1}"
            if self.phase == "step"
            else f"while evaluating step {p.step}"
        )
        return Interrupted(
            f"interrupted {what}, which is discarded; {kept}: run the same command to "
            f"{'resume' if p.saved_step is not None else 'start again'}"
        )


def train(cfg: TrainConfig, on_epoch_end: EpochEnd | None = None) -> RunResult:
    """Train (or resume, or just load a finished run) and return its RunResult.
    `on_epoch_end(model, entry)` runs on rank 0 after each evaluation, e.g. to snapshot anchors;
    if it has a `replay(history)` method, a resumed run first passes it the entries it holds.

    The config is checked first (ConfigError names the bad setting). Ctrl-C finishes the step
    it interrupts, saves, and raises `Interrupted`; running again resumes exactly."""
    run = _Run(cfg, on_epoch_end)
    run.model.train()
    bar = tqdm(
        total=run.max_steps,
        initial=run.progress.step,
        desc=f"train {cfg.loss}",
        disable=not cfg.progress or not run.where.main,
        dynamic_ncols=True,
    )
    run.tic, run.cpu_tic = time.perf_counter(), time.process_time()
    with deferred_interrupt(announce=run.where.main) as stop:
        try:
            run.loop(stop, bar)
        except Interrupted:
            bar.close()
            raise
        except KeyboardInterrupt as e:
            bar.close()
            raise run.interrupted() from e
    bar.close()
    barrier(run.where)
    return RunResult(
        run.model.eval(), run.progress.history, cfg, run.out / CHECKPOINT, run.num_classes
    )


def train_or_load(cfg: TrainConfig, on_epoch_end: EpochEnd | None = None) -> RunResult:
    """Check, then train or load: load `cfg.out` if it holds this finished run (on the device
    `cfg.device` names), otherwise `train` (resuming what is there). `on_epoch_end` as in
    `train`; a loaded run passes its history to `on_epoch_end.replay`, if it has one."""
    validate_config(cfg)
    path = Path(cfg.out) / CHECKPOINT
    if path.exists():
        ckpt = load_checkpoint(path, map_location="cpu")
        checkpoint.check_resumable(ckpt, path)
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
