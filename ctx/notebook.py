"""The one setup call every notebook starts with: FAST mode, the device, seeds, plot style."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from ctx.engine.device import resolve_device


def fast_mode() -> bool:
    """FAST (small sizes for tests and CPUs) when CI or CTX_FAST is set, or when there is no GPU.
    CTX_FAST=0 forces full size."""
    flag = os.environ.get("CTX_FAST")
    if flag is not None:
        return flag not in {"0", "false", "False", ""}
    return bool(os.environ.get("CI")) or not torch.cuda.is_available()


def setup(seed: int = 0) -> tuple[bool, torch.device]:
    """Seed Python, NumPy and torch, pick the device (cuda -> mps -> cpu), set a plot style.
    Returns (FAST, device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 90, "axes.titlesize": 10, "image.interpolation": "nearest"})
    fast, device = fast_mode(), resolve_device("auto")
    print(f"FAST={fast}  device={device.type}")
    return fast, device
