"""BANE — boundary-aware negatives (METHOD.md, "BANE"): error maps, an exact batched Euclidean
distance transform in pure torch (its algorithms live in `ctx.distance`), the selection of the
pixels nearest to each error's edge, and the sampling of each anchor's positives and negatives
that the PA loss is computed on.

Everything here runs without gradients. A *miner* (`BoundaryMiner`, `no_hard_pixels`) marks hard
pixels; `sample_pixels` turns them into the capped positives and negatives of every class (hard
first, topped up at random); `ctx.losses` applies the formula to what was sampled.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol

import torch

from ctx.distance import dense_distance_transform, sparse_distance_transform, squared_distance_dense
from ctx.labels import (
    IGNORE_INDEX,
    check_flag,
    check_generator,
    check_int,
    check_labels,
    check_pred,
    check_scalar,
    stage_prediction,
)

__all__ = [
    "error_maps",
    "distance_transform",
    "boundary_negatives",
    "select_boundary_pixels",
    "Miner",
    "BoundaryMiner",
    "HARD_FOR",
    "check_hard_for",
    "check_fraction",
    "no_hard_pixels",
    "PixelSample",
    "sample_pixels",
    "check_sample_caps",
    "selection_stats",
]


def error_maps(
    pred: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Class-wise error maps `B^n = 1[pred != n and labels == n]`.

    pred, labels: integer [B,H,W]; pred in [0, C), labels in [0, C) or `ignore_index`.
    Returns bool [B,C,H,W]; ignore pixels are never set.
    """
    check_labels(labels, num_classes, ignore_index, name="labels")
    check_pred(pred, labels, num_classes, ignore_index)  # never read at ignore pixels
    wrong = (pred != labels) & (labels != ignore_index)
    classes = torch.arange(num_classes, device=labels.device).view(1, -1, 1, 1)
    return (labels.unsqueeze(1) == classes) & wrong.unsqueeze(1)


def distance_transform(mask: torch.Tensor, all_true_value: float = math.inf) -> torch.Tensor:
    """Exact Euclidean distance from each True pixel to the nearest False pixel of its 2-D map.

    mask: bool [..., H, W] (any number of leading dims, each [H, W] slice is one map).
    Returns float32 [..., H, W] on `mask`'s device, equal to
    `scipy.ndimage.distance_transform_edt` per map; False pixels are 0.
    **[choice]** A map with no False pixel has no distance to give (scipy returns distances to
    a point outside the image there): every pixel gets `all_true_value`, +inf by default. BANE
    ranks such a map's pixels at random whatever the value (all tie).
    Pure torch, no trip to the CPU. **[choice]** Two exact algorithms: on the CPU a sparse one
    whose cost grows with the sum of the distances (error-like maps are cheap; maps nearly all
    True with far-away False pixels are the slow case); on other devices the dense one BANE uses
    in training, O(H W min(H, W)) per map and free of host synchronisation.
    """
    _check_mask(mask)
    finite_fill = not (isinstance(all_true_value, float) and all_true_value == math.inf)
    if finite_fill:
        check_scalar(
            "all_true_value",
            all_true_value,
            ge=0,
            le=torch.finfo(torch.float32).max,
            hint="(+inf, the default, or a distance that float32 holds)",
        )
    if mask.numel() == 0:
        return torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    if mask.device.type != "cpu":
        dist = dense_distance_transform(mask)
    else:
        dist = sparse_distance_transform(mask)
    if finite_fill:
        dist = dist.masked_fill_(dist == math.inf, float(all_true_value))
    return dist


@torch.no_grad()
def boundary_negatives(
    pred: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    k: float = 0.5,
    ignore_index: int = IGNORE_INDEX,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """BANE selection: in each error map, the `k` fraction of pixels nearest to its edge.

    pred, labels: integer [B,H,W] (pred = argmax of the logits at this stage's size).
    Returns bool [B,C,H,W], a subset of `error_maps(pred, labels, ...)`: for every (image, class)
    map with `n` error pixels, exactly `ceil(k * n)` of them, those with the smallest
    `distance_transform` value.
    [choice] ceil, so a non-empty map always gives at least one pixel (`k=1` gives all);
    a relative 1e-12 tolerance keeps float rounding in `k * n` from adding a pixel.
    [choice] Ties at the cut (and the all-+inf map where class n fills the image and is all
    wrong) are broken by a random order drawn from `generator` (None: torch's default RNG):
    a uniform permutation of the B*H*W pixels (see `select_boundary_pixels`, which this wraps).
    """
    check_fraction(k)
    check_labels(labels, num_classes, ignore_index, name="labels")
    check_pred(pred, labels, num_classes, ignore_index)  # never read at ignore pixels
    check_generator(generator, labels.device)
    hard, _ = select_boundary_pixels(pred, labels, num_classes, k, ignore_index, generator)
    classes = torch.arange(num_classes, device=labels.device).view(1, -1, 1, 1)
    return (labels.unsqueeze(1) == classes) & hard.unsqueeze(1)


@torch.no_grad()
def select_boundary_pixels(
    pred: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    k: float = 0.5,
    ignore_index: int = IGNORE_INDEX,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`boundary_negatives(...).any(1)` without input checks and without host synchronisation.

    Returns (hard [B,H,W] bool, the selected pixels of every class map; counts [B,C] int64, how
    many each map selected, ceil(k * n)). Every shape is static, so on a GPU nothing waits for
    the device: a wrong pixel lies in exactly one error map (its label's), so the distance
    transform and the ranking run on [B,H,W] pixels, not on a nonzero() of the error maps.
    Ties are broken by a uniform random permutation of all B*H*W pixels from `generator`,
    whatever the prediction, so the random stream consumed does not depend on the data.
    The inputs are not checked (the training step's path): see `boundary_negatives`.
    """
    batch, height, width = labels.shape
    n_pix, n_maps = labels.numel(), batch * num_classes
    device = labels.device
    if n_pix == 0:  # no pixel, no error map to rank (a shape, so no synchronisation)
        empty = torch.zeros(batch, num_classes, dtype=torch.int64, device=device)
        return torch.zeros_like(labels, dtype=torch.bool), empty
    wrong = (pred != labels) & (labels != ignore_index)
    # Map of each pixel: image * C + label for a wrong pixel, n_maps (none) otherwise.
    image = torch.arange(batch, device=device).view(-1, 1, 1)
    map_id = torch.where(wrong, image * num_classes + labels, n_maps).reshape(-1)
    sq, inf = squared_distance_dense(torch.where(wrong, labels, -1))
    # One int64 key per pixel orders by (map, squared distance, random rank): squared distances
    # are exact integers <= inf (inf: no pixel outside the map, all tied), and the random ranks
    # are a uniform permutation, so ties fall in a uniformly random order and every key differs.
    key = map_id * (inf + 1) + sq.reshape(-1).to(torch.int64)
    rand = torch.randperm(n_pix, device=device, generator=generator)
    if (n_maps + 1) * (inf + 1) * n_pix < _KEY_LIMIT:
        key, order = torch.sort(key * n_pix + rand)
        sorted_map = key // ((inf + 1) * n_pix)
    else:  # the same order in two sorts: shuffle, then a stable sort by (map, distance)
        key, order = torch.sort(key.index_select(0, rand), stable=True)
        order, sorted_map = rand.index_select(0, order), key // (inf + 1)
    n_err = torch.zeros(n_maps + 1, dtype=torch.int64, device=device)
    n_err.scatter_add_(0, map_id, torch.ones_like(map_id))  # bincount would sync on a GPU
    quota = _ceil_fraction(n_err, k)
    quota[n_maps:].zero_()  # pixels in no map are never selected (`quota[n] = 0` would copy
    # a host scalar to the device, a synchronisation on a GPU)
    first = (torch.cumsum(n_err, 0) - n_err).index_select(0, sorted_map)
    keep = torch.arange(n_pix, device=device) - first < quota.index_select(0, sorted_map)
    hard = torch.zeros(n_pix, dtype=torch.bool, device=device).scatter_(0, order, keep)
    return hard.view(batch, height, width), quota[:n_maps].view(batch, num_classes)


class Miner(Protocol):
    """What `ContextrastLoss(negatives=...)` calls once per stage, under no gradient:
    miner(logits [B,C,H,W] (detached), labels [B,h,w] of the stage, generator) -> (hard, stats).
    hard: None (no hard pixel), bool [B,h,w] (hard negatives of every anchor but their own
    class's) or bool [C,B,h,w] (hard[m]: anchor m's hard negatives); stats: a dict of tensors
    the loss reports as "stage{i}/<name>". On the training path it must not synchronise with
    the device."""

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]: ...


class BoundaryMiner:
    """BANE as a `Miner`: the pixels selected = boundary_negatives(pred_i, y_i, C, k).any(1),
    pred_i the argmax of the logits resized by nearest to the stage (`stage_prediction`).

    **[choice]** `hard_for` (METHOD.md, BANE 4, whose wording is ambiguous) says whose hard
    negatives they are: "others" (the default, METHOD.md's reading) returns them as one map
    [B,h,w], hard negatives of every anchor but their own class's; "predicted" returns
    [C,B,h,w] with hard[m] = the selected pixels predicted as m, hard negatives of the anchor of
    the class they were wrongly predicted as only. In both, a selected pixel stays a positive of
    its own class. Reports "selected_per_class" [C] int64, how many pixels each class's error
    maps gave. Inputs are not checked and nothing synchronises (see `select_boundary_pixels`).
    """

    def __init__(
        self,
        num_classes: int,
        k: float = 0.5,
        ignore_index: int = IGNORE_INDEX,
        hard_for: str = "others",
    ):
        check_fraction(k)
        check_hard_for(hard_for)
        self.num_classes, self.k, self.ignore_index = num_classes, k, ignore_index
        self.hard_for = hard_for

    @torch.no_grad()
    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pred = stage_prediction(logits, tuple(labels.shape[-2:]))
        hard, counts = select_boundary_pixels(
            pred, labels, self.num_classes, self.k, self.ignore_index, generator
        )
        if self.hard_for == "predicted":
            classes = torch.arange(self.num_classes, device=pred.device).view(-1, 1, 1, 1)
            hard = (pred.unsqueeze(0) == classes) & hard.unsqueeze(0)  # [C,B,h,w]
        return hard, {"selected_per_class": counts.sum(0)}


HARD_FOR = ("others", "predicted")


def check_hard_for(hard_for: str) -> None:
    """Raise ValueError unless `hard_for` names one of BANE's readings (`BoundaryMiner`)."""
    if not isinstance(hard_for, str) or hard_for not in HARD_FOR:
        raise ValueError(
            f"hard_for must be 'others' (a BANE pixel is a hard negative of every other "
            f"anchor, METHOD.md's reading) or 'predicted' (only of the anchor of the class it "
            f"was predicted as), got {hard_for!r}"
        )


def no_hard_pixels(
    logits: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[None, dict[str, torch.Tensor]]:
    """The `Miner` of random negatives (`negatives="random"`): no pixel is hard."""
    return None, {}


class PixelSample(NamedTuple):
    """What `sample_pixels` drew for every class n (row n): indices into the flattened (b, h, w)
    pixels and which entries are real (the others are padding). An index tensor is None when
    no cap was hit: every pixel is a column (P or Q = M) and the mask alone says which count."""

    pos_idx: torch.Tensor | None  # [C,P] int64
    pos_ok: torch.Tensor  # [C,P] bool
    neg_idx: torch.Tensor | None  # [C,Q] int64
    neg_ok: torch.Tensor  # [C,Q] bool


@torch.no_grad()
def sample_pixels(
    labels: torch.Tensor,
    num_classes: int,
    hard: torch.Tensor | None = None,
    max_positives: int = 1024,
    max_negatives: int = 256,
    fill: bool = True,
    ignore_index: int = IGNORE_INDEX,
    generator: torch.Generator | None = None,
) -> PixelSample:
    """Positives and negatives of each class anchor (METHOD.md's P and Q), capped per anchor.

    labels [B,H,W]; hard: a miner's hard pixels, None, bool [B,H,W] (hard negatives of every
    anchor but their own class's, METHOD.md's reading) or bool [C,B,H,W] (hard[n]: anchor n's
    hard negatives; `BoundaryMiner(hard_for="predicted")`). Positives of n: its pixels, a
    uniform random subset of `max_positives` if more; a hard pixel stays a positive of its own
    class. Negatives of n: labelled pixels of other classes; hard ones first (a random subset of
    `max_negatives` if more), topped up at random to `max_negatives` when `fill`, hard ones only
    when not; with `hard=None`, random ones. No index repeats within a row. One uniform key per
    (class, pixel) from `generator` (on the labels' device; None = default RNG) drives both:
    positives and negatives of a class are disjoint sets, so the same keys give independent
    random subsets of both.
    Only types, shapes and caps are checked: no host synchronisation.
    """
    check_labels(labels, num_classes, ignore_index, values=False)
    _check_hard(hard, labels, num_classes)
    check_sample_caps(max_positives, max_negatives)
    check_flag("fill", fill)
    check_generator(generator, labels.device)
    y = labels.reshape(-1)
    valid = y != ignore_index
    own = (y[None] == torch.arange(num_classes, device=y.device)[:, None]) & valid  # [C,M]
    cand = valid & ~own  # [C,M] candidate negatives of anchor n
    keys = torch.rand(num_classes, y.numel(), generator=generator, device=labels.device)
    pos_idx, pos_ok = _pick(own, keys, max_positives)
    if hard is not None:
        hard = hard.reshape(-1) if hard.dim() == labels.dim() else hard.reshape(num_classes, -1)
        keys = keys + hard  # hard pixels rank first (+1)
        if not fill:
            cand = cand & hard
    neg_idx, neg_ok = _pick(cand, keys, max_negatives)
    return PixelSample(pos_idx, pos_ok, neg_idx, neg_ok)


def check_sample_caps(max_positives: int, max_negatives: int) -> None:
    """Raise ValueError unless both caps of `sample_pixels` are ints >= 1."""
    check_int("max_positives", max_positives, ge=1)
    check_int("max_negatives", max_negatives, ge=1)


def selection_stats(
    selected: torch.Tensor,
    errors: torch.Tensor,
    distances: torch.Tensor | None = None,
    bins: int = 8,
) -> dict[str, torch.Tensor | float]:
    """Cheap statistics of a BANE selection, for notebooks and training logs.

    selected, errors: bool [B,C,H,W]; distances: optional float [B,C,H,W] (`distance_transform`).
    Returns per-class counts `errors` and `selected` ([C] int64), `fraction` (float), and with
    distances: `mean_selected` / `mean_unselected` (floats, NaN when empty, +inf counted as `bins`)
    and `hist_selected` / `hist_unselected` ([bins] int64, bin j = distance in [j, j+1), the last
    bin also holding everything further, +inf included).
    """
    if selected.shape != errors.shape or selected.dim() != 4:
        raise ValueError(
            f"selected and errors must both be [B,C,H,W], got {tuple(selected.shape)} "
            f"and {tuple(errors.shape)}"
        )
    n_err = errors.sum((0, 2, 3))
    n_sel = selected.sum((0, 2, 3))
    total = int(n_err.sum())
    stats: dict[str, torch.Tensor | float] = {
        "errors": n_err,
        "selected": n_sel,
        "fraction": float(n_sel.sum()) / total if total else 0.0,
    }
    if distances is not None:
        d = torch.nan_to_num(distances.float(), posinf=float(bins)).clamp(0, bins)
        for name, m in (("selected", selected), ("unselected", errors & ~selected)):
            vals = d[m]
            stats[f"mean_{name}"] = float(vals.mean()) if vals.numel() else math.nan
            idx = vals.floor().long().clamp(max=bins - 1)
            stats[f"hist_{name}"] = torch.bincount(idx, minlength=bins)
    return stats


# --------------------------------------------------------------------------- internals


def check_fraction(k: float) -> None:
    """Raise ValueError unless BANE's `k` is a fraction in (0, 1] (a real number, not a bool)."""
    check_scalar(
        "k", k, gt=0, le=1, hint="(the fraction of each error map BANE keeps: K=50% is 0.5)"
    )


def _check_hard(hard: torch.Tensor | None, labels: torch.Tensor, num_classes: int) -> None:
    shapes = (labels.shape, (num_classes, *labels.shape))
    if hard is not None and (
        not isinstance(hard, torch.Tensor)
        or hard.dtype != torch.bool
        or hard.shape not in shapes
        or hard.device != labels.device
    ):
        got = (
            f"{hard.dtype} {tuple(hard.shape)} on {hard.device}"
            if isinstance(hard, torch.Tensor)
            else type(hard)
        )
        raise ValueError(
            f"hard must be None or a bool tensor {tuple(labels.shape)} like labels (hard for "
            f"every other anchor) or {tuple(shapes[1])} (one map per anchor), on "
            f"{labels.device}; got {got}"
            + (
                "; boundary_negatives(...) gives [B,C,H,W] maps: pass its .any(1)"
                if isinstance(hard, torch.Tensor)
                and hard.shape == (labels.shape[0], num_classes, *labels.shape[1:])
                else ""
            )
        )


def _pick(
    mask: torch.Tensor, keys: torch.Tensor, k: int
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Per row of mask [C,M], the (at most) k entries with the largest keys (keys >= 0).

    Returns (idx [C,k] or None when M <= k, i.e. every column, valid [C,k] or mask).
    """
    if mask.shape[1] <= k:
        return None, mask
    vals, idx = torch.where(mask, keys, -1.0).topk(k, dim=1, sorted=False)
    return idx, vals >= 0


def _check_mask(mask: torch.Tensor) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got {mask.dtype}; pass mask.bool()")
    if mask.dim() < 2:
        raise ValueError(f"mask must have shape [..., H, W], got {tuple(mask.shape)}")
    return mask


def _ceil_fraction(n: torch.Tensor, k: float) -> torch.Tensor:
    """ceil(k * n) for an int64 tensor n, robust to float rounding (0.3 * 10 -> 3, not 4)."""
    return torch.ceil(n.double() * k * (1 - 1e-12)).to(torch.int64).clamp_(0).minimum(n)


# One int64 sort key holds (map, distance, random rank) below this; else two sorts.
_KEY_LIMIT = 2**63
