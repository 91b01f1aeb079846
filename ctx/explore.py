"""Exploring a trained model's insides: BANE negatives (notebook 03), anchor evolution (05) and
the embedding atlas (06).

Three kinds of things live here, so the notebooks only explain, call and show:
- analysis functions on tensors (`negative_sets`, `anchor_similarity`, `stage_alignment`,
  `Atlas.projection`, ...), tested on tiny hand-made inputs;
- plot functions that return the matplotlib Figure they drew;
- widget builders (`bane_explorer`, `anchor_explorer`, `atlas_explorer`) returning an `Explorer`:
  an ipywidgets VBox whose `controls` dict holds the explicit controls (sliders with
  `continuous_update=False`), wired with `widgets.interactive_output` into the Output widget `out`;
  the last computation stays on `result` (and the last figure on `figure`, its PNG on `png`), so a
  test can set a control's `.value` headlessly and check the effect.

Data come from `ctx.reference.load_reference` ("ce" and "contextrast" reference runs).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence

try:
    import ipywidgets as widgets
except ImportError as e:  # the library installs without the notebook extras
    raise ImportError(
        "ctx.explore needs the notebooks extra: pip install 'ctx-contextrast[notebooks]'"
    ) from e
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.lines import Line2D

from ctx.anchors import class_anchors
from ctx.data import CLASS_NAMES, NUM_CLASSES
from ctx.labels import IGNORE_INDEX, check_labels, resize_labels
from ctx.metrics import boundary_band
from ctx.negatives import boundary_negatives, distance_transform, error_maps, selection_stats
from ctx.plotting import PALETTE, class_legend, label_to_rgb, overlay, to_image
from ctx.widgets import Explorer

__all__ = [
    "Explorer",
    "class_name",
    "scene_batch",
    "stage_maps",
    "stage_choices",
    "worst_maps",
    "random_like",
    "negative_sets",
    "edge_distance",
    "compare_negative_sets",
    "format_table",
    "bane_view",
    "plot_bane_steps",
    "bane_by_stage",
    "plot_distance_histograms",
    "bane_explorer",
    "anchor_similarity",
    "stage_alignment",
    "anchor_summary",
    "anchor_pca",
    "plot_similarity_matrices",
    "plot_anchor_epoch",
    "plot_alignment_curves",
    "plot_trajectories",
    "anchor_explorer",
    "stratified_sample",
    "project_points",
    "nearest_anchor_accuracy",
    "separation_table",
    "Atlas",
    "plot_atlas",
    "atlas_explorer",
]

COLOURS = {"BANE": (1.0, 0.1, 0.6), "every error": (1.0, 0.55, 0.0), "random": (0.1, 0.6, 1.0)}


# --------------------------------------------------------------------------- widgets


def _dropdown(options, value, description: str) -> widgets.Dropdown:
    return widgets.Dropdown(options=options, value=value, description=description)


def class_name(cls: int) -> str:
    """ "background" or "digit d" for a class id of the digit scenes (id d + 1 is digit d)."""
    return "background" if cls == 0 else f"digit {CLASS_NAMES[cls]}"


# --------------------------------------------------------------------------- scenes


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
def scene_batch(ref: dict, num_scenes: int | None = None, batch_size: int = 32) -> dict:
    """The first `num_scenes` validation scenes with a reference model's predictions:
    {"images" uint8 [N,3,H,W], "labels", "pred" [N,H,W], "stages": [{"labels", "pred"}]}.

    Up to the probe's size (16 scenes) this is the shipped probe batch (no model run); beyond,
    the model (on its own device) predicts the scenes `DigitScenes("val", num_scenes)` generates
    with the run's image size and data seed, the first of which are the probe's scenes.
    """
    probe = ref["probe"]
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
    cfg = ref["config"]
    if cfg.get("dataset", "digits") != "digits":
        raise ValueError(f"scene_batch makes digit scenes; this run used {cfg['dataset']!r}")
    from ctx.engine.config import config_from_dict

    ds = config_from_dict(cfg).digit_scenes("val", num_scenes)
    model = ref["model"]
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


# --------------------------------------------------------------------------- BANE (notebook 03)


@torch.no_grad()
def random_like(
    selected: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random negatives matched in number to a selection: for each (image, class n) map of
    `selected` [B,C,H,W] with m pixels, m pixels drawn uniformly from the pixels labelled n
    (what `negatives="random"` would draw, ignoring the prediction). Returns bool [B,C,H,W]."""
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
    "random" = as many pixels per map as BANE picks, drawn at random from the class (`random_like`).
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
    side = float(max(labels.shape[-2:]))
    edge = torch.nan_to_num(edge_distance(labels, num_classes, ignore_index), posinf=side)
    errors = error_maps(pred, labels, num_classes, ignore_index)
    dist = torch.nan_to_num(distance_transform(errors).sum(1), posinf=side)
    wrong = errors.any(1)
    band = boundary_band(labels, 2, ignore_index)
    rows = []
    for name, sel in sets.items():
        pix = sel.any(1)
        n, n_wrong = int(pix.sum()), int((pix & wrong).sum())
        rows.append(
            {
                "set": name,
                "pixels": n,
                "wrong %": 100.0 * n_wrong / n if n else math.nan,
                "D px": float(dist[pix & wrong].mean()) if n_wrong else math.nan,
                "edge px": float(edge[pix].mean()) if n else math.nan,
                "band %": 100.0 * float(band[pix].float().mean()) if n else math.nan,
            }
        )
    return rows


def format_table(rows: Sequence[dict], digits: int = 1) -> str:
    """A plain-text table of dict rows (same keys), floats rounded to `digits`."""
    if not rows:
        return "(empty)"
    cols = list(rows[0])

    def cell(v) -> str:
        if isinstance(v, float):
            return "nan" if v != v else f"{v:.{digits}f}"
        return str(v)

    body = [[cell(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cols, widths, strict=True))
        )
    ]
    for b in body:
        lines.append(
            "  ".join(
                v.ljust(w) if i == 0 else v.rjust(w)
                for i, (v, w) in enumerate(zip(b, widths, strict=True))
            )
        )
    return "\n".join(lines)


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


def _show_map(ax: plt.Axes, rgb: np.ndarray, title: str) -> None:
    ax.imshow(rgb, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_bane_steps(
    scenes: dict, view: dict, image: int, cls: int, k: float, title: str = ""
) -> plt.Figure:
    """BANE on one map in two rows. Top: the image, ground truth and prediction at the map's
    resolution, the distance transform D^n. Bottom: the three negative sets as overlays on the
    image in grey (every error B^n, BANE's lowest-k picks, random pixels of class n, same count) and
    the histogram of D^n for BANE's picks versus the other errors."""
    img = scenes["images"][image]
    name = class_name(cls)
    fig, axes = plt.subplots(2, 4, figsize=(12, 6.2))
    _show_map(axes[0, 0], to_image(img), f"image {image}")
    _show_map(axes[0, 1], label_to_rgb(view["labels"]), "ground truth $y$")
    _show_map(axes[0, 2], label_to_rgb(view["pred"]), r"prediction $\hat{y}$")
    class_legend(axes[0, 2], ["bg", *CLASS_NAMES[1:]], fontsize=7)
    d = view["distance"].clone()
    d[~view["errors"] | torch.isinf(d)] = math.nan  # blank off the error map
    shown = axes[0, 3].imshow(d.numpy(), cmap="viridis")
    axes[0, 3].set_title(f"distance $D^n$, n = {name}")
    axes[0, 3].set_xticks([])
    axes[0, 3].set_yticks([])
    fig.colorbar(shown, ax=axes[0, 3], fraction=0.046, pad=0.04)
    n = view["n_errors"]
    titles = {
        "every error": f"every error $B^n$: {n} px",
        "BANE": f"BANE, K={k:.0%}: {view['count']} px",
        "random": f"random {name} px: {int(view['random'].sum())}",
    }
    grey = img.float().mean(0, keepdim=True).expand(3, -1, -1)  # so the masks' colours stand out
    for ax, key in zip(axes[1, :3], ("every error", "BANE", "random"), strict=True):
        overlay(ax, grey, view[key], colour=COLOURS[key], alpha=0.85)
        ax.set_title(titles[key])
    stats, ax = view["stats"], axes[1, 3]
    bins = np.arange(len(stats["hist_selected"]))
    ax.bar(bins - 0.2, stats["hist_selected"].numpy(), 0.4, color=COLOURS["BANE"], label="BANE")
    ax.bar(bins + 0.2, stats["hist_unselected"].numpy(), 0.4, color="0.6", label="other errors")
    ax.set_xlabel("distance to the error's edge (px)")
    ax.set_ylabel("pixels")
    ax.legend(fontsize=8)
    ax.set_title("$D^n$ of the errors (last bin: ≥)")
    if n == 0:
        title += f"{': ' if title else ''}no {name} pixel is misclassified here"
    if title:
        fig.suptitle(title)
    # a fixed layout: a layout engine would double the drawing time of every widget update
    fig.subplots_adjust(left=0.02, right=0.97, bottom=0.09, top=0.88, wspace=0.45, hspace=0.28)
    return fig


@torch.no_grad()
def bane_by_stage(
    scenes: dict[str, dict], k: float = 0.5, num_classes: int = NUM_CLASSES, seed: int = 0
) -> tuple[list[dict], dict[tuple[str, str | int], dict]]:
    """BANE at every resolution of several models' scene batches (name -> `scene_batch`).
    Returns (rows, stats): one row per (model, resolution) with `errors` (misclassified pixels),
    `picked` (BANE's selection, ceil(k·n) per map), `D picked` / `D other` (mean distance to
    the error's edge, `selection_stats`), and stats keyed by (name, stage) for
    `plot_distance_histograms`."""
    rows, stats = [], {}
    for name, sc in scenes.items():
        for label, stage in stage_choices(sc):
            pred, labels = stage_maps(sc, stage)
            g = torch.Generator(device=labels.device).manual_seed(seed)
            errors = error_maps(pred, labels, num_classes)
            picked = boundary_negatives(pred, labels, num_classes, k, generator=g)
            st = selection_stats(picked, errors, distance_transform(errors))
            stats[name, stage] = st
            rows.append(
                {
                    "model": name,
                    "resolution": label,
                    "errors": int(st["errors"].sum()),
                    "picked": int(st["selected"].sum()),
                    "D picked": st["mean_selected"],
                    "D other": st["mean_unselected"],
                }
            )
    return rows, stats


def plot_distance_histograms(stats: dict[str, dict], title: str = "") -> plt.Figure:
    """One panel per name (e.g. model): `selection_stats` histograms of the distance to the
    error's edge, BANE picks versus the other errors."""
    fig, axes = plt.subplots(1, len(stats), figsize=(4.2 * len(stats), 3), squeeze=False)
    for ax, (name, s) in zip(axes[0], stats.items(), strict=True):
        bins = np.arange(len(s["hist_selected"]))
        ax.bar(bins - 0.2, s["hist_selected"].numpy(), 0.4, color=COLOURS["BANE"], label="BANE")
        ax.bar(bins + 0.2, s["hist_unselected"].numpy(), 0.4, color="0.6", label="other errors")
        ax.set_title(
            f"{name}: mean D {s['mean_selected']:.2f} (BANE) vs {s['mean_unselected']:.2f} px"
        )
        ax.set_xlabel("distance to the error's edge (px, last bin: ≥)")
        ax.set_ylabel("pixels")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def bane_explorer(
    scenes: dict[str, dict],
    k: float = 0.5,
    image: int | None = None,
    cls: int | None = None,
    stage: str | int = "input",
    model: str | None = None,
    seed: int = 0,
) -> Explorer:
    """The BANE explorer: controls `model` (Dropdown), `k` (FloatSlider, K as a fraction, the
    first slider), `image` (IntSlider), `cls` (Dropdown of classes) and `stage` (Dropdown: the
    input resolution or a stage); the figure is `plot_bane_steps`. `scenes`: model name -> `scene_batch` output.
    Defaults to the digit map with the most errors (`worst_maps`). `result` is `bane_view`'s dict plus
    the control values and a `text` table of the three sets."""
    names = list(scenes)
    model = names[-1] if model is None else model
    first = scenes[model]
    if image is None or cls is None:  # the worst digit map, else the worst map, else (0, 0)
        maps = stage_maps(first, stage)
        worst = worst_maps(*maps, top=1, classes=range(1, NUM_CLASSES)) or worst_maps(*maps, top=1)
        image, cls = (worst[0][0], worst[0][1]) if worst else (0, 0)
    controls = {
        "model": _dropdown(names, model, "model"),
        "k": widgets.FloatSlider(
            value=k,
            min=0.05,
            max=1.0,
            step=0.05,
            description="K",
            readout_format=".0%",
            continuous_update=False,
        ),
        "image": widgets.IntSlider(
            value=image,
            min=0,
            max=len(first["labels"]) - 1,
            description="image",
            continuous_update=False,
        ),
        "cls": _dropdown([(class_name(i), i) for i in range(NUM_CLASSES)], cls, "class"),
        "stage": _dropdown(stage_choices(first), stage, "resolution"),
    }

    def draw(model: str, image: int, cls: int, stage: str | int, k: float):
        view = bane_view(scenes[model], image, cls, stage, k, seed=seed)
        fig = plot_bane_steps(scenes[model], view, image, cls, k, title=model)
        values = {"model": model, "image": image, "cls": cls, "stage": stage, "k": k}
        return {**view, **values, "text": format_table(view["rows"])}, fig

    return Explorer(draw, controls)


# --------------------------------------------------------------------------- anchors (notebook 05)


def _steps(anchors: dict) -> list[int]:
    s = anchors["step"]
    return [int(v) for v in (s.tolist() if isinstance(s, torch.Tensor) else s)]


def anchor_similarity(anchors: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarities between class anchors: [..., C, D] -> [..., C, C]. Rows are
    re-normalised first (snapshots are stored in half precision); entries involving a class
    absent from `present` [..., C] are NaN."""
    if anchors.dim() < 2:
        raise ValueError(f"anchors must be [..., C, D], got {tuple(anchors.shape)}")
    a = F.normalize(anchors.float(), dim=-1)
    sim = a @ a.transpose(-1, -2)
    if present is not None:
        both = present[..., :, None] & present[..., None, :]
        sim = torch.where(both, sim, torch.full_like(sim, math.nan))
    return sim


def stage_alignment(anchors: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """cos(a_i^n, a_I^n): each stage's class anchor against the last stage's, per snapshot.
    anchors [E,S,C,D], present [E,S,C] -> [E,S,C] (NaN where the class is absent at either
    stage; the last stage's row is 1). Stages share the dimension D but not the head, so the
    cosine is only high if training pulled them together (CCL's fusion does)."""
    if anchors.dim() != 4 or present.shape != anchors.shape[:3]:
        raise ValueError(
            f"anchors must be [E,S,C,D] and present [E,S,C], got {tuple(anchors.shape)} and "
            f"{tuple(present.shape)}"
        )
    a = F.normalize(anchors.float(), dim=-1)
    cos = (a * a[:, -1:]).sum(-1)
    ok = present & present[:, -1:]
    return torch.where(ok, cos, torch.full_like(cos, math.nan))


def _nanmean(x: torch.Tensor, dim=None) -> torch.Tensor:
    return torch.nanmean(x, dim=dim) if dim is not None else torch.nanmean(x)


def anchor_summary(anchor_sets: dict[str, dict], epoch: int = -1) -> list[dict]:
    """One row per (model, stage) at snapshot `epoch`: the mean off-diagonal anchor similarity
    (lower = classes further apart) and the mean alignment with the last stage."""
    rows = []
    for name, a in anchor_sets.items():
        anchors, present = a["anchors"][epoch], a["present"][epoch]
        align = stage_alignment(a["anchors"], a["present"])[epoch]
        for s in range(anchors.shape[0]):
            sim = anchor_similarity(anchors[s], present[s])
            off = ~torch.eye(sim.shape[0], dtype=torch.bool)
            rows.append(
                {
                    "model": name,
                    "stage": s + 1,
                    "mean class similarity": float(_nanmean(sim[off])),
                    "alignment with last": float(_nanmean(align[s])),
                }
            )
    return rows


def anchor_pca(
    anchors: torch.Tensor, present: torch.Tensor, stages: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """2-D PCA of every present anchor snapshot of `stages` together (one shared basis).
    anchors [E,S,C,D], present [E,S,C] -> (coords [E,len(stages),C,2] with NaN for absent
    classes, explained variance ratio [2]). Signs are fixed so each component's largest
    loading is positive (deterministic across runs)."""
    a = F.normalize(anchors.float(), dim=-1)[:, list(stages)].numpy().astype(np.float64)
    p = present[:, list(stages)].numpy()
    x = a[p]
    if len(x) < 2:
        coords = np.full((*a.shape[:3], 2), np.nan)
        if len(x) == 1:
            coords[p] = 0.0
        return coords, np.zeros(2)
    mean = x.mean(0)
    _, sv, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:
        comps = np.vstack([comps, np.zeros_like(comps)])
    signs = np.sign(comps[np.arange(2), np.abs(comps).argmax(1)])
    comps = comps * np.where(signs == 0, 1, signs)[:, None]
    var = sv**2
    ratio = np.zeros(2)
    ratio[: min(2, len(var))] = (var / var.sum())[:2] if var.sum() > 0 else 0
    coords = np.full((*a.shape[:3], 2), np.nan)
    coords[p] = (x - mean) @ comps.T
    return coords, ratio


def _sim_panel(ax: plt.Axes, sim: torch.Tensor, title: str) -> plt.cm.ScalarMappable:
    im = ax.imshow(sim.numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    ticks = range(len(CLASS_NAMES))
    ax.set_xticks(ticks, ["bg", *CLASS_NAMES[1:]], fontsize=7)
    ax.set_yticks(ticks, ["bg", *CLASS_NAMES[1:]], fontsize=7)
    ax.set_title(title)
    return im


def plot_similarity_matrices(
    anchor_sets: dict[str, dict], epochs: Sequence[int], stage: int
) -> plt.Figure:
    """Class-similarity matrices (`anchor_similarity`) of `stage` (0-based): one row per model,
    one column per snapshot in `epochs` (0-based indices)."""
    names = list(anchor_sets)
    fig = plt.figure(figsize=(3.3 * len(epochs) + 1, 3.1 * len(names)), layout="constrained")
    axes = np.asarray(fig.subplots(len(names), len(epochs), squeeze=False))
    im = None
    for r, name in enumerate(names):
        a = anchor_sets[name]
        steps = _steps(a)
        for c, e in enumerate(epochs):
            sim = anchor_similarity(a["anchors"][e, stage], a["present"][e, stage])
            im = _sim_panel(axes[r, c], sim, f"{name}, step {steps[e]}")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="cosine")
    fig.suptitle(f"anchor cosine similarities, stage {stage + 1}")
    return fig


def plot_anchor_epoch(anchor_sets: dict[str, dict], epoch: int, stage: int) -> plt.Figure:
    """Snapshot `epoch` (0-based), stage `stage` (0-based). Top: each model's class-similarity
    matrix, then each model's per-class alignment with the last stage (bars). Bottom: each
    model's anchor trajectories (PCA of stage and last-stage snapshots, this epoch marked ★),
    then the mean alignment of every stage over training (this stage bold, this epoch marked)."""
    names = list(anchor_sets)
    fig = plt.figure(figsize=(4.4 * (len(names) + 1), 8.4))
    axes = fig.subplots(2, len(names) + 1)
    # a fixed layout: a layout engine would double the drawing time of every widget update
    fig.subplots_adjust(left=0.065, right=0.98, bottom=0.07, top=0.9, wspace=0.3, hspace=0.32)
    steps = _steps(anchor_sets[names[0]])
    last = anchor_sets[names[0]]["anchors"].shape[1] - 1
    im = None
    for j, name in enumerate(names):
        a = anchor_sets[name]
        sim = anchor_similarity(a["anchors"][epoch, stage], a["present"][epoch, stage])
        im = _sim_panel(axes[0, j], sim, f"{name}: anchor cosines, stage {stage + 1}")
        _trajectory_panel(axes[1, j], a, stage, epoch, f"{name}: anchor trajectories")
    fig.colorbar(im, ax=axes[0, : len(names)].tolist(), fraction=0.03, pad=0.02)
    ax = axes[0, -1]
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        a = anchor_sets[name]
        al = stage_alignment(a["anchors"], a["present"])[epoch, stage].numpy()
        ax.bar(np.arange(len(al)) + (j - (len(names) - 1) / 2) * width, al, width, label=name)
    ax.set_xticks(range(len(CLASS_NAMES)), ["bg", *CLASS_NAMES[1:]], fontsize=7)
    ax.set_ylim(-1, 1.05)
    ax.axhline(0, color="k", lw=0.5)
    note = " (1 by definition)" if stage == last else ""
    ax.set_title(f"cos($a_{stage + 1}^n$, $a_{last + 1}^n$) per class{note}")
    ax.legend(fontsize=8)
    _alignment_panel(axes[1, -1], anchor_sets, range(last), marker=steps[epoch], bold=stage)
    fig.suptitle(
        f"epoch {epoch + 1} of {len(steps)} (after step {steps[epoch]}), stage {stage + 1}"
    )
    return fig


def _trajectory_panel(ax: plt.Axes, a: dict, stage: int, epoch: int | None, title: str) -> None:
    last = a["anchors"].shape[1] - 1
    stages = [stage] if stage == last else [stage, last]
    coords, ratio = anchor_pca(a["anchors"], a["present"], stages)
    for c in range(coords.shape[2]):
        for j in range(len(stages)):
            xy = coords[:, j, c]
            style = "-" if j == 0 else ":"
            ax.plot(
                xy[:, 0],
                xy[:, 1],
                style,
                color=PALETTE[c],
                lw=1.2 if j == 0 else 1.0,
                marker="." if len(xy) == 1 else None,
            )
            ax.plot(
                xy[-1:, 0],
                xy[-1:, 1],
                "o" if j == 0 else "s",
                color=PALETTE[c],
                ms=5,
                mfc=PALETTE[c] if j == 0 else "none",
            )
            if epoch is not None:
                ax.plot(xy[epoch, 0], xy[epoch, 1], "*", color=PALETTE[c], ms=11, mec="k", mew=0.5)
            if j == 0 and np.isfinite(xy[-1]).all():
                ax.annotate(
                    CLASS_NAMES[c] if c else "bg",
                    xy[-1],
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
    ax.set_xlabel(f"PC1 ({ratio[0]:.0%})")
    ax.set_ylabel(f"PC2 ({ratio[1]:.0%})")
    what = f"stage {stage + 1} (solid, ●)" + (", last stage (dotted, □)" if len(stages) > 1 else "")
    ax.set_title(f"{title}\n{what}", fontsize=9)


def _alignment_panel(
    ax: plt.Axes,
    anchor_sets: dict[str, dict],
    stages: Sequence[int],
    marker: int | None = None,
    bold: int | None = None,
) -> None:
    styles = ["--", "-", "-.", ":"] if len(anchor_sets) > 1 else ["-"]
    for j, (name, a) in enumerate(anchor_sets.items()):
        steps = _steps(a)
        al = _nanmean(stage_alignment(a["anchors"], a["present"]), dim=2)  # [E,S]
        for s in stages:
            ax.plot(
                steps,
                al[:, s].numpy(),
                styles[j % len(styles)],
                marker="o" if len(steps) < 3 else ".",
                color=f"C{s}",
                lw=2.2 if s == bold else 1.2,
                alpha=1.0 if bold is None or s == bold else 0.5,
                label=f"{name}, stage {s + 1}",
            )
    if marker is not None:
        ax.axvline(marker, color="k", lw=0.8, alpha=0.5)
    ax.set_xlabel("step")
    ax.set_ylabel("mean cos with the last stage's anchor")
    ax.set_ylim(-1, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("cross-stage alignment during training")


def plot_alignment_curves(anchor_sets: dict[str, dict]) -> plt.Figure:
    """Mean over classes of cos(a_i^n, a_I^n) against the training step, one panel per model,
    one line per lower stage."""
    names = list(anchor_sets)
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        num_stages = anchor_sets[name]["anchors"].shape[1]
        _alignment_panel(ax, {name: anchor_sets[name]}, range(num_stages - 1))
        ax.set_title(f"{name}: alignment with the last stage")
    fig.tight_layout()
    return fig


def plot_trajectories(anchor_sets: dict[str, dict], stage: int) -> plt.Figure:
    """Each model's class anchors of `stage` (and of the last stage) moving during training:
    PCA of all their snapshots, one line per class from the first epoch to the last (●/□)."""
    names = list(anchor_sets)
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        _trajectory_panel(ax, anchor_sets[name], stage, None, name)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def anchor_explorer(
    anchor_sets: dict[str, dict], epoch: int | None = None, stage: int = 0
) -> Explorer:
    """Anchors across training: controls `epoch` (IntSlider, 1-based: snapshot epoch-1) and
    `stage` (Dropdown, 0-based value, 1-based label); the figure is `plot_anchor_epoch`.
    `result`: "similarity" and "alignment" (name -> [C,C] and [C] tensors), "step", "epoch",
    "stage". `anchor_sets`: name -> load_reference(...)["anchors"]."""
    first = next(iter(anchor_sets.values()))
    num_epochs, num_stages = first["anchors"].shape[:2]
    for name, a in anchor_sets.items():
        if a["anchors"].shape[:2] != (num_epochs, num_stages):
            raise ValueError(
                f"{name} has {tuple(a['anchors'].shape[:2])} (epochs, stages) snapshots, "
                f"expected {(num_epochs, num_stages)}"
            )
    controls = {
        "epoch": widgets.IntSlider(
            value=num_epochs if epoch is None else epoch,
            min=1,
            max=num_epochs,
            description="epoch",
            continuous_update=False,
        ),
        "stage": _dropdown([(f"stage {s + 1}", s) for s in range(num_stages)], stage, "stage"),
    }

    def draw(epoch: int, stage: int):
        e = epoch - 1
        sim = {
            n: anchor_similarity(a["anchors"][e, stage], a["present"][e, stage])
            for n, a in anchor_sets.items()
        }
        align = {
            n: stage_alignment(a["anchors"], a["present"])[e, stage] for n, a in anchor_sets.items()
        }
        fig = plot_anchor_epoch(anchor_sets, e, stage)
        result = {
            "similarity": sim,
            "alignment": align,
            "step": _steps(first)[e],
            "epoch": epoch,
            "stage": stage,
        }
        return result, fig

    return Explorer(draw, controls)


# --------------------------------------------------------------------------- atlas (notebook 06)

METHODS = ("t-SNE", "UMAP")


def stratified_sample(
    labels: torch.Tensor | np.ndarray,
    max_points: int,
    seed: int = 0,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """Indices (sorted) of at most `max_points` entries of flat `labels`, split as evenly as the
    classes allow: classes smaller than their share keep every point, the rest share what is
    left equally; drawn with numpy's generator seeded by `seed`. Ignore entries are never drawn."""
    lab = np.asarray(labels).reshape(-1)
    classes, counts = np.unique(lab[lab != ignore_index], return_counts=True)
    rng = np.random.default_rng(seed)
    left, out = max_points, []
    for j, i in enumerate(np.argsort(counts, kind="stable")):
        take = min(int(counts[i]), left // (len(classes) - j))
        idx = np.flatnonzero(lab == classes[i])
        out.append(idx if take == len(idx) else rng.choice(idx, take, replace=False))
        left -= take
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


def project_points(x: np.ndarray, method: str, seed: int = 0, iterations: int | None = None):
    """2-D projection of points x [n,D]: "t-SNE" (sklearn, PCA init, perplexity min(30, (n-1)/3),
    `iterations` optimisation steps, default 1000, at least 250) or "UMAP" (umap-learn, 15
    neighbours, `iterations` epochs, default umap's). Fixed `seed`. Returns float32 [n,2]."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) < 4:
        raise ValueError(f"need at least 4 points to project, got {len(x)}")
    if method == "t-SNE":
        from sklearn.manifold import TSNE

        tsne = TSNE(
            2,
            perplexity=min(30.0, (len(x) - 1) / 3),
            init="pca",
            random_state=seed,
            max_iter=max(250, iterations or 1000),
        )
        return tsne.fit_transform(x).astype(np.float32)
    if method == "UMAP":
        _quiet_numba_threads()
        with warnings.catch_warnings():  # "n_jobs overridden by random_state" and numba notes
            warnings.simplefilter("ignore")
            import umap

            reducer = umap.UMAP(
                n_neighbors=min(15, len(x) - 1), random_state=seed, n_epochs=iterations
            )
            return reducer.fit_transform(x).astype(np.float32)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _quiet_numba_threads() -> None:
    """Use numba's "workqueue" threading layer unless NUMBA_THREADING_LAYER says otherwise: the
    default OpenMP layer leaves worker threads spinning after UMAP, which made a later t-SNE
    (sklearn's own OpenMP) 3x slower on a 2-core machine. Only acts before numba's first
    parallel run."""
    if "NUMBA_THREADING_LAYER" not in os.environ:
        import numba

        numba.config.THREADING_LAYER = "workqueue"


@torch.no_grad()
def nearest_anchor_accuracy(
    emb: torch.Tensor, labels: torch.Tensor, num_classes: int = NUM_CLASSES
) -> float:
    """Percent of labelled pixels whose embedding (emb [B,D,H,W], labels [B,H,W]) is closer in
    cosine to its own class anchor (`class_anchors` of the same batch) than to any other
    present class's: how cleanly the classes separate, with no projection involved."""
    anchors, present = class_anchors(emb.float(), labels, num_classes, distributed=False)
    z = F.normalize(emb.float(), dim=1)
    cos = torch.einsum("bdhw,cd->bchw", z, anchors)
    cos[:, ~present] = -math.inf
    valid = labels != IGNORE_INDEX
    return 100.0 * float((cos.argmax(1) == labels)[valid].float().mean())


def separation_table(refs: dict[str, dict], num_classes: int = NUM_CLASSES) -> list[dict]:
    """`nearest_anchor_accuracy` of each reference run's probe embeddings, one row per stage
    with one column per run (refs: name -> load_reference(...))."""
    names = list(refs)
    num_stages = len(refs[names[0]]["probe"]["stages"])
    rows = []
    for s in range(num_stages):
        row: dict = {"stage": s + 1}
        for name in names:
            st = refs[name]["probe"]["stages"][s]
            row[name] = nearest_anchor_accuracy(st["embeddings"], st["labels"], num_classes)
        rows.append(row)
    return rows


class Atlas:
    """Per-stage pixel embeddings of the probe batch of several reference runs, subsampled
    (`stratified_sample`, same pixels for runs with the same labels) and projected to 2-D by
    t-SNE or UMAP once: `projection(model, stage, method)` computes on the first call and then
    reads `cache`, a dict keyed by (model, stage, method); `misses` counts computations and
    `seconds` records their cost.

    refs: name -> load_reference(...). space: "embeddings" (the projection heads' output, what
    the PA loss shapes) or "features" (the encoder's stage features, run on the probe images).
    iterations: t-SNE steps / UMAP epochs (None: the libraries' defaults).
    project: replaces `project_points` (same signature), e.g. in tests.
    """

    def __init__(
        self,
        refs: dict[str, dict],
        max_points: int = 2000,
        seed: int = 0,
        iterations: int | None = None,
        space: str = "embeddings",
        project: Callable | None = None,
    ) -> None:
        if space not in {"embeddings", "features"}:
            raise ValueError(f"space must be 'embeddings' or 'features', got {space!r}")
        self.refs, self.max_points, self.seed, self.iterations = refs, max_points, seed, iterations
        self.space = space
        self.names = list(refs)
        self.num_stages = len(refs[self.names[0]]["probe"]["stages"])
        self.project = project or project_points
        self.cache: dict[tuple[str, int, str], np.ndarray] = {}
        self.seconds: dict[tuple[str, int, str], float] = {}
        self.misses = 0
        self._points: dict[tuple[str, int], dict] = {}
        self._features: dict[str, list[torch.Tensor]] = {}

    def stage_tensor(self, model: str, stage: int) -> torch.Tensor:
        """The [N,D,h,w] tensor of `space` for one model and stage."""
        probe = self.refs[model]["probe"]
        if self.space == "embeddings":
            return probe["stages"][stage]["embeddings"].float()
        if model not in self._features:
            net = self.refs[model]["model"]
            device = next(net.parameters()).device
            with torch.no_grad():
                x = probe["images"].to(device).float() / 255.0
                self._features[model] = [f.cpu() for f in net.eval().stage_features(x)]
        return self._features[model][stage]

    def points(self, model: str, stage: int) -> dict:
        """The subsampled points of one model and stage (cached): "x" [n,D] float32, "labels",
        "pred" [n] int, "error" and "bane" [n] bool (misclassified at this stage / picked by
        BANE), "index" [n] flat pixel indices into [N,h,w]."""
        key = (model, stage)
        if key not in self._points:
            if model not in self.refs or not 0 <= stage < self.num_stages:
                raise ValueError(
                    f"unknown (model, stage) {key}: models {self.names}, stages 0..{self.num_stages - 1}"
                )
            st = self.refs[model]["probe"]["stages"][stage]
            emb = self.stage_tensor(model, stage)
            labels = st["labels"].reshape(-1)
            idx = stratified_sample(labels.numpy(), self.max_points, self.seed)
            x = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])[idx]
            pred = st["pred"].reshape(-1)[idx]
            lab = labels[idx]
            self._points[key] = {
                "x": x.numpy().astype(np.float32),
                "labels": lab.numpy(),
                "pred": pred.numpy(),
                "error": (pred != lab).numpy(),
                "bane": st["bane"].any(1).reshape(-1)[idx].numpy(),
                "index": idx,
            }
        return self._points[key]

    def projection(self, model: str, stage: int, method: str) -> np.ndarray:
        """2-D coordinates [n,2] of `points(model, stage)`; computed once, then from `cache`."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        key = (model, stage, method)
        if key not in self.cache:
            tic = time.perf_counter()
            self.cache[key] = self.project(
                self.points(model, stage)["x"], method, self.seed, self.iterations
            )
            self.seconds[key] = time.perf_counter() - tic
            self.misses += 1
        return self.cache[key]

    def precompute(
        self,
        stages: Sequence[int] | None = None,
        methods: Sequence[str] = METHODS,
        models: Sequence[str] | None = None,
    ) -> float:
        """Fill the cache for every combination given (None: all); returns the seconds spent."""
        tic = time.perf_counter()
        for m in models or self.names:
            for s in range(self.num_stages) if stages is None else stages:
                for method in methods:
                    self.projection(m, s, method)
        return time.perf_counter() - tic


def plot_atlas(
    atlas: Atlas,
    stage: int,
    method: str = "t-SNE",
    models: Sequence[str] | None = None,
    cls: int | None = None,
    highlight: str = "errors",
    size: float = 4.6,
) -> plt.Figure:
    """One scatter panel per model: `atlas.projection(model, stage, method)` coloured by class
    (`cls` set: that class coloured, the others grey). `highlight`: "errors" (black rings:
    misclassified at this stage), "BANE" (red rings: BANE's picks), "both" or "none"; the other
    points are faded."""
    if highlight not in {"errors", "BANE", "both", "none"}:
        raise ValueError(f"highlight must be errors, BANE, both or none, got {highlight!r}")
    models = list(models or atlas.names)
    fig, axes = plt.subplots(
        1, len(models), figsize=(size * len(models) + 1.2, size), squeeze=False
    )
    for ax, model in zip(axes[0], models, strict=True):
        xy = atlas.projection(model, stage, method)
        pts = atlas.points(model, stage)
        lab = pts["labels"]
        focus = np.ones(len(lab), bool) if cls is None else lab == cls
        marked = {
            "errors": [("misclassified", pts["error"], "k")],
            "BANE": [("BANE negatives", pts["bane"], "red")],
            "both": [("misclassified", pts["error"], "k"), ("BANE negatives", pts["bane"], "red")],
            "none": [],
        }[highlight]
        if cls is not None:
            ax.scatter(*xy[~focus].T, s=4, color="0.85", lw=0)
        ax.scatter(*xy[focus].T, s=5, c=PALETTE[lab[focus]], lw=0, alpha=0.45 if marked else 1)
        handles = []
        for label, flag, edge in marked:
            m = focus & flag
            ax.scatter(*xy[m].T, s=8, c=PALETTE[lab[m]], lw=0)
            ax.scatter(*xy[m].T, s=30, facecolors="none", edgecolors=edge, lw=0.8)
            handles.append(
                Line2D([], [], ls="", marker="o", mfc="w", mec=edge, label=f"{label} ({m.sum()})")
            )
        if handles:
            ax.add_artist(ax.legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.8))
        ax.set_xticks([])
        ax.set_yticks([])
        what = "all classes" if cls is None else class_name(cls)
        ax.set_title(f"{model}: stage {stage + 1}, {method}, {len(lab)} px, {what}", fontsize=9)
    class_legend(axes[0, -1])
    fig.tight_layout()
    return fig


def atlas_explorer(
    atlas: Atlas,
    stage: int | None = None,
    method: str = "t-SNE",
    model: str = "both",
    cls: int | None = None,
    highlight: str = "errors",
) -> Explorer:
    """The embedding atlas: controls `stage` (Dropdown), `method` (ToggleButtons t-SNE/UMAP),
    `model` (Dropdown: "both" side by side, or one name), `cls` (Dropdown: all or one class) and
    `highlight` (Dropdown: errors, BANE, both, none); the figure is `plot_atlas`. Projections
    come from `atlas`'s cache, so only a new (model, stage, method) computes. `result`:
    "coords" (model -> [n,2]), "misses" (atlas.misses after the draw) and the control values."""
    stage = atlas.num_stages - 1 if stage is None else stage
    controls = {
        "stage": _dropdown(
            [(f"stage {s + 1}", s) for s in range(atlas.num_stages)], stage, "stage"
        ),
        "method": widgets.ToggleButtons(options=list(METHODS), value=method, description="method"),
        "model": _dropdown(["both", *atlas.names], model, "model"),
        "cls": _dropdown(
            [("all", None), *((class_name(i), i) for i in range(NUM_CLASSES))], cls, "class"
        ),
        "highlight": _dropdown(["errors", "BANE", "both", "none"], highlight, "highlight"),
    }

    def draw(stage: int, method: str, model: str, cls: int | None, highlight: str):
        models = atlas.names if model == "both" else [model]
        fig = plot_atlas(atlas, stage, method, models, cls, highlight)
        coords = {m: atlas.projection(m, stage, method) for m in models}
        result = {
            "coords": coords,
            "misses": atlas.misses,
            "stage": stage,
            "method": method,
            "model": model,
            "cls": cls,
            "highlight": highlight,
        }
        return result, fig

    return Explorer(draw, controls)
