"""ctx — Contextrast (contextual contrastive learning for semantic segmentation) in PyTorch.

Modules: `data` (digit scenes), `benchmark_data` (Cityscapes and CamVid from a folder you
have), `model` (multi-stage segmentation net with projection heads), `labels` (input checks and
resizing), `anchors` and `losses` (CCL), `negatives` and `distance` (BANE and its exact distance
transform), `metrics`, `engine` (the training engine; `train` is its command line), `evaluate`
(a run's metrics, a command line), `validation` (config checks), `io` (atomic writes, locks),
`resources` (where data ships), `plotting`, `analysis`, `bane_sets`, `projection` and `lessons`
(notebook helpers), `reference` (the shipped reference runs), `experiments`.

The public API is importable from here: `from ctx import TrainConfig, train, ContextrastLoss`.
No name here is also a submodule's (`from ctx import evaluate` is the module ctx.evaluate), except
`ctx.train`: it is the *function* `ctx.engine.loop.train` whatever was imported first (the
command-line module stays `python -m ctx.train`, `importlib.import_module("ctx.train")`). Names
load on first use, so `import ctx` stays light.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "ConfigError": "ctx.validation",
    "TrainConfig": "ctx.engine.config",
    "load_model": "ctx.engine.checkpoint",
    "RunResult": "ctx.engine.loop",
    "train": "ctx.engine.loop",
    "train_or_load": "ctx.engine.loop",
    "ContextrastLoss": "ctx.losses",
    "CrossEntropyLoss": "ctx.losses",
    "pixel_anchor_loss": "ctx.losses",
    "class_anchors": "ctx.anchors",
    "fuse_anchors": "ctx.anchors",
    "error_maps": "ctx.negatives",
    "distance_transform": "ctx.negatives",
    "boundary_negatives": "ctx.negatives",
    "ConfusionMatrix": "ctx.metrics",
    "ModelConfig": "ctx.model",
    "SegmentationNet": "ctx.model",
    "SegOutput": "ctx.model",
    "build_model": "ctx.model",
    "DigitScenes": "ctx.data",
    "SceneConfig": "ctx.data",
    "NUM_CLASSES": "ctx.data",
    "CLASS_NAMES": "ctx.data",
    "load_reference": "ctx.reference",
}

__all__ = [
    "__version__",
    "ConfigError",
    "TrainConfig",
    "load_model",
    "RunResult",
    "train",
    "train_or_load",
    "ContextrastLoss",
    "CrossEntropyLoss",
    "pixel_anchor_loss",
    "class_anchors",
    "fuse_anchors",
    "error_maps",
    "distance_transform",
    "boundary_negatives",
    "ConfusionMatrix",
    "ModelConfig",
    "SegmentationNet",
    "SegOutput",
    "build_model",
    "DigitScenes",
    "SceneConfig",
    "NUM_CLASSES",
    "CLASS_NAMES",
    "load_reference",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these load on first use
    from ctx.anchors import class_anchors, fuse_anchors
    from ctx.data import CLASS_NAMES, NUM_CLASSES, DigitScenes, SceneConfig
    from ctx.engine.checkpoint import load_model
    from ctx.engine.config import TrainConfig
    from ctx.engine.loop import RunResult, train, train_or_load
    from ctx.losses import ContextrastLoss, CrossEntropyLoss, pixel_anchor_loss
    from ctx.metrics import ConfusionMatrix
    from ctx.model import ModelConfig, SegmentationNet, SegOutput, build_model
    from ctx.negatives import boundary_negatives, distance_transform, error_maps
    from ctx.reference import load_reference
    from ctx.validation import ConfigError


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ctx' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Importing the command-line module ctx.train sets the package attribute `train` to that
    module; keep the function there instead, so `ctx.train` does not depend on import order."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "train" and isinstance(value, types.ModuleType):
            value = importlib.import_module(_LAZY["train"]).train
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
