"""Notebook 06: the embedding atlas: `plot_atlas` (projections coloured by class, errors or BANE
picks ringed) and `AtlasExplorer` (projections from `ctx.projection.Atlas`'s cache); notebooks
05 and 06: `separation_reading`, the separation tables set against segmentation, in words.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ctx.data import NUM_CLASSES
from ctx.experiments.diagnosis import stage_span
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
    points are faded. Digit pixels are drawn large and edged, background pixels small and light
    (`_class_points`)."""
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
            ax.scatter(*xy[~focus].T, s=6, color="0.85", lw=0)
        _class_points(ax, xy[focus], lab[focus], faded=bool(marked))
        handles = []
        for label, flag, edge in marked:
            m = focus & flag
            ax.scatter(*xy[m].T, s=22, c=PALETTE[lab[m]], lw=0, zorder=3)
            ax.scatter(*xy[m].T, s=60, facecolors="none", edgecolors=edge, lw=1.0, zorder=3)
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


def _class_points(ax: plt.Axes, xy: np.ndarray, lab: np.ndarray, faded: bool) -> None:
    """Pixels coloured by class: background small and light (it is most of the pixels), digits
    larger, opaque and edged in white so that each stands out."""
    bg = lab == 0
    ax.scatter(*xy[bg].T, s=6, color=PALETTE[0], lw=0, alpha=0.4 if faded else 0.6)
    ax.scatter(
        *xy[~bg].T,
        s=22,
        c=PALETTE[lab[~bg]],
        edgecolors="w",
        lw=0.3,
        alpha=0.7 if faded else 0.95,
        zorder=2,
    )


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
                options=list(METHODS), value=method, style={"button_width": "auto"}
            ),
            "model": dropdown(["both", *atlas.names], model, "model"),
            "cls": dropdown(classes, ALL_CLASSES if cls is None else cls, "class"),
            "highlight": dropdown(["errors", "BANE", "both", "none"], highlight, "highlight"),
        }
        super().__init__(self.draw, controls)
        # ToggleButtons' own description wraps above its buttons in JupyterLab: a label beside
        # them, in a box that never wraps, keeps "method" on the buttons' line
        self.method_box = widgets.HBox(
            [widgets.Label("method"), controls["method"]],
            layout=widgets.Layout(flex_flow="row nowrap", align_items="center"),
        )
        self.ui.children = tuple(
            self.method_box if c is controls["method"] else c for c in self.ui.children
        )

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


def separation_reading(
    features: list[dict],
    heads: list[dict],
    miou: dict[str, float],
    errors: dict | None = None,
    margin: float = 1.0,
) -> str:
    """The separation tables (`ctx.projection.separation_table` rows, features and heads, two
    runs: the baseline first) set against the runs' segmentation (`miou`: name -> %), in words.
    A difference within `margin` points counts as equal. `errors`: where a CE run's test errors
    sit, if known (results/regimes/diagnosis.json's runs.ce.errors: rim_share_of_errors,
    rim_error_rate, interior_error_rate, in %); named as the diagnosis's run, which need not be
    the baseline given here."""
    a, b = list(miou)
    diffs = [r[b] - r[a] for r in features]
    better = [r["stage"] for r, d in zip(features, diffs, strict=True) if d > margin]
    worse = [r["stage"] for r, d in zip(features, diffs, strict=True) if d < -margin]
    seg = miou[b] - miou[a]

    heads_text = "/".join(f"{r[a]:.0f}" for r in heads), "/".join(f"{r[b]:.0f}" for r in heads)
    text = (
        f"Encoder features (both runs train them: the fair comparison): {b} separates the classes "
        f"better than {a} at {stage_span(better)} and worse at {stage_span(worse)} "
        f"(differences {', '.join(f'{d:+.1f}' for d in diffs)} points, stages 1-{len(diffs)}; "
        f"one pair of runs on these probe scenes, so no interval: within {margin:g} point counts "
        f"as equal).\n"
        f"Projection heads: {heads_text[1]} % ({b}) against {heads_text[0]} % ({a}), stages "
        f"1-{len(heads)}; only a contrastive run trains its heads, so this row compares a trained "
        f"head with a random one, not two methods.\n"
        f"Segmentation (validation mIoU): {a} {miou[a]:.2f} %, {b} {miou[b]:.2f} % "
        f"({seg:+.2f} points)."
    )
    if len(better) > len(worse) and seg < margin:
        text += (
            f"\nThe paradox: better separated embeddings, {'worse' if seg < -margin else 'equal'} "
            "segmentation."
        )
        if errors:
            text += (
                " Where a CE run's errors sit (results/regimes/diagnosis.json: the diagnosis's CE "
                "run on the default scenes' test split, not these runs): "
                f"{errors['rim_share_of_errors']:.0f} % of them lie within 2 px of a class edge "
                f"(error rate {errors['rim_error_rate']:.1f} % there, "
                f"{errors['interior_error_rate']:.2f} % further inside). Strokes are a few "
                "pixels wide, so the rim holds misread digits as well as frayed edges: "
                "results/regimes/mechanisms.md splits the errors by what was taken for what."
            )
        else:
            text += " Where the errors sit, and why that matters: results/regimes/diagnosis.md."
    return text
