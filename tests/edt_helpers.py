"""Reference distance transforms from scipy and region-like masks, for the tests of
`ctx.negatives.distance_transform` (tests/test_distance.py) and of BANE (tests/test_negatives.py)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def scipy_edt(mask: torch.Tensor) -> np.ndarray:
    """scipy's EDT per 2-D map of a [..., H, W] mask, float64; +inf for maps with no False."""
    m = mask.numpy()
    flat = m.reshape(-1, *m.shape[-2:])
    out = np.zeros(flat.shape, dtype=np.float64)
    for i, one in enumerate(flat):
        out[i] = np.inf if one.all() else ndimage.distance_transform_edt(one)
    return out.reshape(m.shape)


def blobs(shape: tuple[int, ...], seeds: int, radius: int, seed: int = 0) -> torch.Tensor:
    """Dilated random seeds: region-like masks, as real error maps are."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, dtype=bool)
    flat = out.reshape(-1, *shape[-2:])
    for m in flat:
        ys = rng.integers(0, shape[-2], seeds)
        xs = rng.integers(0, shape[-1], seeds)
        m[ys, xs] = True
        flat_m = ndimage.binary_dilation(m, iterations=radius)
        m[...] = flat_m
    return torch.from_numpy(out)
