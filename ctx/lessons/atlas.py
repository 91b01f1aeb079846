"""Notebook 06: the embedding atlas: `plot_atlas` (projections coloured by class, errors or BANE
picks ringed) and `AtlasExplorer` (projections from `ctx.projection.Atlas`'s cache).
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ctx.data import NUM_CLASSES
from ctx.lessons.base import Explorer, dropdown
from ctx.plotting import PALETTE, class_legend, class_name, figure
from ctx.projection import METHODS, Atlas


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
    fig, axes = figure(size * len(models) + 1.2, size, 1, len(models), layout="tight")
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
    return fig


ALL_CLASSES = -1  # the class dropdown's value for "all classes"


class AtlasExplorer(Explorer):
    """The embedding atlas: controls `stage` (Dropdown), `method` (ToggleButtons t-SNE/UMAP),
    `model` (Dropdown: "both" side by side, or one name), `cls` (Dropdown: all or one class) and
    `highlight` (Dropdown: errors, BANE, both, none); the figure is `plot_atlas`. Projections
    come from `atlas`'s cache, so only a new (model, stage, method) computes. `result`:
    "coords" (model -> [n,2]), "misses" (atlas.misses after the draw) and the control values."""

    def __init__(
        self,
        atlas: Atlas,
        stage: int | None = None,
        method: str = "t-SNE",
        model: str = "both",
        cls: int | None = None,
        highlight: str = "errors",
    ) -> None:
        self.atlas = atlas
        stage = atlas.num_stages - 1 if stage is None else stage
        stages = [(f"stage {s + 1}", s) for s in range(atlas.num_stages)]
        # "all" needs a real value: a Dropdown whose value is None shows a blank label
        classes = [("all", ALL_CLASSES), *((class_name(i), i) for i in range(NUM_CLASSES))]
        controls = {
            "stage": dropdown(stages, stage, "stage"),
            "method": widgets.ToggleButtons(
                options=list(METHODS), value=method, description="method"
            ),
            "model": dropdown(["both", *atlas.names], model, "model"),
            "cls": dropdown(classes, ALL_CLASSES if cls is None else cls, "class"),
            "highlight": dropdown(["errors", "BANE", "both", "none"], highlight, "highlight"),
        }
        super().__init__(self.draw, controls)

    def draw(
        self, stage: int, method: str, model: str, cls: int | None, highlight: str
    ) -> tuple[dict, Figure]:
        cls = None if cls == ALL_CLASSES else cls
        models = self.atlas.names if model == "both" else [model]
        fig = plot_atlas(self.atlas, stage, method, models, cls, highlight)
        coords = {m: self.atlas.projection(m, stage, method) for m in models}
        result = {
            "coords": coords,
            "misses": self.atlas.misses,
            "stage": stage,
            "method": method,
            "model": model,
            "cls": cls,
            "highlight": highlight,
        }
        return result, fig
