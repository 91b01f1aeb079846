"""Notebook 01: a row-normalised confusion matrix (`plot_confusion`) and `ConfusionExplorer` (all
pixels or the boundary band; statistics in `ctx.analysis`).
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ctx.analysis import band_shares, confusion, row_shares, top_confusions
from ctx.data import CLASS_NAMES
from ctx.lessons.base import Explorer, slider
from ctx.metrics import ConfusionMatrix, boundary_band
from ctx.plotting import axes_or_new, figure, overlay


def plot_confusion(
    m: ConfusionMatrix | torch.Tensor,
    class_names: Sequence[str] = CLASS_NAMES,
    boundary: bool = False,
    ax: plt.Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Row-normalised confusion matrix (each true class's pixels sum to 100 %), with the
    percentages written in cells of at least 1 %."""
    fig, ax = axes_or_new(ax, 5.2, 4.6)
    share = 100 * row_shares(m, boundary)
    ax.imshow(share.numpy(), cmap="Blues", vmin=0, vmax=100)
    c = len(share)
    for i in range(c):
        for j in range(c):
            v = float(share[i, j])
            if v >= 1:
                ax.text(
                    j,
                    i,
                    f"{v:.0f}",
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white" if v > 60 else ("crimson" if i != j else "black"),
                )
    ax.set_xticks(range(c), class_names[:c], rotation=90, fontsize=7)
    ax.set_yticks(range(c), class_names[:c], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("boundary band" if boundary else "all pixels") + " (% of each row)")
    return fig


class ConfusionExplorer(Explorer):
    """Confusion matrix and per-class IoU of one of several predictors, over all pixels or only
    the boundary band (pixels within `width` of a label change). preds: {name: [N,H,W]}.
    Controls: `model`, `region` ("all pixels" | "boundary band"), `width`.
    `result`: {"model", "region", "width", "miou", "boundary_miou", "band_pixels", "band_errors"
    (`band_shares`), "top"}. Notebook 01.
    """

    def __init__(
        self,
        preds: dict[str, torch.Tensor],
        labels: torch.Tensor,
        images: torch.Tensor | None = None,
        num_classes: int = len(CLASS_NAMES),
        class_names: Sequence[str] = CLASS_NAMES,
    ) -> None:
        self.preds, self.labels, self.images = preds, labels, images
        self.num_classes, self.class_names = num_classes, class_names
        self._cms: dict[tuple[str, int], ConfusionMatrix] = {}
        controls = {
            "model": widgets.Dropdown(options=list(preds), description="model"),
            "region": widgets.ToggleButtons(options=["all pixels", "boundary band"]),
            "width": slider(widgets.IntSlider, "band width (px)", min=1, max=6, value=2),
        }
        super().__init__(self.draw, controls)

    def matrix(self, name: str, width: int) -> ConfusionMatrix:
        """The confusion matrix of predictor `name` with a band of `width` (computed once)."""
        if (name, width) not in self._cms:
            self._cms[(name, width)] = confusion(
                self.preds[name], self.labels, self.num_classes, width
            )
        return self._cms[(name, width)]

    def draw(self, model: str, region: str, width: int) -> tuple[dict, Figure]:
        cm = self.matrix(model, width)
        boundary = region == "boundary band"
        panels = 3 if self.images is not None else 2
        fig, (axes,) = figure(
            4.4 * panels, 4.4, 1, panels, gridspec_kw={"width_ratios": [1.15, 1, 0.9][:panels]}
        )
        s = cm.summary()
        plot_confusion(cm, self.class_names, boundary, ax=axes[0], title=f"{model}: {region}")
        iou = cm.per_class_iou().numpy() * 100
        biou = cm.per_class_iou(boundary=True).numpy() * 100
        x = np.arange(self.num_classes)
        axes[1].bar(x - 0.2, iou, 0.4, label=f"all pixels (mIoU {s['miou']:.1f})")
        axes[1].bar(x + 0.2, biou, 0.4, label=f"band (mIoU {s['boundary_miou']:.1f})")
        axes[1].set_xticks(x, self.class_names[: self.num_classes], rotation=90, fontsize=7)
        axes[1].set_ylabel("IoU (%)")
        axes[1].set_ylim(0, 100)
        axes[1].legend(fontsize=7, loc="lower right")
        axes[1].set_title("per-class IoU")
        pixels, errors = band_shares(cm)
        if self.images is not None:
            band = boundary_band(self.labels[:1], width)[0]
            overlay(axes[2], self.images[0], band, colour=(1.0, 1.0, 1.0), alpha=0.8)
            axes[2].set_title(
                f"band of width {width} (scene 0):\n{100 * pixels:.0f} % of all pixels, "
                f"{100 * errors:.0f} % of the errors",
                fontsize=9,
            )
        return {
            "model": model,
            "region": region,
            "width": width,
            "miou": s["miou"],
            "boundary_miou": s["boundary_miou"],
            "band_pixels": pixels,
            "band_errors": errors,
            "top": top_confusions(cm, 5, self.class_names, boundary),
        }, fig
