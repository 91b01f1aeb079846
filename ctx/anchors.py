"""Representative class anchors and their fusion with the last stage (METHOD.md, CCL steps 1-2)."""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ctx.labels import IGNORE_INDEX, check_labels

_EPS = 1e-12


def _check_emb(emb: torch.Tensor, labels: torch.Tensor, name: str = "emb") -> None:
    if not isinstance(emb, torch.Tensor) or emb.dim() != 4 or not emb.is_floating_point():
        desc = f"{tuple(emb.shape)} {emb.dtype}" if isinstance(emb, torch.Tensor) else type(emb)
        raise ValueError(f"{name} must be a floating tensor [B,D,H,W], got {desc}")
    b, _, h, w = emb.shape
    if tuple(labels.shape) != (b, h, w):
        raise ValueError(
            f"labels {tuple(labels.shape)} do not match {name} {tuple(emb.shape)}: labels must be "
            f"[B,H,W] at the embedding's resolution; downsample them with "
            f"ctx.labels.resize_labels(labels, {name}.shape[-2:]) first"
        )
    if labels.device != emb.device:
        raise ValueError(f"labels are on {labels.device} but {name} on {emb.device}")


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Autograd-aware SUM all-reduce (its backward all-reduces the gradients)."""
    from torch.distributed.nn.functional import all_reduce

    with warnings.catch_warnings():  # deprecated in favour of functional collectives, still exact
        warnings.simplefilter("ignore", FutureWarning)
        return all_reduce(t)


def pixel_major(emb: torch.Tensor) -> torch.Tensor:
    """emb [B,D,H,W] -> [B*H*W, D] in (b, h, w) order; a free view for the heads' channels-last
    output, a copy otherwise."""
    return emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])


def _class_anchors(emb, labels, num_classes, ignore_index, detach, distributed):
    b, d, h, w = emb.shape
    if detach:
        emb = emb.detach()
    acc = torch.promote_types(emb.dtype, torch.float32)  # exact sums under half precision
    y = labels.reshape(-1)
    own = (y[None] == torch.arange(num_classes, device=y.device)[:, None]) & (y != ignore_index)
    # One one-hot matmul over pixels: [C,M] @ [M,D] -> [C,D]
    sums = own.to(acc) @ pixel_major(emb).to(acc)
    counts = own.sum(1).to(acc)
    if distributed is None:
        distributed = dist.is_available() and dist.is_initialized()
    if distributed:
        reduced = _all_reduce_sum(torch.cat([sums, counts[:, None]], dim=1))
        sums, counts = reduced[:, :d], reduced[:, d].detach()
    means = sums / counts.clamp_min(1.0)[:, None]
    return F.normalize(means, dim=1, eps=_EPS).to(emb.dtype), counts > 0


def class_anchors(
    emb: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    *,
    detach: bool = False,
    distributed: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class L2-normalised mean embedding over the (global) batch.

    emb [B,D,H,W], labels [B,H,W] at the same resolution (ignore pixels excluded)
    -> (anchors [C,D], present [C] bool); an absent class gets a zero row and present False.
    Gradients flow into `emb` unless `detach` **[choice]**. `distributed=None` auto-detects an
    initialised torch.distributed group: sums and counts are then all-reduced (autograd-aware)
    so every process gets the anchors of the global batch; False or True forces it.
    """
    check_labels(labels, num_classes, ignore_index)
    _check_emb(emb, labels)
    return _class_anchors(emb, labels, num_classes, ignore_index, detach, distributed)


def check_fusion_weights(w_l: float, w_h: float) -> None:
    """Raise ValueError unless w_l, w_h >= 0 and w_l + w_h == 1 (to 1e-6)."""
    if not (w_l >= 0 and w_h >= 0) or abs(w_l + w_h - 1.0) > 1e-6:
        raise ValueError(f"fusion weights need w_l, w_h >= 0 and w_l + w_h == 1, got {w_l}, {w_h}")


def fuse_anchors(
    low: torch.Tensor,
    high: torch.Tensor,
    low_present: torch.Tensor,
    high_present: torch.Tensor,
    w_l: float = 0.3,
    w_h: float = 0.7,
) -> torch.Tensor:
    """Pull lower-stage anchors toward the last stage's: low, high [C,D]; presences [C] -> [C,D].

    Rows present in both become normalise(w_l*low + w_h*high) **[choice: re-normalised;
    defaults 0.3/0.7]**; other rows are `low` unchanged.
    """
    check_fusion_weights(w_l, w_h)
    if low.dim() != 2 or low.shape != high.shape:
        raise ValueError(
            f"low and high must both be [C,D], got {tuple(low.shape)} and {tuple(high.shape)}"
        )
    for name, p in (("low_present", low_present), ("high_present", high_present)):
        if p.dtype != torch.bool or tuple(p.shape) != (low.shape[0],):
            raise ValueError(f"{name} must be a bool [C={low.shape[0]}], got {p.dtype} {p.shape}")
    both = (low_present & high_present)[:, None]
    fused = F.normalize(w_l * low + w_h * high, dim=1, eps=_EPS)
    return torch.where(both, fused, low)
