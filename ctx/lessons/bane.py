"""Notebook 03: BANE step by step on one error map (`plot_bane_steps`), the distance histograms of
its picks (`plot_distance_histograms`) and `BaneExplorer`. The sets and their statistics are
computed by `ctx.bane_sets`.
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ctx.bane_sets import bane_view, stage_choices, stage_maps, worst_maps
from ctx.data import CLASS_NAMES, NUM_CLASSES
from ctx.lessons.base import Explorer, dropdown, slider
from ctx.plotting import (
    class_legend,
    class_name,
    figure,
    format_table,
    label_to_rgb,
    overlay,
    show_map,
    to_image,
)

COLOURS = {"BANE": (1.0, 0.1, 0.6), "every error": (1.0, 0.55, 0.0), "random": (0.1, 0.6, 1.0)}


def plot_bane_steps(
    scenes: dict, view: dict, image: int, cls: int, k: float, title: str = ""
) -> plt.Figure:
    """BANE on one map in two rows. Top: the image, ground truth and prediction at the map's
    resolution, the distance transform D^n. Bottom: the three negative sets as overlays on the
    image in grey (every error B^n, BANE's lowest-k picks, random pixels of class n, same count) and
    the histogram of D^n for BANE's picks versus the other errors."""
    img = scenes["images"][image]
    name = class_name(cls)
    fig, axes = figure(12, 6.2, 2, 4, layout=None)
    show_map(axes[0, 0], to_image(img), f"image {image}")
    show_map(axes[0, 1], label_to_rgb(view["labels"]), "ground truth $y$")
    show_map(axes[0, 2], label_to_rgb(view["pred"]), r"prediction $\hat{y}$")
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
    _distance_bars(axes[1, 3], view["stats"])
    axes[1, 3].set_xlabel("distance to the error's edge (px)")
    axes[1, 3].set_title("$D^n$ of the errors (last bin: ≥)")
    if n == 0:
        title += f"{': ' if title else ''}no {name} pixel is misclassified here"
    if title:
        fig.suptitle(title)
    # a fixed layout: a layout engine would double the drawing time of every widget update
    fig.subplots_adjust(left=0.02, right=0.97, bottom=0.09, top=0.88, wspace=0.45, hspace=0.28)
    return fig


def plot_distance_histograms(stats: dict[str, dict], title: str = "") -> plt.Figure:
    """One panel per name (e.g. model): `selection_stats` histograms of the distance to the
    error's edge, BANE picks versus the other errors."""
    fig, axes = figure(4.2 * len(stats), 3, 1, len(stats), layout="tight")
    for ax, (name, s) in zip(axes[0], stats.items(), strict=True):
        _distance_bars(ax, s)
        ax.set_title(
            f"{name}: mean D {s['mean_selected']:.2f} (BANE) vs {s['mean_unselected']:.2f} px"
        )
        ax.set_xlabel("distance to the error's edge (px, last bin: ≥)")
    if title:
        fig.suptitle(title)
    return fig


def _distance_bars(ax: plt.Axes, stats: dict) -> None:
    """`selection_stats` histograms of D^n on `ax`: BANE's picks beside the other errors."""
    bins = np.arange(len(stats["hist_selected"]))
    ax.bar(bins - 0.2, stats["hist_selected"].numpy(), 0.4, color=COLOURS["BANE"], label="BANE")
    ax.bar(bins + 0.2, stats["hist_unselected"].numpy(), 0.4, color="0.6", label="other errors")
    ax.set_ylabel("pixels")
    ax.legend(fontsize=8)


class BaneExplorer(Explorer):
    """The BANE explorer: controls `model` (Dropdown), `k_percent` (IntSlider, K in whole
    percent; `k` below and `result["k"]` are the fraction), `image` (IntSlider), `cls` (Dropdown of classes) and `stage` (Dropdown: the
    input resolution or a stage); the figure is `plot_bane_steps`. `scenes`: model name ->
    `ctx.bane_sets.scene_batch` output. Defaults to the digit map with the most errors
    (`worst_maps`). `result` is `bane_view`'s dict plus the control values and a `text` table of
    the three sets."""

    def __init__(
        self,
        scenes: dict[str, dict],
        k: float = 0.5,
        image: int | None = None,
        cls: int | None = None,
        stage: str | int = "input",
        model: str | None = None,
        seed: int = 0,
    ) -> None:
        self.scenes, self.seed = scenes, seed
        names = list(scenes)
        model = names[-1] if model is None else model
        first = scenes[model]
        if image is None or cls is None:  # the worst digit map, else the worst map, else (0, 0)
            maps = stage_maps(first, stage)
            worst = worst_maps(*maps, top=1, classes=range(1, NUM_CLASSES))
            worst = worst or worst_maps(*maps, top=1)
            image, cls = (worst[0][0], worst[0][1]) if worst else (0, 0)
        controls = {
            "model": dropdown(names, model, "model"),
            # K in whole percent: a FloatSlider with a "%" readout read a typed "10" as 10.0,
            # i.e. 1,000 %, clamped to 100 %
            "k_percent": slider(
                widgets.IntSlider, "K (%)", value=round(100 * k), min=5, max=100, step=5
            ),
            "image": slider(
                widgets.IntSlider, "image", value=image, min=0, max=len(first["labels"]) - 1
            ),
            "cls": dropdown([(class_name(i), i) for i in range(NUM_CLASSES)], cls, "class"),
            "stage": dropdown(stage_choices(first), stage, "resolution"),
        }
        super().__init__(self.draw, controls)

    def draw(
        self, model: str, image: int, cls: int, stage: str | int, k_percent: int
    ) -> tuple[dict, Figure]:
        k = k_percent / 100
        view = bane_view(self.scenes[model], image, cls, stage, k, seed=self.seed)
        fig = plot_bane_steps(self.scenes[model], view, image, cls, k, title=model)
        values = {"model": model, "image": image, "cls": cls, "stage": stage, "k": k}
        return {**view, **values, "text": format_table(view["rows"])}, fig
