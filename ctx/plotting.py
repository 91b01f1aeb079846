"""The one figure style of the notebooks and the README's figures: class colours (`PALETTE`,
`colour`, `label_to_rgb`, `class_legend`), images (`to_image`, `overlay`, `show_map`), class
names in text (`class_name`), plain-text tables (`format_table`), and the figures several
notebooks share (`plot_scenes`: notebooks 00, 01; `plot_history`: 00, 01, 04 and the README).

Every figure, in a widget or not, is made by `figure`: a pyplot figure (so a notebook shows it
inline at the end of its cell) with a 2-D array of axes. A widget renders its figure to PNG and
closes it (`ctx.lessons.base.Explorer`). Needs matplotlib only, not the notebook extras, so
`scripts/make_figures.py` uses it too.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ctx.data import CLASS_NAMES

# background dark grey, the ten digits in tab10, ignore white
PALETTE = np.vstack([[0.15, 0.15, 0.15], plt.get_cmap("tab10")(np.arange(10))[:, :3]])


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
    out = np.ones((*lab.shape, 3))
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
    ax: plt.Axes, class_names: Sequence[str] = CLASS_NAMES, palette: np.ndarray = PALETTE, **kwargs
) -> None:
    """A legend of class colours on `ax`."""
    handles = [Patch(color=palette[i], label=n) for i, n in enumerate(class_names)]
    ax.legend(
        handles=handles,
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
) -> plt.Figure:
    """Rows: images [N,3,H,W], labels [N,H,W], and predictions [N,H,W] if given; a class legend."""
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
            if i == 0:
                ax.set_ylabel(name)
            if r == 0 and titles is not None:
                ax.set_title(titles[i], fontsize=9)
    class_legend(axes[0, -1])
    return fig


def plot_history(
    histories: dict[str, list[dict]], key: str = "miou", x: str = "step", ax: plt.Axes | None = None
) -> plt.Figure:
    """Validation `key` (percent) against `x` ("step" or "minutes") for several named runs."""
    fig, ax = axes_or_new(ax, 5, 3.2, layout="tight")
    for name, hist in histories.items():
        xs = [h["train_seconds"] / 60 if x == "minutes" else h["step"] for h in hist]
        ax.plot(xs, [h["val"][key] for h in hist], marker=".", label=name)
    ax.set_xlabel("training minutes" if x == "minutes" else "step")
    ax.set_ylabel(f"validation {key.replace('_', ' ')} (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def axes_or_new(
    ax: plt.Axes | None, width: float, height: float, layout: str | None = "constrained"
) -> tuple[Figure, plt.Axes]:
    """(`ax`'s figure, `ax`) to draw into a given panel, else a new one-panel `figure`."""
    if ax is not None:
        return ax.figure, ax
    fig, axes = figure(width, height, layout=layout)
    return fig, axes[0, 0]
