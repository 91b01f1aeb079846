"""BANE's negatives beside the alternatives, on a batch of scenes (taught in notebook 03): which
pixels each set picks (`negative_sets`: BANE, every error, random of the same count), how far from
the boundary they lie (`compare_negative_sets`, `bane_view`, `bane_by_stage`), and what each
anchor's negatives are once the PA loss has drawn them (`loss_negatives`, `negatives_by_stage`:
BANE's picks topped up at random by `fill`, against `negatives="random"`; `readings_by_stage`:
the same under BANE's two readings, `hard_for`). Tensors in, tensors and
rows of numbers out; the figures, the explorer and the printed readings are in `ctx.lessons.bane`.

A scene batch (`scene_batch`) is a reference run's predictions on validation scenes at the input
resolution and at each stage's (`stage_maps`, `stage_choices`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ctx.data import NUM_CLASSES
from ctx.labels import IGNORE_INDEX, check_labels, resize_labels
from ctx.metrics import boundary_band
from ctx.negatives import (
    HARD_FOR,
    boundary_negatives,
    check_hard_for,
    distance_transform,
    error_maps,
    sample_pixels,
    selection_stats,
)

if TYPE_CHECKING:
    from ctx.reference import ReferenceRun


def stage_choices(scenes: dict) -> list[tuple[str, str | int]]:
    """Dropdown options for the resolutions of a scene batch: ("input (H×W)", "input"), then
    ("stage i (h×w)", i - 1) for each stage (stages are numbered from 1 in text, 0 in code)."""
    h, w = scenes["labels"].shape[-2:]
    out: list[tuple[str, str | int]] = [(f"input ({h}×{w})", "input")]
    for i, st in enumerate(scenes["stages"]):
        sh, sw = st["labels"].shape[-2:]
        out.append((f"stage {i + 1} ({sh}×{sw})", i))
    return out


def stage_maps(scenes: dict, stage: str | int) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, labels) [N,h,w] of a scene batch at `stage` ("input" or a 0-based stage index)."""
    if stage == "input":
        return scenes["pred"], scenes["labels"]
    if not isinstance(stage, int) or not 0 <= stage < len(scenes["stages"]):
        raise ValueError(
            f"stage must be 'input' or an index in [0, {len(scenes['stages'])}), got {stage!r}"
        )
    st = scenes["stages"][stage]
    return st["pred"], st["labels"]


@torch.no_grad()
def scene_batch(ref: ReferenceRun, num_scenes: int | None = None, batch_size: int = 32) -> dict:
    """The first `num_scenes` validation scenes with a reference model's predictions:
    {"images" uint8 [N,3,H,W], "labels", "pred" [N,H,W], "stages": [{"labels", "pred"}]}.

    Up to the probe's size (16 scenes) this is the shipped probe batch (no model run); beyond,
    the model (on its own device) predicts the scenes `DigitScenes("val", num_scenes)` generates
    with the run's image size and data seed, the first of which are the probe's scenes.
    """
    probe = ref.probe
    n_probe = len(probe["labels"])
    if num_scenes is None or num_scenes <= n_probe:
        n = n_probe if num_scenes is None else num_scenes
        if n < 1:
            raise ValueError(f"num_scenes must be >= 1, got {num_scenes}")
        return {
            "images": probe["images"][:n],
            "labels": probe["labels"][:n],
            "pred": probe["pred"][:n],
            "stages": [{"labels": s["labels"][:n], "pred": s["pred"][:n]} for s in probe["stages"]],
        }
    if ref.config.dataset != "digits":
        raise ValueError(f"scene_batch makes digit scenes; this run used {ref.config.dataset!r}")
    ds = ref.config.digit_scenes("val", num_scenes)
    model = ref.model
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    preds, stage_preds = [], []
    for i in range(0, num_scenes, batch_size):
        x = ds.images[i : i + batch_size].to(device).float() / 255.0
        logits, embs = model(x, return_embeddings=True)
        p = logits.argmax(1)
        preds.append(p.cpu())
        stage_preds.append([resize_labels(p, e.shape[-2:]).cpu() for e in embs])
    model.train(was)
    pred = torch.cat(preds)
    stages = []
    for s in range(len(stage_preds[0])):
        sp = torch.cat([b[s] for b in stage_preds])
        stages.append({"labels": resize_labels(ds.labels, sp.shape[-2:]), "pred": sp})
    return {"images": ds.images, "labels": ds.labels, "pred": pred, "stages": stages}


def worst_maps(
    pred: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int = NUM_CLASSES,
    top: int = 5,
    classes: Sequence[int] | None = None,
) -> list[tuple[int, int, int]]:
    """The `top` (image, class, error pixels) error maps with the most misclassified pixels,
    most first (ties: lower image, then lower class), among `classes` (None: all): good
    examples to look at. Maps without errors are left out."""
    counts = error_maps(pred, labels, num_classes).sum((2, 3))  # [B,C]
    if classes is not None:
        keep = torch.zeros(num_classes, dtype=torch.bool, device=counts.device)
        keep[list(classes)] = True
        counts = counts * keep
    flat = counts.flatten()
    order = sorted(range(flat.numel()), key=lambda j: (-int(flat[j]), j))[:top]
    c = counts.shape[1]
    return [(j // c, j % c, int(flat[j])) for j in order if int(flat[j]) > 0]


@torch.no_grad()
def random_like(
    selected: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random pixels matched in number to a selection: for each (image, class n) map of
    `selected` [B,C,H,W] with m pixels, m pixels drawn uniformly from the pixels labelled n,
    ignoring the prediction. A control for the selection's place, not what
    `negatives="random"` draws (that is `loss_negatives(...)["random"]`). Returns bool [B,C,H,W]."""
    check_labels(labels, num_classes, ignore_index)
    b, c, h, w = selected.shape
    if (b, h, w) != tuple(labels.shape) or c != num_classes:
        raise ValueError(
            f"selected {tuple(selected.shape)} must be [B,C={num_classes},H,W] for labels "
            f"{tuple(labels.shape)}"
        )
    classes = torch.arange(c, device=labels.device).view(1, c, 1, 1)
    own = ((labels[:, None] == classes) & (labels != ignore_index)[:, None]).view(b * c, h * w)
    count = torch.minimum(selected.reshape(b * c, -1).sum(1), own.sum(1))
    keys = torch.rand(b * c, h * w, generator=generator, device=labels.device)
    keys = torch.where(own, keys, 2.0)  # other pixels sort last
    rank = keys.argsort(1).argsort(1)
    return ((rank < count[:, None]) & own).view(b, c, h, w)


@torch.no_grad()
def negative_sets(
    pred: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int = NUM_CLASSES,
    k: float = 0.5,
    ignore_index: int = IGNORE_INDEX,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Three candidate sets of hard negatives, each bool [B,C,H,W] (map n holds pixels labelled n,
    which become negatives of every other anchor m != n):
    "BANE" = `boundary_negatives` (the lowest-k fraction of each error map's distances),
    "every error" = `error_maps` (all misclassified pixels, the closest peer's hard examples),
    "random" = as many pixels per map as BANE picks, drawn at random from the class (`random_like`;
    a same-count control, not `negatives="random"`).
    `seed` seeds one generator for BANE's tie-breaks and the random draw."""
    g = torch.Generator(device=labels.device).manual_seed(seed)
    errors = error_maps(pred, labels, num_classes, ignore_index)
    bane = boundary_negatives(pred, labels, num_classes, k, ignore_index, generator=g)
    rand = random_like(bane, labels, num_classes, ignore_index, generator=g)
    return {"BANE": bane, "every error": errors, "random": rand}


@torch.no_grad()
def edge_distance(
    labels: torch.Tensor, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Distance from each labelled pixel to the nearest pixel of another label (the ground-truth
    class edge), float [B,H,W]: `distance_transform(labels == n)` summed over classes. Ignore
    pixels are 0; the image border is not an edge; +inf where one class fills the image."""
    check_labels(labels, num_classes, ignore_index)
    classes = torch.arange(num_classes, device=labels.device).view(1, -1, 1, 1)
    own = (labels[:, None] == classes) & (labels != ignore_index)[:, None]
    return distance_transform(own).sum(1)


@torch.no_grad()
def compare_negative_sets(
    sets: dict[str, torch.Tensor],
    pred: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int = NUM_CLASSES,
    ignore_index: int = IGNORE_INDEX,
) -> list[dict]:
    """How far from the boundary each set lies. One row per set (name -> bool [B,C,H,W], as from
    `negative_sets`) with
    `pixels`; `wrong %`, the share that is misclassified; `D px`, the mean distance to the edge
    of the error region (BANE's `distance_transform` of the error maps) over the set's
    misclassified pixels; `edge px`, the mean distance to the nearest pixel of another label
    (`edge_distance`); `band %`, the share inside `ctx.metrics.boundary_band` (2 px of a label
    change). Distances of +inf count as the image side; an empty set gives NaN."""
    measures = _pixel_measures(pred, labels, num_classes, ignore_index)
    return [_weighted_row(name, sel.any(1), measures) for name, sel in sets.items()]


def _pixel_measures(
    pred: torch.Tensor, labels: torch.Tensor, num_classes: int, ignore_index: int
) -> dict[str, torch.Tensor]:
    """Per pixel [B,H,W]: "wrong" (misclassified), "D" (distance to the edge of its error
    region, 0 off the errors), "edge" (`edge_distance`) and "band" (`boundary_band`, 2 px);
    +inf distances count as the image side."""
    side = float(max(labels.shape[-2:]))
    errors = error_maps(pred, labels, num_classes, ignore_index)
    return {
        "wrong": errors.any(1),
        "D": torch.nan_to_num(distance_transform(errors).sum(1), posinf=side),
        "edge": torch.nan_to_num(edge_distance(labels, num_classes, ignore_index), posinf=side),
        "band": boundary_band(labels, 2, ignore_index),
    }


def _weighted_row(name: str, weight: torch.Tensor, measures: dict[str, torch.Tensor]) -> dict:
    """`compare_negative_sets`' row of a set given as weight [B,H,W]: how many times each pixel
    is taken (0/1 for a pixel set, the number of anchors for each anchor's negatives)."""
    w = weight.double()
    n = float(w.sum())
    wrong = w * measures["wrong"]
    n_wrong = float(wrong.sum())

    def share(x: torch.Tensor, of: float) -> float:
        return float(x.sum()) / of if of else math.nan

    return {
        "set": name,
        "pixels": round(n),
        "wrong %": 100.0 * share(wrong, n),
        "D px": share(wrong * measures["D"], n_wrong),
        "edge px": share(w * measures["edge"], n),
        "band %": 100.0 * share(w * measures["band"], n),
    }


@torch.no_grad()
def loss_negatives(
    pred: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int = NUM_CLASSES,
    k: float = 0.5,
    max_negatives: int = 256,
    fill: bool = True,
    ignore_index: int = IGNORE_INDEX,
    seed: int = 0,
    hard_for: str = "others",
) -> dict[str, torch.Tensor]:
    """Each anchor's negatives as the PA loss draws them on one batch (pred, labels [B,H,W] at a
    stage's size), drawn by `ctx.negatives.sample_pixels` as `ContextrastLoss` draws them:
    "bane" with `negatives="bane"` (each anchor's hard pixels first, a random subset if more
    than `max_negatives`, topped up at random to `max_negatives` when `fill`), "random" with
    `negatives="random"` (no hard pixel: `max_negatives` pixels drawn uniformly from the pixels of
    the other classes). Each is bool [C,B,H,W], row m the negatives of anchor m (empty for a class
    absent from the batch, which has no anchor). "picks" [B,H,W]: BANE's picks. "hard"
    [C,B,H,W]: row m the hard pixels anchor m may draw: the picks of the other classes
    (`hard_for="others"`, METHOD.md's reading) or the picks predicted as m
    (`hard_for="predicted"`, `BoundaryMiner`'s other reading; a pick predicted as a class
    absent from the batch is then no anchor's hard negative)."""
    check_hard_for(hard_for)
    g = torch.Generator(device=labels.device).manual_seed(seed)
    picks = boundary_negatives(pred, labels, num_classes, k, ignore_index, generator=g).any(1)
    classes = torch.arange(num_classes, device=labels.device).view(-1, 1, 1, 1)
    owner = pred if hard_for == "predicted" else labels
    per_anchor = (owner.unsqueeze(0) == classes) == (hard_for == "predicted")
    hard = per_anchor & picks.unsqueeze(0)  # [C,B,H,W]
    valid = labels[labels != ignore_index]
    present = torch.bincount(valid.flatten(), minlength=num_classes) > 0
    out = {"picks": picks, "hard": hard}
    for name, h in (("bane", hard), ("random", None)):
        s = sample_pixels(
            labels,
            num_classes,
            h,
            max_negatives=max_negatives,
            fill=fill,
            ignore_index=ignore_index,
            generator=g,
        )
        if s.neg_idx is None:  # no cap was hit: the mask is every candidate
            mask = s.neg_ok
        else:
            mask = s.neg_ok.new_zeros(num_classes, labels.numel())
            mask.scatter_(1, s.neg_idx, s.neg_ok)
        out[name] = mask.view(num_classes, *labels.shape) & present.view(-1, 1, 1, 1)
    return out


@torch.no_grad()
def negatives_by_stage(
    scenes: dict,
    k: float = 0.5,
    max_negatives: int = 256,
    batch: int = 16,
    num_classes: int = NUM_CLASSES,
    seed: int = 0,
    hard_for: str = "others",
) -> list[dict]:
    """What the PA loss's anchors get as negatives at each stage of a scene batch
    (`scene_batch`), in batches of `batch` scenes as in training (`loss_negatives`, with BANE's
    reading `hard_for`). One row per stage: `anchors` (present classes, summed over batches);
    `hard/anchor`, hard pixels among an anchor's negatives (mean); `no hard %`, the share of
    anchors without any; `fill %`, the share of the
    negatives that `fill` drew at random; `all taken %`, the share of anchors whose every
    candidate (pixel of another class) is a negative, so that no choice is made at all;
    `wrong %` and `band %` (as in `compare_negative_sets`, counted once per anchor) of the
    negatives with BANE and with `negatives="random"`."""
    rows = []
    for label, stage in stage_choices(scenes)[1:]:
        pred, labels = stage_maps(scenes, stage)
        acc = {"anchors": 0, "negatives": 0, "hard": 0, "no hard": 0, "all taken": 0}
        weights, measures = {"bane": [], "random": []}, []
        for i in range(0, len(labels), batch):
            p, y = pred[i : i + batch], labels[i : i + batch]
            neg = loss_negatives(
                p, y, num_classes, k, max_negatives, seed=seed + i, hard_for=hard_for
            )
            valid = y != IGNORE_INDEX
            for m in y[valid].unique().tolist():
                acc["anchors"] += 1
                acc["negatives"] += int(neg["bane"][m].sum())
                hard = int((neg["bane"][m] & neg["hard"][m]).sum())
                acc["hard"] += hard
                acc["no hard"] += hard == 0
                acc["all taken"] += int(((y != m) & valid).sum()) <= max_negatives
            for name in weights:
                weights[name].append(neg[name].sum(0))
            measures.append(_pixel_measures(p, y, num_classes, IGNORE_INDEX))
        cat = {key: torch.cat([m[key] for m in measures]) for key in measures[0]}
        sets = {name: _weighted_row(name, torch.cat(w), cat) for name, w in weights.items()}
        n, neg_total = max(acc["anchors"], 1), acc["negatives"]
        rows.append(
            {
                "resolution": label,
                "anchors": acc["anchors"],
                "hard/anchor": acc["hard"] / n,
                "no hard %": 100.0 * acc["no hard"] / n,
                "fill %": 100.0 * (1 - acc["hard"] / neg_total) if neg_total else math.nan,
                "all taken %": 100.0 * acc["all taken"] / n,
                "wrong % BANE": sets["bane"]["wrong %"],
                "wrong % random": sets["random"]["wrong %"],
                "band % BANE": sets["bane"]["band %"],
                "band % random": sets["random"]["band %"],
            }
        )
    return rows


@torch.no_grad()
def readings_by_stage(
    scenes: dict,
    k: float = 0.5,
    max_negatives: int = 256,
    batch: int = 16,
    num_classes: int = NUM_CLASSES,
    seed: int = 0,
    background: int = 0,
) -> list[dict]:
    """BANE's two readings side by side at each stage of a scene batch (METHOD.md, BANE 4): a
    pick is a hard negative of every other anchor ("others") or only of the anchor of the class
    it was predicted as ("predicted"). Both are drawn by `negatives_by_stage` on the same
    batches of `batch` scenes with the same seeds, so the picks and the random keys are the
    same. One row per stage: `picks`, BANE's picks (summed over batches); `to background %`, the
    share predicted as class `background` (0 in digit scenes), the background anchor's alone
    under "predicted"; `all taken %` (the same under both); under each reading `hard/anchor`,
    `fill %` and `wrong %` (the misclassified share of the negatives), and under "predicted"
    `no hard %`, the share of anchors without a hard negative."""
    if isinstance(background, bool) or not isinstance(background, int):
        raise ValueError(f"background must be a class index (an int), got {background!r}")
    if not 0 <= background < num_classes:
        raise ValueError(f"background must be a class in [0, {num_classes}), got {background}")
    both = {
        reading: negatives_by_stage(scenes, k, max_negatives, batch, num_classes, seed, reading)
        for reading in HARD_FOR
    }
    rows = []
    for s, (label, stage) in enumerate(stage_choices(scenes)[1:]):
        pred, labels = stage_maps(scenes, stage)
        picks, to_bg = 0, 0
        for i in range(0, len(labels), batch):  # the picks negatives_by_stage drew from
            p, y = pred[i : i + batch], labels[i : i + batch]
            hard = loss_negatives(p, y, num_classes, k, max_negatives, seed=seed + i)["picks"]
            picks, to_bg = picks + int(hard.sum()), to_bg + int((hard & (p == background)).sum())
        others, predicted = both["others"][s], both["predicted"][s]
        rows.append(
            {
                "resolution": label,
                "picks": picks,
                "to background %": 100.0 * to_bg / picks if picks else math.nan,
                "all taken %": others["all taken %"],
                "hard/anchor others": others["hard/anchor"],
                "hard/anchor predicted": predicted["hard/anchor"],
                "no hard % predicted": predicted["no hard %"],
                "fill % others": others["fill %"],
                "fill % predicted": predicted["fill %"],
                "wrong % others": others["wrong % BANE"],
                "wrong % predicted": predicted["wrong % BANE"],
            }
        )
    return rows


@torch.no_grad()
def bane_view(
    scenes: dict,
    image: int,
    cls: int,
    stage: str | int = "input",
    k: float = 0.5,
    num_classes: int = NUM_CLASSES,
    seed: int = 0,
) -> dict:
    """Everything BANE does to one (image, class) map at one resolution, as [h,w] tensors:
    "labels", "pred", "errors" (B^n), "distance" (D^n, 0 off the map), the three sets of
    `negative_sets` ("BANE", "every error", "random"), "count" (pixels BANE picks: ceil(k·n)),
    "n_errors", "stats" (`selection_stats` of BANE within the errors) and "rows"
    (`compare_negative_sets` on this map)."""
    pred, labels = stage_maps(scenes, stage)
    if not 0 <= image < len(labels):
        raise ValueError(f"image must be in [0, {len(labels)}), got {image}")
    if not 0 <= cls < num_classes:
        raise ValueError(f"cls must be a class id in [0, {num_classes}), got {cls}")
    p, y = pred[image : image + 1], labels[image : image + 1]
    sets = negative_sets(p, y, num_classes, k, seed=seed)
    errors = sets["every error"]
    distance = distance_transform(errors)
    one = {name: m[:, cls : cls + 1] for name, m in sets.items()}
    stats = selection_stats(one["BANE"], one["every error"], distance[:, cls : cls + 1])
    return {
        "labels": y[0],
        "pred": p[0],
        "errors": errors[0, cls],
        "distance": distance[0, cls],
        **{name: m[0, 0] for name, m in one.items()},
        "count": int(one["BANE"].sum()),
        "n_errors": int(errors[0, cls].sum()),
        "stats": stats,
        "rows": _map_rows(one, p, y, cls, num_classes),
    }


def _map_rows(one: dict, pred: torch.Tensor, labels: torch.Tensor, cls: int, num_classes: int):
    """compare_negative_sets for masks holding only class `cls`'s map ([B,1,H,W] each)."""
    full = {}
    for name, m in one.items():
        z = torch.zeros(m.shape[0], num_classes, *m.shape[-2:], dtype=torch.bool, device=m.device)
        z[:, cls] = m[:, 0]
        full[name] = z
    return compare_negative_sets(full, pred, labels, num_classes)


@torch.no_grad()
def bane_by_stage(
    scenes: dict[str, dict], k: float = 0.5, num_classes: int = NUM_CLASSES, seed: int = 0
) -> tuple[list[dict], dict[tuple[str, str | int], dict]]:
    """BANE at every resolution of several models' scene batches (name -> `scene_batch`).
    Returns (rows, stats): one row per (model, resolution) with `errors` (misclassified pixels),
    `D>1 %` (the share of them deeper than the rim of their error region, D > 1: the only ones
    BANE's distance ranking can leave out), `picked` (BANE's selection, ceil(k·n) per map) and
    `picked %` (of the errors; above k where maps hold a pixel or two), `D picked` / `D other`
    (mean distance to the error's edge, `selection_stats`; "–" when every error is picked), and
    stats keyed by (name, stage) for `plot_distance_histograms`."""
    rows, stats = [], {}
    for name, sc in scenes.items():
        for label, stage in stage_choices(sc):
            pred, labels = stage_maps(sc, stage)
            g = torch.Generator(device=labels.device).manual_seed(seed)
            errors = error_maps(pred, labels, num_classes)
            picked = boundary_negatives(pred, labels, num_classes, k, generator=g)
            distance = distance_transform(errors)
            st = selection_stats(picked, errors, distance)
            stats[name, stage] = st
            n_err, n_pick = int(st["errors"].sum()), int(st["selected"].sum())
            other = st["mean_unselected"]
            rows.append(
                {
                    "model": name,
                    "resolution": label,
                    "errors": n_err,
                    "D>1 %": 100.0 * int((errors & (distance > 1)).sum()) / n_err
                    if n_err
                    else math.nan,
                    "picked": n_pick,
                    "picked %": 100.0 * n_pick / n_err if n_err else math.nan,
                    "D picked": st["mean_selected"],
                    "D other": "–" if math.isnan(other) else other,
                }
            )
    return rows, stats
