"""Figures shared by the notebooks and the README: scenes with labels and a class legend,
learning curves, overlays. Every function returns the matplotlib Figure it drew."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch

from ctx.data import CLASS_NAMES

# background dark grey, the ten digits in tab10, ignore white
PALETTE = np.vstack([[0.15, 0.15, 0.15], plt.get_cmap("tab10")(np.arange(10))[:, :3]])


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
    fig, axes = plt.subplots(
        len(rows), n, figsize=(size * n + 1.2, size * len(rows)), squeeze=False
    )
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
    fig.tight_layout()
    return fig


def plot_history(
    histories: dict[str, list[dict]], key: str = "miou", x: str = "step", ax: plt.Axes | None = None
) -> plt.Figure:
    """Validation `key` (percent) against `x` ("step" or "minutes") for several named runs."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5, 3.2))
    for name, hist in histories.items():
        xs = [h["train_seconds"] / 60 if x == "minutes" else h["step"] for h in hist]
        ax.plot(xs, [h["val"][key] for h in hist], marker=".", label=name)
    ax.set_xlabel("training minutes" if x == "minutes" else "step")
    ax.set_ylabel(f"validation {key.replace('_', ' ')} (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


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
