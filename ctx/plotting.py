"""The one figure style of the notebooks and the README's figures: class colours (`PALETTE`,
`colour`, `label_to_rgb`, `class_legend`), images (`to_image`, `overlay`, `show_map`), wrong
pixels (`mark_errors`, `error_handle`), class names in text (`class_name`), plain-text tables
(`format_table`), and the figures several notebooks share (`plot_scenes`: notebooks 00, 01;
`plot_history`: 00, 01, 04 and the README).

Every figure, in a widget or not, is made by `figure`: a pyplot figure (so a notebook shows it
inline at the end of its cell) with a 2-D array of axes. A widget renders its figure to PNG and
closes it (`ctx.lessons.base.Explorer`). Needs matplotlib only, not the notebook extras, so
`scripts/make_figures.py` uses it too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.artist import Artist
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ctx.data import CLASS_NAMES
from ctx.labels import IGNORE_INDEX

BACKGROUND = (0.6, 0.6, 0.6)  # a mid grey: reads as "nothing" in a map, and as a dot on white
DIGIT_SEVEN = (0.0, 0.4, 0.3)  # dark teal instead of tab10's grey, too close to the background
# class 0 (background), then the ten digits in tab10's colours; ignore pixels are white
PALETTE = np.vstack(
    [BACKGROUND, plt.get_cmap("tab10")(np.arange(7))[:, :3], DIGIT_SEVEN]
    + [plt.get_cmap("tab10")(np.arange(8, 10))[:, :3]]
)
ERROR_COLOUR = (0.0, 0.0, 0.0)  # outline and hatch of wrong pixels: no class colour is near black
IGNORE_COLOUR = (1.0, 1.0, 1.0)


def plot_style() -> None:
    """The notebooks' matplotlib settings (`ctx.lessons.base.setup` calls it)."""
    plt.rcParams.update({"figure.dpi": 90, "axes.titlesize": 10, "image.interpolation": "nearest"})


def figure(
    width: float,
    height: float,
    rows: int = 1,
    cols: int = 1,
    layout: str | None = "constrained",
    **subplots_kw,
) -> tuple[Figure, np.ndarray]:
    """A new pyplot figure of `width` x `height` inches and its axes as a [rows, cols] array.
    `layout`: "constrained", "tight", or None for a fixed layout (the caller sets it with
    `fig.subplots_adjust`; faster to redraw in a widget). `subplots_kw` go to `Figure.subplots`
    (e.g. `gridspec_kw`)."""
    fig = plt.figure(figsize=(width, height), layout=layout)
    return fig, np.asarray(fig.subplots(rows, cols, squeeze=False, **subplots_kw))


def colour(c: int) -> np.ndarray:
    """The colour of class id `c` (wrapping around the palette)."""
    return PALETTE[c % len(PALETTE)]


def label_to_rgb(labels: torch.Tensor | np.ndarray, palette: np.ndarray = PALETTE) -> np.ndarray:
    """[H,W] class ids -> [H,W,3] colours (ignore pixels white)."""
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64)
    out = np.empty((*lab.shape, 3))
    out[:] = IGNORE_COLOUR
    valid = (lab >= 0) & (lab < len(palette))
    out[valid] = palette[lab[valid]]
    return out


def to_image(image: torch.Tensor) -> np.ndarray:
    """[3,H,W] float or uint8 -> [H,W,3] float in [0,1] for imshow."""
    img = image.detach().cpu().float()
    if img.max() > 1.5:
        img = img / 255.0
    return img.permute(1, 2, 0).clamp(0, 1).numpy()


def class_legend(
    ax: plt.Axes,
    class_names: Sequence[str] = CLASS_NAMES,
    palette: np.ndarray = PALETTE,
    extra: Sequence[Artist] = (),
    **kwargs,
) -> None:
    """A legend of class colours on `ax`, followed by the `extra` handles (e.g. `error_handle()`)."""
    handles = [Patch(color=palette[i], label=n) for i, n in enumerate(class_names)]
    ax.legend(
        handles=[*handles, *extra],
        **{
            "loc": "center left",
            "bbox_to_anchor": (1.01, 0.5),
            "fontsize": 8,
            "frameon": False,
            **kwargs,
        },
    )


def overlay(
    ax: plt.Axes,
    image: torch.Tensor,
    mask: torch.Tensor | np.ndarray,
    colour=(1.0, 0.1, 0.6),
    alpha: float = 0.7,
) -> None:
    """Draw `image` [3,H,W] on `ax` with the pixels of `mask` [h,w] (any size, nearest) tinted."""
    img = to_image(image)
    m = torch.as_tensor(np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask)).float()
    if m.shape != img.shape[:2]:
        m = torch.nn.functional.interpolate(m[None, None], size=img.shape[:2], mode="nearest")[0, 0]
    m = m.numpy()[..., None] * alpha
    ax.imshow(img * (1 - m) + np.asarray(colour) * m, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def error_handle(label: str = "wrong pixels") -> Patch:
    """The legend entry of `mark_errors`' outline and hatch."""
    return Patch(facecolor="none", edgecolor=ERROR_COLOUR, hatch="////", label=label)


def error_edges(wrong: np.ndarray) -> np.ndarray:
    """The pixel edges between a wrong and a right pixel (or the image border) of a bool mask
    [H,W], as line segments [n,2,2] of (x, y) points in `imshow` coordinates (pixel (r, c) spans
    c - 0.5 .. c + 0.5 across and r - 0.5 .. r + 0.5 down)."""
    m = np.pad(np.asarray(wrong, dtype=bool), 1)
    vertical = m[1:-1, 1:] != m[1:-1, :-1]  # [H,W+1]: an edge left of column c (c = 0..W)
    horizontal = m[1:, 1:-1] != m[:-1, 1:-1]  # [H+1,W]: an edge above row r (r = 0..H)
    r, c = np.nonzero(vertical)
    v = np.stack([np.stack([c - 0.5, r - 0.5], 1), np.stack([c - 0.5, r + 0.5], 1)], 1)
    r, c = np.nonzero(horizontal)
    h = np.stack([np.stack([c - 0.5, r - 0.5], 1), np.stack([c + 0.5, r - 0.5], 1)], 1)
    return np.concatenate([v, h]).astype(float).reshape(-1, 2, 2)


def mark_errors(
    ax: plt.Axes,
    pred: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    lw: float = 0.9,
) -> Patch:
    """Outline and hatch the wrong pixels (`pred` != `labels`, ignore pixels excluded; both
    [H,W]) on the image drawn on `ax`, in `ERROR_COLOUR`, which no class has; returns the legend
    handle (`error_handle`). Notebooks 00, 01 and 04."""
    pred, labels = (
        np.asarray(t.cpu() if isinstance(t, torch.Tensor) else t) for t in (pred, labels)
    )
    wrong = (pred != labels) & (labels != IGNORE_INDEX)
    if wrong.any():
        ax.contourf(wrong.astype(float), levels=[0.5, 1.5], colors="none", hatches=["////"])
        ax.add_collection(LineCollection(error_edges(wrong), colors=[ERROR_COLOUR], linewidths=lw))
    return error_handle()


def show_map(ax: plt.Axes, rgb: np.ndarray, title: str) -> None:
    """An [H,W,3] image on `ax`, titled, without ticks."""
    ax.imshow(rgb, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def class_name(cls: int) -> str:
    """ "background" or "digit d" for a class id of the digit scenes (id d + 1 is digit d)."""
    return "background" if cls == 0 else f"digit {CLASS_NAMES[cls]}"


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

    def line(cells: list[str]) -> str:  # the first column left-aligned, the others right
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join(line(b) for b in [cols, *body])


def plot_scenes(
    images: torch.Tensor,
    labels: torch.Tensor,
    preds: torch.Tensor | None = None,
    titles: Sequence[str] | None = None,
    size: float = 2.0,
    errors: bool = False,
) -> plt.Figure:
    """Rows: images [N,3,H,W], labels [N,H,W], and predictions [N,H,W] if given; a class legend.
    `errors`: outline and hatch the predictions' wrong pixels (`mark_errors`)."""
    rows = [("image", images), ("labels", labels)] + (
        [("prediction", preds)] if preds is not None else []
    )
    n = len(images)
    fig, axes = figure(size * n + 1.2, size * len(rows), len(rows), n, layout="tight")
    for r, (name, data) in enumerate(rows):
        for i in range(n):
            ax = axes[r, i]
            ax.imshow(
                to_image(data[i]) if name == "image" else label_to_rgb(data[i]),
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if name == "prediction" and errors:
                mark_errors(ax, data[i], labels[i])
            if i == 0:
                ax.set_ylabel(name)
            if r == 0 and titles is not None:
                ax.set_title(titles[i], fontsize=9)
    class_legend(axes[0, -1], extra=[error_handle()] if errors and preds is not None else ())
    return fig


METRIC_NAMES = {"miou": "mIoU", "boundary_miou": "boundary mIoU", "pixel_acc": "pixel accuracy"}
MARKERS_UP_TO = 40  # a run with at most this many evaluations gets a marker at each
LOG_X_FROM = 5.0  # log x axis when the longest run's last x is this many times the shortest's


X_AXES = {  # plot_history's x: (axis label, history field, divisor)
    "step": ("step", "step", 1),
    "minutes": ("training minutes", "train_seconds", 60),
    "cpu_minutes": ("training CPU minutes", "train_cpu_seconds", 60),
}


def plot_history(
    histories: dict[str, list[dict]],
    key: str = "miou",
    x: str = "step",
    ax: plt.Axes | None = None,
    xscale: str | None = None,
) -> plt.Figure:
    """Validation `key` (percent) against `x` for several named runs, on a full-width figure:
    "step", "minutes" (training wall time) or "cpu_minutes" (training CPU time: unlike wall
    time, it does not count other jobs on shared cores or a paused process). A run with few
    evaluations gets a marker at each; `xscale` ("linear" or "log") defaults to log when the
    runs' lengths differ by `LOG_X_FROM` times or more, so a short run is not squeezed into the
    first pixels of a long one's axis."""
    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, got {x!r}")
    fig, ax = axes_or_new(ax, 9.5, 3.4, layout="tight")
    ends, xs_all = [], []
    field, scale = X_AXES[x][1:]
    for name, hist in histories.items():
        xs = [h[field] / scale for h in hist]
        marker = "o" if len(hist) <= MARKERS_UP_TO else None
        ax.plot(xs, [h["val"][key] for h in hist], marker=marker, ms=3.5, label=name)
        ends += xs[-1:]
        xs_all += [v for v in xs if v > 0]
    if xscale is None:
        positive = [e for e in ends if e > 0]
        long = len(positive) > 1 and max(positive) >= LOG_X_FROM * min(positive)
        xscale = "log" if long else "linear"
    unit = X_AXES[x][0]
    if xscale == "log":
        ax.set_xscale("log")
        ticks = log_ticks(min(xs_all), max(xs_all))
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        unit += " (log scale)"
    ax.set_xlabel(unit)
    ax.set_ylabel(f"validation {METRIC_NAMES.get(key, key.replace('_', ' '))} (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def log_ticks(lo: float, hi: float) -> list[float]:
    """The 1-2-5 values (..., 0.5, 1, 2, 5, 10, ...) from `lo` to `hi` (both > 0); if there is
    none, the nearest below and above: readable ticks for a log axis."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks = [m * 10.0**e for e in range(first, last + 1) for m in (1, 2, 5)]
    inside = [t for t in ticks if lo <= t <= hi]
    return inside or [t for t in ticks if t <= hi][-1:] + [t for t in ticks if t >= lo][:1]


def axes_or_new(
    ax: plt.Axes | None, width: float, height: float, layout: str | None = "constrained"
) -> tuple[Figure, plt.Axes]:
    """(`ax`'s figure, `ax`) to draw into a given panel, else a new one-panel `figure`."""
    if ax is not None:
        return ax.figure, ax
    fig, axes = figure(width, height, layout=layout)
    return fig, axes[0, 0]
