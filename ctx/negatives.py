"""BANE — boundary-aware negatives (METHOD.md, "BANE"): error maps, an exact batched Euclidean
distance transform in pure torch, the selection of the pixels nearest to each error's edge, and
the sampling of each anchor's positives and negatives that the PA loss is computed on.

Everything here runs without gradients. A *miner* (`BoundaryMiner`, `no_hard_pixels`) marks hard
pixels; `sample_pixels` turns them into the capped positives and negatives of every class (hard
first, topped up at random); `ctx.losses` applies the formula to what was sampled.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Protocol

import torch

from ctx.labels import IGNORE_INDEX, check_labels, check_pred, stage_prediction

__all__ = [
    "error_maps",
    "distance_transform",
    "dense_distance_transform",
    "boundary_negatives",
    "select_boundary_pixels",
    "Miner",
    "BoundaryMiner",
    "no_hard_pixels",
    "PixelSample",
    "sample_pixels",
    "check_sample_caps",
    "selection_stats",
]

# Squared distances are integers; float32 holds them exactly below 2**24.
_FLOAT32_EXACT = 2**24


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
    check_pred(pred, labels, num_classes)
    wrong = (pred != labels) & (labels != ignore_index)
    classes = torch.arange(num_classes, device=labels.device).view(1, -1, 1, 1)
    return (labels.unsqueeze(1) == classes) & wrong.unsqueeze(1)


def distance_transform(mask: torch.Tensor) -> torch.Tensor:
    """Exact Euclidean distance from each True pixel to the nearest False pixel of its 2-D map.

    mask: bool [..., H, W] (any number of leading dims, each [H, W] slice is one map).
    Returns float32 [..., H, W] on `mask`'s device, equal to
    `scipy.ndimage.distance_transform_edt` per map; False pixels are 0.
    [choice] A map with no False pixel is +inf everywhere.
    Pure torch, no trip to the CPU. **[choice]** Two exact algorithms: on the CPU a sparse one
    whose cost grows with the sum of the distances (error-like maps are cheap; maps nearly all
    True with far-away False pixels are the slow case); on other devices the dense one BANE uses
    in training, O(H W min(H, W)) per map and free of host synchronisation.
    """
    _check_mask(mask)
    height, width = mask.shape[-2], mask.shape[-1]
    if mask.numel() == 0:
        return torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    if mask.device.type != "cpu":
        return dense_distance_transform(mask)
    out = torch.zeros(mask.numel(), dtype=torch.float32, device=mask.device)
    pix = _true_pixels(mask.reshape(-1))
    sq = _squared_edt_at(pix, mask.numel() // (height * width), height, width)
    out[pix] = sq.sqrt().to(torch.float32)
    return out.view(mask.shape)


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
    _check_fraction(k)
    check_labels(labels, num_classes, ignore_index, name="labels")
    check_pred(pred, labels, num_classes)
    if generator is not None and generator.device.type != labels.device.type:
        raise ValueError(
            f"generator lives on {generator.device} but the labels on {labels.device}; "
            f"create it with torch.Generator(device=labels.device)"
        )
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
    wrong = (pred != labels) & (labels != ignore_index)
    # Map of each pixel: image * C + label for a wrong pixel, n_maps (none) otherwise.
    image = torch.arange(batch, device=device).view(-1, 1, 1)
    map_id = torch.where(wrong, image * num_classes + labels, n_maps).reshape(-1)
    sq, inf = _squared_edt_dense(torch.where(wrong, labels, -1))
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
    miner(logits [B,C,H,W] (detached), labels [B,h,w] of the stage, generator) -> (hard [B,h,w]
    bool or None (no hard pixel), stats: a dict of tensors the loss reports as
    "stage{i}/<name>"). On the training path it must not synchronise with the device."""

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]: ...


class BoundaryMiner:
    """BANE as a `Miner`: hard_i = boundary_negatives(pred_i, y_i, C, k).any(1), pred_i the
    argmax of the logits resized by nearest to the stage (`stage_prediction`). Reports
    "selected_per_class" [C] int64, how many pixels each class's error maps gave. Inputs are not
    checked and nothing synchronises (see `select_boundary_pixels`)."""

    def __init__(self, num_classes: int, k: float = 0.5, ignore_index: int = IGNORE_INDEX):
        _check_fraction(k)
        self.num_classes, self.k, self.ignore_index = num_classes, k, ignore_index

    @torch.no_grad()
    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pred = stage_prediction(logits, tuple(labels.shape[-2:]))
        hard, counts = select_boundary_pixels(
            pred, labels, self.num_classes, self.k, self.ignore_index, generator
        )
        return hard, {"selected_per_class": counts.sum(0)}


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

    labels [B,H,W], hard [B,H,W] bool (a miner's hard pixels) or None. Positives of n: its
    pixels, a uniform random subset of `max_positives` if more. Negatives: labelled pixels of
    other classes; hard ones first (a random subset of `max_negatives` if more), topped up at
    random to `max_negatives` when `fill`, hard ones only when not; with `hard=None`, random ones.
    No index repeats within a row. One uniform key per (class, pixel) from `generator` (on the
    labels' device; None = default RNG) drives both: positives and negatives of a class are
    disjoint sets, so the same keys give independent random subsets of both.
    Only types, shapes and caps are checked: no host synchronisation.
    """
    check_labels(labels, num_classes, ignore_index, values=False)
    _check_hard(hard, labels)
    check_sample_caps(max_positives, max_negatives)
    y = labels.reshape(-1)
    valid = y != ignore_index
    own = (y[None] == torch.arange(num_classes, device=y.device)[:, None]) & valid  # [C,M]
    cand = valid & ~own  # [C,M] candidate negatives of anchor n
    keys = torch.rand(num_classes, y.numel(), generator=generator, device=labels.device)
    pos_idx, pos_ok = _pick(own, keys, max_positives)
    if hard is not None:
        hard = hard.reshape(-1)
        keys = keys + hard  # hard pixels rank first (+1)
        if not fill:
            cand = cand & hard
    neg_idx, neg_ok = _pick(cand, keys, max_negatives)
    return PixelSample(pos_idx, pos_ok, neg_idx, neg_ok)


def check_sample_caps(max_positives: int, max_negatives: int) -> None:
    """Raise ValueError unless both caps of `sample_pixels` are ints >= 1."""
    for name, cap in (("max_positives", max_positives), ("max_negatives", max_negatives)):
        if not (isinstance(cap, int) and cap >= 1):
            raise ValueError(f"{name} must be an int >= 1, got {cap!r}")


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


def _check_fraction(k: float) -> None:
    if isinstance(k, bool) or not isinstance(k, numbers.Real) or not 0 < k <= 1:
        raise ValueError(f"k must be a fraction in (0, 1], got {k!r} (K=50% is k=0.5)")


def _check_hard(hard: torch.Tensor | None, labels: torch.Tensor) -> None:
    if hard is not None and (
        not isinstance(hard, torch.Tensor)
        or hard.dtype != torch.bool
        or hard.shape != labels.shape
        or hard.device != labels.device
    ):
        got = f"{hard.dtype} {tuple(hard.shape)}" if isinstance(hard, torch.Tensor) else type(hard)
        raise ValueError(
            f"hard must be None or a bool tensor {tuple(labels.shape)} like labels, on "
            f"{labels.device}; got {got}"
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


def _true_pixels(flat: torch.Tensor) -> torch.Tensor:
    """Ascending indices of the True entries of a flat bool tensor; nonzero() over 8-byte words
    first, then within the non-zero words (3-6x faster than a plain nonzero on sparse masks)."""
    if flat.numel() % 8 or flat.storage_offset() % 8 or not flat.is_contiguous():
        return flat.nonzero().squeeze(1)
    words = flat.view(torch.int64).nonzero().squeeze(1)
    within = flat.view(-1, 8).index_select(0, words).view(-1).nonzero().squeeze(1)
    return words[within // 8] * 8 + within % 8


def _ceil_fraction(n: torch.Tensor, k: float) -> torch.Tensor:
    """ceil(k * n) for an int64 tensor n, robust to float rounding (0.3 * 10 -> 3, not 4)."""
    return torch.ceil(n.double() * k * (1 - 1e-12)).to(torch.int64).clamp_(0).minimum(n)


def _run_squared_distance(lines: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Pass 1: squared distance along each line [L,n] to its nearest False pixel (+inf if none)."""
    n = lines.shape[-1]
    big = 2 * n + 2
    ar = torch.arange(n, device=lines.device, dtype=torch.int32)
    before = torch.where(lines, -big, ar).cummax(-1).values  # last False at or before i
    # first False at or after i: a cummax over the reversed line of negated indices
    after = -torch.where(lines, -big, -ar).flip(-1).cummax(-1).values.flip(-1)
    dist = torch.minimum(ar - before, after - ar).to(dtype)
    return torch.where(dist >= n, math.inf, dist * dist)


# Pass 2 reads windows of at most this many candidates at once (memory: 4 bytes each).
_CHUNK = 1 << 21


def _squared_edt_at(pix: torch.Tensor, num_maps: int, height: int, width: int) -> torch.Tensor:
    """Exact squared EDT at the True pixels of a bool [N,H,W] mask given by their flat indices.

    pix: int64 [E], the ascending flat indices of the True pixels. Returns [E] integer-valued
    float squared distances to the nearest False pixel of the same map (+inf in a map with no
    False pixel); float32 when that is exact, else float64.

    Separable and exact. Pass 1: per column, the squared distance v2 to the nearest False pixel
    (two cummax scans, only on columns that hold a True pixel). Pass 2: per row,
    D2(y, x) = min_j v2(y, j) + (x - j)^2, for the True pixels only, over offsets |x - j| in
    rounds [1, 4), [4, 8), [8, 16), ...; a pixel leaves once its best value is <= the next round's
    first offset squared, since no farther j can win. Work: O(sum of distances) in vectorised
    window gathers, O(log max distance) rounds; memory O(number of rows holding a True pixel).
    """
    device = pix.device
    exact32 = (height - 1) ** 2 + (width - 1) ** 2 < _FLOAT32_EXACT
    dtype = torch.float32 if exact32 else torch.float64
    plane = height * width
    map_id = pix // plane
    full = torch.bincount(map_id, minlength=num_maps) == plane
    if bool(full.any()):  # [choice] no False pixel: every distance is +inf
        sq = torch.full((pix.numel(),), math.inf, dtype=dtype, device=device)
        work = (~full[map_id]).nonzero().squeeze(1)
        if work.numel():
            sq[work] = _squared_edt_at(pix[work], num_maps, height, width)
        return sq
    if pix.numel() == 0:
        return torch.zeros(0, dtype=dtype, device=device)
    row_id = pix // width  # map * H + y
    x = pix - row_id * width
    y = row_id % height

    # Pass 1 on the columns holding a True pixel; every other column is all False (zeros),
    # read from one extra all-False line at the end.
    col_id = map_id * width + x
    col_has = torch.zeros(num_maps * width, dtype=torch.bool, device=device)
    col_has[col_id] = True
    col_slot = torch.cumsum(col_has, 0) - 1
    num_cols = int(col_slot[-1]) + 1
    col_base = torch.where(col_has, col_slot, num_cols) * height  # start of its line
    lines = torch.zeros((num_cols + 1) * height, dtype=torch.bool, device=device)
    lines[col_base[col_id] + y] = True
    v2 = _run_squared_distance(lines.view(num_cols + 1, height), dtype).view(-1)

    # Grid of the rows holding a True pixel, each preceded by `pad` cells of +inf (one more pad
    # at the end), so window offsets up to width - 1 never leave their row.
    row_has = torch.zeros(num_maps * height, dtype=torch.bool, device=device)
    row_has[row_id] = True
    rows = row_has.nonzero().squeeze(1)
    num_rows = rows.numel()
    pad = width
    stride = pad + width
    grid = torch.full((num_rows * stride + pad,), math.inf, dtype=dtype, device=device)
    cells = col_base.view(num_maps, width).index_select(0, rows // height)
    cells += (rows % height)[:, None]
    grid[: num_rows * stride].view(num_rows, stride)[:, pad:] = v2[cells]

    # Pass 2.
    row_start = torch.cumsum(row_has, 0).sub_(1).mul_(stride).add_(pad)
    pos = row_start[row_id] + x
    best = grid[pos]
    out = best.clone()
    slot = torch.arange(pix.numel(), device=device)
    lo, hi = 1, min(4, width)
    while lo < width:
        keep = (best > lo * lo).nonzero().squeeze(1)
        if keep.numel() < slot.numel():
            out[slot] = best
            slot, pos, best = slot[keep], pos[keep], best[keep]
            if slot.numel() == 0:
                break
        offsets = torch.arange(lo, hi, device=device, dtype=dtype)
        right_w = offsets * offsets
        left_w = right_w.flip(0)
        windows = grid.unfold(0, hi - lo, 1)  # windows[i] = grid[i : i + hi - lo]
        step = max(1, _CHUNK // (hi - lo))
        for i in range(0, pos.numel(), step):
            p = pos[i : i + step]
            right = windows.index_select(0, p + lo).add_(right_w)
            left = windows.index_select(0, p - (hi - 1)).add_(left_w)
            part = best[i : i + step]
            torch.minimum(part, torch.minimum(right, left).amin(-1), out=part)
        lo, hi = hi, min(2 * hi, width)
    out[slot] = best
    return out


def dense_distance_transform(mask: torch.Tensor) -> torch.Tensor:
    """`distance_transform` of a non-empty bool mask [..., H, W] by the dense algorithm on any
    device (`distance_transform`'s choice off the CPU; public for benchmarks and tests)."""
    height, width = mask.shape[-2:]
    sq, inf = _squared_edt_dense(mask.reshape(-1, height, width))
    exact32 = (height - 1) ** 2 + (width - 1) ** 2 < _FLOAT32_EXACT
    dist = sq.to(torch.float32 if exact32 else torch.float64).sqrt_().to(torch.float32)
    dist = torch.where(sq >= inf, math.inf, dist).view(mask.shape)
    return torch.where(mask, dist, 0.0)


# One int64 sort key holds (map, distance, random rank) below this; else two sorts.
_KEY_LIMIT = 2**63

# Pass 2 of the dense transform compares at most this many (pixel, candidate) pairs at once.
_DENSE_CHUNK = 1 << 22


def _squared_edt_dense(ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Exact squared distance from each pixel to the nearest pixel of its map with another id.

    ids: integer or bool [N,H,W] (pixels sharing an id form one region of their map). Returns
    (sq, inf): int32/int64 [N,H,W] squared distances, `inf` (an int above any real one) where a
    map holds one id only. Static shapes throughout: no host synchronisation, no nonzero().

    Separable and exact, on every pixel. Pass 1: per column, the distance v to the nearest pixel
    with another id, i.e. just past either end of the pixel's run of equal ids. Pass 2: per row,
    D2(x) = min(h(x)^2, min_j v2(j) + (x-j)^2), with h the same run distance along the row.
    This is the textbook min_j [(id(j) == id(x) ? v2(j) : 0) + (x-j)^2] without the id test:
    a j with another id is outside itself, so its term is >= (x-j)^2 >= h(x)^2, and a j with
    the same id beyond such a pixel is farther than h(x). O(W) per pixel in chunks; the maps
    are transposed first when W > H, so the cost is O(H W min(H, W)).
    """
    if ids.shape[-1] > ids.shape[-2]:
        sq, inf = _squared_edt_dense(ids.transpose(-1, -2))
        return sq.transpose(-1, -2), inf
    n, height, width = ids.shape
    inf = height * height + width * width  # > (H-1)^2 + (W-1)^2, the largest real value
    dtype = torch.int32 if 2 * inf < 2**31 else torch.int64  # inf + (x-j)^2 never overflows
    v = _run_distance(ids, 1, dtype)
    v2 = torch.where(v < height, v * v, inf)
    h = _run_distance(ids, 2, dtype)
    out = torch.where(h < width, h * h, inf).view(-1, width)

    # Pass 2, rows in chunks: [rows, W(x), W(j)] at a time.
    ar = torch.arange(width, device=ids.device, dtype=dtype)
    offset2 = (ar[:, None] - ar[None, :]).square()
    rows_v2 = v2.view(-1, width)
    step = max(1, _DENSE_CHUNK // (width * width))
    for i in range(0, rows_v2.shape[0], step):
        best = (rows_v2[i : i + step, None, :] + offset2).amin(-1)
        torch.minimum(out[i : i + step], best, out=out[i : i + step])
    return out.clamp_(max=inf).view(n, height, width), inf


def _run_distance(ids: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """Along `dim` of ids [N,H,W]: distance from each pixel to the nearest pixel with another id
    on its line (just past either end of its run of equal ids); the line's length if none."""
    size = ids.shape[dim]
    ar = torch.arange(size, device=ids.device, dtype=dtype)
    ar = ar.view(-1, 1) if dim == 1 else ar
    change = ids.narrow(dim, 1, size - 1) != ids.narrow(dim, 0, size - 1)
    edge = torch.ones_like(ids.narrow(dim, 0, 1), dtype=torch.bool)
    starts = torch.cat([edge, change], dim)  # first pixel of a run
    ends = torch.cat([change, edge], dim)  # last pixel of a run
    first = torch.where(starts, ar, 0).cummax(dim).values
    last = torch.where(ends, ar, size).flip(dim).cummin(dim).values.flip(dim)
    up = torch.where(first > 0, ar - first + 1, size)
    down = torch.where(last < size - 1, last + 1 - ar, size)
    return torch.minimum(up, down)
