"""Notebook 03: BANE step by step on one error map (`plot_bane_steps`), the distance histograms of
its picks (`plot_distance_histograms`), `BaneExplorer`, and the sentences printed beside its tables
(`*_reading`, each read from the numbers). The sets and their statistics are computed by
`ctx.bane_sets`.
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

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
    the histogram of D^n for BANE's picks versus the other errors. An empty map (no error) says
    so in its panels and title (`empty_map_message`)."""
    img = scenes["images"][image]
    name = class_name(cls)
    fig, axes = figure(12, 6.2, 2, 4, layout=None)
    show_map(axes[0, 0], to_image(img), f"image {image}")
    show_map(axes[0, 1], label_to_rgb(view["labels"]), "ground truth $y$")
    show_map(axes[0, 2], label_to_rgb(view["pred"]), r"prediction $\hat{y}$")
    class_legend(axes[0, 2], ["bg", *CLASS_NAMES[1:]], fontsize=7)
    _distance_map(fig, axes[0, 3], view, name)
    n = view["n_errors"]
    titles = {
        "every error": f"every error $B^n$: {n} px",
        "BANE": f"BANE, K={k:.0%}: {view['count']} px",
        "random": f"random {name} px, same count: {int(view['random'].sum())}",
    }
    grey = img.float().mean(0, keepdim=True).expand(3, -1, -1)  # so the masks' colours stand out
    for ax, key in zip(axes[1, :3], ("every error", "BANE", "random"), strict=True):
        overlay(ax, grey, view[key], colour=COLOURS[key], alpha=0.85)
        ax.set_title(titles[key])
    axes[1, 3].set_title("$D^n$ of the errors (last bin: ≥)")
    if n:
        _distance_bars(axes[1, 3], view["stats"])
        axes[1, 3].set_xlabel("distance to the error's edge (px)")
    else:
        _say(axes[1, 3], "no errors:\nnothing to rank")
        title += f"{': ' if title else ''}{empty_map_message(view, image, cls)}"
    if title:
        fig.suptitle(title)
    # a fixed layout: a layout engine would double the drawing time of every widget update
    fig.subplots_adjust(left=0.02, right=0.95, bottom=0.09, top=0.88, wspace=0.45, hspace=0.28)
    return fig


def empty_map_message(view: dict, image: int, cls: int) -> str:
    """Why a `bane_view` map has no error pixel: the class is absent, or every pixel is right."""
    name, n = class_name(cls), int((view["labels"] == cls).sum())
    if n == 0:
        return f"no {name} in image {image} at this resolution: no error map, BANE picks nothing"
    return (
        f"all {n} {name} px of image {image} are right: the error map is empty, BANE picks nothing"
    )


def _say(ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _distance_map(fig: plt.Figure, ax: plt.Axes, view: dict, name: str) -> None:
    """D^n on the error map (blank elsewhere), coloured from 1 px with whole-pixel ticks."""
    d = view["distance"].clone()
    d[~view["errors"] | torch.isinf(d)] = math.nan  # blank off the error map
    ax.set_title(f"distance $D^n$, n = {name}")
    if view["n_errors"] == 0 or torch.isnan(d).all():
        show_map(ax, np.ones((*d.shape, 3)), ax.get_title())
        _say(ax, "no error pixel:\n$D^n$ is empty")
        return
    top = max(2.0, math.ceil(float(d[~torch.isnan(d)].max())))
    shown = ax.imshow(d.numpy(), cmap="viridis", vmin=1, vmax=top, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    bar.locator = MaxNLocator(integer=True, nbins=4)
    bar.update_ticks()
    bar.set_label("px", fontsize=8)


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
    percent; `k` below and `result["k"]` are the fraction), `image` (IntSlider), `cls` (Dropdown
    of classes) and `stage` (Dropdown: the input resolution or a stage); the figure is
    `plot_bane_steps`. `scenes`: model name -> `ctx.bane_sets.scene_batch` output. Defaults to
    the digit map with the most errors (`worst_maps`). `result` is `bane_view`'s dict plus the
    control values and a `text`: the table of the three sets, or for an empty map
    `empty_map_message`."""

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
        text = (
            format_table(view["rows"]) if view["n_errors"] else empty_map_message(view, image, cls)
        )
        return {**view, **values, "text": text}, fig


def _by_stage(values: list[float]) -> str:
    """'a/b/c/d % at stages 1-4' for one percentage per stage."""
    return "/".join(f"{v:.0f}" for v in values) + f" % at stages 1–{len(values)}"


def _stages(numbers: list[int]) -> str:
    """'stage 2', 'stages 2 and 3', 'stages 2, 3 and 4'."""
    if len(numbers) == 1:
        return f"stage {numbers[0]}"
    return f"stages {', '.join(map(str, numbers[:-1]))} and {numbers[-1]}"


def sets_reading(rows: list[dict]) -> str:
    """What a `compare_negative_sets` table of BANE, every error and random (same count) says,
    read from its numbers."""
    r = {row["set"]: row for row in rows}
    bane, every, rand = r["BANE"], r["every error"], r["random"]
    nearer = "nearer to" if bane["D px"] < every["D px"] - 0.005 else "no nearer to"
    band = "more" if bane["band %"] > every["band %"] + 0.5 else "no more"
    return (
        f"BANE's picks lie {nearer} the edge of their mistake than the errors as a whole (D "
        f"{bane['D px']:.2f} vs {every['D px']:.2f} px) and {band} of them sit in the boundary "
        f"band ({bane['band %']:.0f} vs {every['band %']:.0f} %). The same-count random pixels "
        f"are {rand['wrong %']:.0f} % misclassified, {rand['band %']:.0f} % in the band, "
        f"{rand['edge px']:.1f} px from a class edge on average (BANE's: "
        f"{bane['edge px']:.1f} px)."
    )


def stages_reading(rows: list[dict], k: float) -> str:
    """What a `bane_by_stage` table says about one model's stages (rows without the input
    resolution): where the distance ranking has anything to rank, and how much ceil(k·n) keeps."""
    deep = [r["D>1 %"] for r in rows]
    flat = [i for i, v in enumerate(deep, 1) if v == 0]
    text = f"Errors deeper than the rim (D > 1): {_by_stage(deep)}. "
    if flat:
        text += (
            f"At {_stages(flat)} every error has D = 1: the ranking has nothing to rank, the "
            f"lowest-{k:.0%} cut is a tie broken at random, and BANE's picks are a random subset "
            "of the errors. "
        )
    rim_cut = [i for i, r in enumerate(rows, 1) if r["D>1 %"] > 0 and r["D picked"] <= 1.0]
    if rim_cut:
        text += (
            f"At {_stages(rim_cut)} BANE leaves the deeper errors out, but every pick has D = 1: "
            "the cut falls inside the tie at D = 1, so which rim pixels it keeps is random. "
        )
    ranked = [i for i, r in enumerate(rows, 1) if r["D picked"] > 1.0]
    if ranked:
        text += f"At {_stages(ranked)} the picks reach past the rim: there the ranking chooses. "
    kept = [r["picked %"] for r in rows]
    return text + (
        f"The share of the errors BANE keeps is {_by_stage(kept)}, not {k:.0%}: ceil(K·n) keeps "
        "the one pixel of a one-pixel map, and coarse maps hold few pixels."
    )


def negatives_reading(rows: list[dict], max_negatives: int = 256) -> str:
    """What a `negatives_by_stage` table says: how much of each anchor's negatives `fill` draws
    at random, where no choice is made at all, and how the negatives compare with
    `negatives="random"`."""
    text = (
        "The share of each anchor's negatives that `fill` draws at random is "
        f"{_by_stage([r['fill %'] for r in rows])}. "
    )
    every = [i for i, r in enumerate(rows, 1) if r["all taken %"] == 100]
    if every:
        text += (
            f"At {_stages(every)} every anchor takes every pixel of the other classes (a batch "
            f"holds no more than {max_negatives} of them), so BANE cannot change the negatives. "
        )
    gaps = [r["wrong % BANE"] - r["wrong % random"] for r in rows]
    same = [i for i, gap in enumerate(gaps, 1) if abs(gap) < 0.5]
    text += (
        "The share of misclassified pixels among the negatives is "
        f"{_by_stage([r['wrong % BANE'] for r in rows])} with BANE, "
        f'{_by_stage([r["wrong % random"] for r in rows])} with `negatives="random"`'
    )
    if same:
        text += f": the same (within half a point) at {_stages(same)}"
    return text + "."


def readings_reading(rows: list[dict], max_negatives: int = 256) -> str:
    """What a `readings_by_stage` table says about BANE's two readings, read from its numbers:
    where the picks go under "predicted", how many hard negatives each reading gives an anchor,
    what is left to `fill`, and where the two give the loss the same negatives."""

    def per_stage(key: str, digits: int = 0) -> str:
        return "/".join("–" if math.isnan(r[key]) else f"{r[key]:.{digits}f}" for r in rows)

    n = len(rows)
    ratios = "/".join(
        f"{r['hard/anchor others'] / r['hard/anchor predicted']:.1f}"
        if r["hard/anchor predicted"] > 0
        else "–"
        for r in rows
    )
    text = (
        f"Of BANE's picks, {per_stage('to background %')} % at stages 1–{n} are predicted as "
        'background: under "predicted" they are hard negatives of the background anchor only, '
        "and every other pick only of the anchor of the digit it was predicted as. Under "
        '"others" a pick is a hard negative of every anchor but its own class\'s, so an anchor '
        f'gets {ratios} times as many hard negatives as under "predicted" at stages 1–{n} '
        f"({per_stage('hard/anchor others', 1)} against {per_stage('hard/anchor predicted', 1)})"
    )
    capped = [i for i, r in enumerate(rows, 1) if r["hard/anchor others"] >= max_negatives]
    if capped:
        text += (
            f'; at {_stages(capped)} "others" is held at the cap: all {max_negatives} of an '
            "anchor's negatives are hard"
        )
    text += (
        f'. Under "predicted", {per_stage("no hard % predicted")} % of the anchors get no hard '
        f"negative at all, and `fill` draws {per_stage('fill % predicted')} % of the negatives "
        f'at random (under "others": {per_stage("fill % others")} %). Misclassified pixels '
        f'make up {per_stage("wrong % others")} % of the negatives under "others", '
        f'{per_stage("wrong % predicted")} % under "predicted".'
    )
    same = [i for i, r in enumerate(rows, 1) if r["all taken %"] == 100]
    if same:
        text += (
            f" At {_stages(same)} every anchor takes every pixel of the other classes under "
            "both readings, so the two give the loss the same negatives there; only which of "
            "them count as hard differs."
        )
    return text
