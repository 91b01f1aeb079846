"""ctx — Contextrast (contextual contrastive learning for semantic segmentation) in PyTorch.

Modules: `data` (digit scenes), `model` (multi-stage segmentation net with projection heads),
`labels` (label checks and resizing), `anchors` and `losses` (CCL), `negatives` (BANE),
`metrics`, `train`, `plotting` and `widgets` (notebook helpers), `experiments`.

The public API is importable from here (`from ctx import TrainConfig, train, ContextrastLoss`);
each name is loaded on first use, so `import ctx` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ctx.train": ("TrainConfig", "train", "train_or_load", "load_model", "evaluate", "ConfigError"),
    "ctx.losses": ("ContextrastLoss", "CrossEntropyLoss", "pixel_anchor_loss"),
    "ctx.anchors": ("class_anchors", "fuse_anchors"),
    "ctx.negatives": ("error_maps", "distance_transform", "boundary_negatives"),
    "ctx.metrics": ("ConfusionMatrix",),
    "ctx.model": ("ModelConfig", "SegmentationNet", "build_model"),
    "ctx.data": ("DigitScenes", "SceneConfig", "NUM_CLASSES", "CLASS_NAMES"),
    "ctx.experiments": ("load_reference",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = ["__version__", *_WHERE]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time names load lazily
    from ctx.anchors import class_anchors, fuse_anchors
    from ctx.data import CLASS_NAMES, NUM_CLASSES, DigitScenes, SceneConfig
    from ctx.experiments import load_reference
    from ctx.losses import ContextrastLoss, CrossEntropyLoss, pixel_anchor_loss
    from ctx.metrics import ConfusionMatrix
    from ctx.model import ModelConfig, SegmentationNet, build_model
    from ctx.negatives import boundary_negatives, distance_transform, error_maps
    from ctx.train import (
        ConfigError,
        TrainConfig,
        evaluate,
        load_model,
        train,
        train_or_load,
    )


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'ctx' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
