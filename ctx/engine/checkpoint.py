"""A run folder: `checkpoint.pt` (everything to resume exactly) and `history.json`, both written
atomically (ctx.io); how far a run got (`Progress`); saving, resuming and loading a model.

The checkpoint's keys are a file format: shipped reference runs and killed runs must keep
loading, so a new key needs a default where it is read (see `restore`); `RUN_KEYS` and
`UNFINISHED_KEYS` list those a run cannot resume without (`check_resumable`).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ctx.engine.config import TrainConfig, config_from_dict, config_mismatch
from ctx.io import kind_of, load_checkpoint, save_checkpoint, write_json
from ctx.model import SegmentationNet, build_model

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
AFRESH = "use another --out, or delete it to start again"  # the fix for a run we can't resume

# What resuming reads besides the model and config (ctx.io checks those when loading): key ->
# the types it may hold. A finished run needs no training state: runs kept in the shipped
# format (ctx.reference's model.pt, copied into a run folder) have none, and still load.
RUN_KEYS = {"step": int, "max_steps": int, "history": list}
UNFINISHED_KEYS = {"train_seconds": (int, float), "optimizer": dict, "scheduler": dict}


@dataclass
class Progress:
    """How far a run is. The seconds are wall and this process's CPU seconds spent training
    (evaluation excluded); the CPU seconds are what a step costs on a dedicated core, whatever
    else the machine runs. `sums`/`count`: the losses since the last evaluation."""

    step: int = 0
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    cpu_seconds: float = 0.0
    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0
    saved_step: int | None = None  # the step of the checkpoint on disk


def check_out(out: Path) -> None:
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


def resumable(out: Path, cfg: TrainConfig, device: torch.device) -> dict | None:
    """The checkpoint in `out` if it was trained with these settings (None if there is none)."""
    if not (out / CHECKPOINT).exists():
        return None
    ckpt = load_checkpoint(out / CHECKPOINT, map_location=device)
    check_resumable(ckpt, out / CHECKPOINT)
    bad = config_mismatch(ckpt["config"], cfg)
    if bad:
        raise ValueError(
            f"{out / CHECKPOINT} was trained with other settings ({'; '.join(bad)}); "
            f"use another --out, or delete that folder to start again"
        )
    return ckpt


def _wrong_key(ckpt: dict, key: str, kinds: type | tuple[type, ...]) -> str | None:
    if key not in ckpt:
        return f"no {key!r}"
    if isinstance(ckpt[key], bool) or not isinstance(ckpt[key], kinds):
        return f"its {key!r} is {kind_of(ckpt[key])}"
    return None


def resume_problem(ckpt: dict) -> str | None:
    """What in a loaded checkpoint a resume could not use (None: nothing). An unfinished run's
    scheduler has taken one step per training step: another count means a damaged file."""
    for key, kinds in RUN_KEYS.items():
        if problem := _wrong_key(ckpt, key, kinds):
            return problem
    if ckpt["step"] >= ckpt["max_steps"]:
        return None
    for key, kinds in UNFINISHED_KEYS.items():
        if problem := _wrong_key(ckpt, key, kinds):
            return problem
    at = ckpt["scheduler"].get("last_epoch")
    if at == ckpt["step"]:
        return None
    where = "no step" if at is None else f"step {at}"
    return f"its scheduler is at {where}, not step {ckpt['step']}"


def check_resumable(ckpt: dict, path: Path) -> None:
    """Raise ValueError (one line naming `path` and the fix) unless `ckpt` can be resumed."""
    if problem := resume_problem(ckpt):
        raise ValueError(
            f"{path} can't be resumed ({problem}): it is damaged or not a training checkpoint; "
            f"{AFRESH}"
        )


def load_state(part, state: dict, path: Path, what: str, fix: str) -> None:
    """`part.load_state_dict(state)`, or ValueError (one line naming `path`, `what` the state
    should fit, and `fix`) when it does not fit."""
    try:
        part.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        why = " ".join(str(e).split())  # torch lists every mismatch on its own line
        why = f"no {why}" if isinstance(e, KeyError) else why
        raise ValueError(f"{path} does not match {what} ({why}); {fix}") from e


def restore(ckpt: dict, model, opt, sched, max_steps: int, out: Path) -> Progress:
    """Load a resumable checkpoint (`check_resumable`) into the model (and, unless the run is
    finished, the optimizer and schedule); its Progress. A run of another length is refused."""
    path = out / CHECKPOINT
    load_state(model, ckpt["model"], path, "the model its config describes", AFRESH)
    step = ckpt["step"]
    seconds = ckpt.get("train_seconds", 0.0), ckpt.get("train_cpu_seconds", 0.0)
    progress = Progress(step, ckpt["history"], *seconds)
    progress.saved_step = step
    if ckpt["max_steps"] != max_steps:
        state = "a finished" if step >= ckpt["max_steps"] else "an unfinished"
        raise ValueError(
            f"{out} holds {state} run of {ckpt['max_steps']} steps, not {max_steps} (the "
            f"learning-rate schedule depends on the length); use another --out"
        )
    if step < max_steps:
        load_state(opt, ckpt["optimizer"], path, "this run's optimizer", AFRESH)
        load_state(sched, ckpt["scheduler"], path, "this run's schedule", AFRESH)
        progress.sums = dict(ckpt.get("running", {}).get("sums", {}))
        progress.count = ckpt.get("running", {}).get("count", 0)
        threads = ckpt.get("threads")
        if threads is not None and threads != torch.get_num_threads():
            warnings.warn(
                f"{out} was trained on {threads} CPU thread(s) and resumes on "
                f"{torch.get_num_threads()}: results depend on the thread count, so it may "
                f"not end bit-identical to an uninterrupted run (use --threads {threads})",
                RuntimeWarning,
                stacklevel=4,  # train()'s caller
            )
    return progress


def save(
    out: Path, cfg: TrainConfig, model, opt, sched, progress: Progress, max_steps: int, **meta
) -> None:
    """Write `out`/checkpoint.pt and `out`/history.json (atomically). `meta`: num_classes and
    world_size."""
    p = progress
    save_checkpoint(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "step": p.step,
            "max_steps": max_steps,
            "history": p.history,
            "train_seconds": p.train_seconds,
            "train_cpu_seconds": p.cpu_seconds,
            "running": {"sums": p.sums, "count": p.count},  # losses since the last evaluation
            "threads": torch.get_num_threads(),
            "config": json.loads(json.dumps(asdict(cfg))),
            "num_classes": meta["num_classes"],
            "world_size": meta["world_size"],
        },
        out / CHECKPOINT,
    )
    write_json({"config": asdict(cfg), "history": p.history}, out / HISTORY)


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
    try:
        cfg = config_from_dict(ckpt["config"])
        model = build_model(cfg.model_config(), ckpt["num_classes"])
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path} holds a config no model can be built from ({e}); retrain") from e
    load_state(model, ckpt["model"], path, "the model its config describes", "retrain")
    return model.eval()
