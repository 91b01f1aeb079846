"""Representative class anchors and their fusion with the last stage (METHOD.md, CCL steps 1-2)."""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ctx.labels import (
    IGNORE_INDEX,
    check_embeddings,
    check_finite,
    check_flag,
    check_labels,
    check_scalar,
    readable,
)

_EPS = 1e-12
_RESCALE = (1e-6, 1e6)  # class means whose largest entry is outside are rescaled first


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


def _class_anchors(emb, labels, num_classes, ignore_index, detach, distributed, normalize):
    if detach:
        emb = emb.detach()
    acc = torch.promote_types(emb.dtype, torch.float32)  # exact sums under half precision
    y = labels.reshape(-1)
    own = (y[None] == torch.arange(num_classes, device=y.device)[:, None]) & (y != ignore_index)
    # One one-hot matmul over pixels: [C,M] @ [M,D] -> [C,D]
    sums = own.to(acc) @ pixel_major(emb).to(acc)
    counts = own.sum(1).to(acc)
    return _normalised_means(sums, counts, emb.dtype, distributed, normalize)


def _normalised_means(sums, counts, dtype, distributed, normalize=True):
    """Per-class sums [C,D] and pixel counts [C] -> (anchors [C,D] of `dtype`, present [C]):
    the means, L2-normalised unless `normalize` is False."""
    d = sums.shape[1]
    if distributed is None:
        distributed = dist.is_available() and dist.is_initialized()
    if distributed:
        reduced = _all_reduce_sum(torch.cat([sums, counts[:, None]], dim=1))
        sums, counts = reduced[:, :d], reduced[:, d].detach()
    means = sums / counts.clamp_min(1.0)[:, None]
    if not normalize:
        return means.to(dtype), counts > 0
    # Tiny or huge means over their largest entry first: F.normalize's eps would shrink a mean
    # of 1e-20 to a vector of norm 1e-8, and the norm of a 1e30 one overflows to a zero anchor.
    # Only such rows, so every other anchor (and its gradient) keeps a plain F.normalize's bits.
    peak = means.detach().abs().amax(1, keepdim=True)
    odd = (peak > 0) & ((peak < _RESCALE[0]) | (peak > _RESCALE[1]))
    means = torch.where(odd, means / torch.where(odd, peak, 1.0), means)
    return F.normalize(means, dim=1, eps=_EPS).to(dtype), counts > 0


def class_anchors(
    emb: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    *,
    detach: bool = False,
    distributed: bool | None = None,
    check_inputs: bool = True,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class L2-normalised mean embedding over the (global) batch.

    emb [B,D,H,W], labels [B,H,W] at the same resolution (ignore pixels excluded)
    -> (anchors [C,D], present [C] bool); an absent class gets a zero row and present False.
    **[choice]** The mean is L2-normalised (METHOD.md, CCL 1); `normalize=False` returns the
    plain means. Gradients flow into `emb` unless `detach` **[choice]**. `distributed=None`
    auto-detects an initialised torch.distributed group: sums and counts are then all-reduced
    (autograd-aware) so every process gets the anchors of the global batch; False or True
    forces it.
    Raises ValueError for NaN/inf in `emb` (ignore pixels included: the one-hot matmul would
    spread one NaN to every anchor) and for anchors that overflow (sums of huge, unnormalised
    embeddings). `check_inputs=False` (a training step's setting) skips these value checks and
    the label range check, which make the host wait for the device; shapes are always checked.
    """
    check_labels(labels, num_classes, ignore_index, values=check_inputs)
    check_embeddings(emb, labels, values=check_inputs)
    check_flag("normalize", normalize)
    anchors, present = _class_anchors(
        emb, labels, num_classes, ignore_index, detach, distributed, normalize
    )
    if check_inputs and readable(anchors) and not bool(torch.isfinite(anchors).all()):
        raise ValueError(
            f"class anchors overflowed {anchors.dtype} (finite emb, max |emb| = "
            f"{emb.detach().abs().max().item():.3g}); pass L2-normalised embeddings"
        )
    return anchors, present


def sampled_anchors(
    rows: torch.Tensor,
    pos_idx: torch.Tensor | None,
    pos_ok: torch.Tensor,
    *,
    detach: bool = False,
    distributed: bool | None = None,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchors estimated from each class's sampled positives (opt-in; `class_anchors` is exact).

    rows [N,D] embeddings, pos_idx [C,P] row indices (None: row j of every class, P = N) and
    pos_ok [C,P] bool, as `ctx.negatives.sample_pixels` draws them (remapped to `rows`)
    -> (anchors [C,D], present [C] bool). **[choice]** METHOD.md's anchor is the normalised mean
    over *all* of a class's pixels; this is the mean over its sampled positives (a uniform
    random subset of `max_positives` pixels), so it is exact for every class with at most
    `max_positives` pixels at that stage and an unbiased estimate of the mean for larger ones.
    Gradients, `detach`, `distributed` and `normalize` as in `class_anchors`; no value checks,
    no host sync.
    """
    if detach:
        rows = rows.detach()
    acc = torch.promote_types(rows.dtype, torch.float32)
    weights = pos_ok.to(acc)
    if pos_idx is not None:  # [C,P] entries -> a [C,N] one-hot of the sampled rows
        weights = weights.new_zeros(pos_ok.shape[0], rows.shape[0]).scatter_add_(
            1, pos_idx, weights
        )
    sums, counts = weights @ rows.to(acc), weights.sum(1)
    return _normalised_means(sums, counts, rows.dtype, distributed, normalize)


def check_fusion_weights(w_l: float, w_h: float) -> None:
    """Raise ValueError unless w_l, w_h are numbers >= 0 and w_l + w_h == 1 (to 1e-6)."""
    check_scalar("w_l", w_l, ge=0, hint="(METHOD.md: w_l = 0.3)")
    check_scalar("w_h", w_h, ge=0, hint="(METHOD.md: w_h = 0.7)")
    if abs(w_l + w_h - 1.0) > 1e-6:
        raise ValueError(f"fusion weights need w_l, w_h >= 0 and w_l + w_h == 1, got {w_l}, {w_h}")


def fuse_anchors(
    low: torch.Tensor,
    high: torch.Tensor,
    low_present: torch.Tensor,
    high_present: torch.Tensor,
    w_l: float = 0.3,
    w_h: float = 0.7,
    *,
    check_inputs: bool = True,
    renormalize: bool = True,
) -> torch.Tensor:
    """Pull lower-stage anchors toward the last stage's: low, high [C,D]; presences [C] -> [C,D].

    Rows present in both become normalise(w_l*low + w_h*high) **[choice: re-normalised;
    defaults 0.3/0.7]**, or the plain blend with `renormalize=False`; other rows are `low`
    unchanged. Raises ValueError for NaN/inf anchors; `check_inputs=False` skips that check
    (one host sync), as `ContextrastLoss` does for anchors it computed from embeddings it has
    already checked.
    """
    check_fusion_weights(w_l, w_h)
    check_flag("renormalize", renormalize)
    for name, a in (("low", low), ("high", high)):
        if not isinstance(a, torch.Tensor) or not a.is_floating_point():
            got = a.dtype if isinstance(a, torch.Tensor) else type(a).__name__
            raise ValueError(f"{name} must be a floating tensor [C,D], got {got}")
    if low.dim() != 2 or low.shape != high.shape or low.device != high.device:
        raise ValueError(
            f"low and high must both be [C,D] on one device, got {tuple(low.shape)} on "
            f"{low.device} and {tuple(high.shape)} on {high.device}"
        )
    for name, p in (("low_present", low_present), ("high_present", high_present)):
        if (
            not isinstance(p, torch.Tensor)
            or p.dtype != torch.bool
            or tuple(p.shape) != (low.shape[0],)
            or p.device != low.device
        ):
            got = f"{p.dtype} {tuple(p.shape)}" if isinstance(p, torch.Tensor) else type(p).__name__
            raise ValueError(f"{name} must be a bool tensor [C={low.shape[0]}], got {got}")
    if check_inputs:
        check_finite(low, "low")
        check_finite(high, "high")
    both = (low_present & high_present)[:, None]
    fused = w_l * low + w_h * high
    if renormalize:
        fused = F.normalize(fused, dim=1, eps=_EPS)
    return torch.where(both, fused, low)
