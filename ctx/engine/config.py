"""A training run's settings: `TrainConfig`, one `Rule` per field, and the checks across fields.

`validate_config` raises ConfigError naming the first bad setting and its fix (the table and its
checker are in ctx.validation); `config_from_dict` reads a saved or JSON config and
`config_mismatch` says where a checkpoint's config differs from a run's.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace

from ctx.data import SCENE_RULES
from ctx.model import ModelConfig
from ctx.validation import ConfigError, Rule, plain_numbers, show, validate

# The loop reseeds the loss every step with seed * SEED_STRIDE + step * processes + rank, and
# torch and the loss take seeds below 2**63: seeds below 2**43 leave room for 4e17 steps. A run
# stays below SEED_STRIDE draws (steps x processes), or its late steps would draw what the next
# seed's first ones do, and two seeds of a study would share their sampling.
SEED_STRIDE = 1_000_003
SEED_LIMIT = 2**43
# Threads and DataLoader workers: far above any CPU's core count, far below what overflows
# torch (2**31 threads) or spawns a machine-filling number of processes; the same on every
# machine, so a config file that validates on one validates on all.
MAX_THREADS = 1024

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
    """Everything a training run depends on. Defaults: the regime study's `default` regime on
    digit scenes (the tutorials train `scarce`: `ctx.reference.tutorial_config`)."""

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
    hard_for: str = "others"  # "others" | "predicted": whose hard negatives BANE's pixels are
    max_positives: int = 1024
    max_negatives: int = 256
    detach_anchors: bool = False
    warmup_steps: int = 0  # CE-only steps before the contrastive term starts
    embed_pixels: str = "all"  # "all" (METHOD.md) | "sampled" (opt-in cheaper step)
    # data
    dataset: str = "digits"  # "digits" | "cityscapes" | "camvid"
    data_root: str | None = None
    image_size: int = 64
    train_scenes: int = 3000
    val_scenes: int = 500
    data_seed: int = 0
    # digit scenes (ctx.data.SceneConfig; the regimes in ctx.experiments.regimes set these)
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
    normalize_embeddings: bool = True  # METHOD.md's per-pixel L2 normalisation [choice]
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

    def __post_init__(self) -> None:
        # numpy and torch numbers (from a sweep) become Python ones: checked and saved alike
        plain_numbers(self)

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            self.arch,
            tuple(self.widths),
            tuple(self.blocks),
            self.embed_dim,
            self.normalize_embeddings,
        )

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
    "hard_for": Rule("whose hard negatives BANE's pixels are: others (every other class's anchor, METHOD.md) or predicted (only the anchor of the class they were predicted as)", choices=("others", "predicted"), inert=_bane_only),
    "max_positives": Rule("positives sampled per anchor and process", ge=1, inert=_contrast_only),
    "max_negatives": Rule("negatives per anchor and process", ge=1, inert=_contrast_only),
    "detach_anchors": Rule("no gradient through the anchors", inert=_contrast_only),
    "warmup_steps": Rule("CE-only steps before the PA term starts", ge=0, inert=_contrast_only),
    "embed_pixels": Rule("all: embed every pixel, exact anchors; sampled: embed only the pixels the PA loss uses, anchors from sampled positives (cheaper step, opt-in)", choices=("all", "sampled"), inert=_contrast_only),
    "dataset": Rule("digits (shipped) or a benchmark in --data-root", choices=("digits", "cityscapes", "camvid")),
    "data_root": Rule("folder holding cityscapes or camvid", inert=_benchmark_only),
    "image_size": Rule("side of the square training images, px", ge=1),
    "train_scenes": Rule("digit scenes to train on", ge=1, inert=_digits_only),
    "val_scenes": Rule("digit scenes to validate on", ge=1, inert=_digits_only),
    "data_seed": Rule("seed of the digit scenes", ge=0, inert=_digits_only),
    **{f: replace(SCENE_RULES[f], inert=_digits_only) for f in ("min_digits", "max_digits", "max_overlap", "touching", "distractors")},
    "train_digits_per_class": Rule("digit images per class the training scenes draw from; unset: all 350", ge=1, le=350, inert=_digits_only),
    "arch": Rule("encoder: plain (CPU) or resnet", choices=("plain", "resnet")),
    "widths": Rule("channels per encoder stage, one stage each", ge=1),
    "blocks": Rule("residual blocks per stage (resnet)", ge=1, inert=_resnet_only),
    "embed_dim": Rule("embedding size of the projection heads", ge=1),
    "normalize_embeddings": Rule("L2-normalise each pixel's embedding (METHOD.md); off: the heads' raw outputs", inert=_contrast_only),
    "max_steps": Rule("training steps", ge=1, le=SEED_STRIDE, inert=_steps_only, fix=f"each step reseeds the loss with seed x {SEED_STRIDE:,} + step, so more steps would repeat the next seed's draws"),
    "epochs": Rule("train this many epochs instead of --max-steps", ge=1, fix="leave it unset to train --max-steps"),
    "batch_size": Rule("global batch, split over processes", ge=1),
    "lr": Rule("peak learning rate (OneCycle)", gt=0),
    "weight_decay": Rule("AdamW weight decay", ge=0),
    "pct_start": Rule("OneCycle warm-up fraction", gt=0, lt=1),
    "bf16": Rule("bf16 autocast (CUDA only)"),
    "seed": Rule("seed of weights, batch order and sampling", ge=0, lt=SEED_LIMIT, fix=f"each step reseeds the loss with seed x {SEED_STRIDE:,} + step, which torch needs in [0, 2**63)"),
    "device": Rule("auto, cpu, cuda, cuda:N or mps"),
    "out": Rule("run folder (checkpoint.pt, history.json)"),
    "eval_every": Rule("validate every N epochs (and at the end)", ge=1),
    "threads": Rule("CPU threads; unset: PyTorch's default", ge=1, le=MAX_THREADS, fix="leave it unset for PyTorch's default"),
    "num_workers": Rule("DataLoader worker processes", ge=0, le=MAX_THREADS),
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
        return f"{name('w_l')} + {name('w_h')} must be 1, got {c.w_l} + {c.w_h}: set both"
    return None


def _check_sizes(c, name) -> str | None:
    n = _num_stages(c)
    stride = 2 ** (n + 1 if c.arch == "resnet" else n)
    if c.image_size < stride:
        return (
            f"{name('image_size')} {c.image_size} is smaller than the last stage's stride "
            f"({stride} px for {n} stages of arch {c.arch}): use at least {stride}"
        )
    if c.batch_size == 1 and c.image_size == stride:
        return (
            f"{name('batch_size')} 1 at {name('image_size')} {c.image_size} leaves BatchNorm one "
            f"value per channel at the last stage (a 1x1 map): use a batch of 2 or more, or "
            f"a larger image"
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
            f"have (the docstring of ctx/benchmark_data.py shows the layout each loader expects; "
            f"nothing is downloaded)"
        )
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", c.device):
        return f"{name('device')} must be auto, cpu, cuda, cuda:N or mps, got {c.device!r}"
    return None


def one_cycle_problem(
    pct_start: float, steps: int, name: Callable[[str], str] = str, length: str = "max_steps"
) -> str | None:
    """Why torch's OneCycleLR cannot schedule `steps` steps with warm-up fraction `pct_start`
    (None when it can): a warm-up of exactly one step makes it divide by zero. `length`: the
    field that set the steps, named in the fix."""
    if float(pct_start * steps) - 1 == 0:  # the phase length OneCycleLR divides by
        return (
            f"{name('pct_start')} {pct_start:g} of {steps} steps is a warm-up of exactly one step, "
            f"which torch's OneCycleLR cannot schedule (it divides by zero): change "
            f"{name(length)} or {name('pct_start')}"
        )
    return None


def seed_stream_problem(steps: int, processes: int, length: str = "--max-steps") -> str | None:
    """Why `steps` steps on `processes` processes would reach the next seed's loss draws (each
    step reseeds with seed x SEED_STRIDE + step x processes + rank), None when they do not.
    `length`: what set the steps, named in the fix."""
    if steps * processes <= SEED_STRIDE:
        return None
    return (
        f"{steps:,} steps on {processes} process(es) draw {steps * processes:,} loss seeds, past "
        f"the {SEED_STRIDE:,} between one seed and the next (each step reseeds the loss with "
        f"seed x {SEED_STRIDE:,} + step x processes + rank): lower {length}"
    )


def _check_schedule(c, name) -> str | None:
    return None if c.epochs is not None else one_cycle_problem(c.pct_start, c.max_steps, name)


CHECKS = (_check_stages, _check_sizes, _check_place, _check_schedule)


def validate_config(cfg: TrainConfig, name: Callable[[str], str] = str) -> TrainConfig:
    """Raise ConfigError (a ValueError) naming the first bad setting and its fix; return cfg.
    `name(field)` is how messages call a field (the CLI passes its flags)."""
    validate(cfg, RULES, CHECKS, name)
    return cfg


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
