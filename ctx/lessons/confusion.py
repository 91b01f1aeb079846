"""Notebook 01: a row-normalised confusion matrix (`plot_confusion`) and `ConfusionExplorer` (all
pixels or the boundary band; statistics in `ctx.analysis`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ctx.analysis import band_shares, confusion, row_shares, top_confusions
from ctx.data import CLASS_NAMES
from ctx.lessons.base import Explorer, slider
from ctx.metrics import ConfusionMatrix, boundary_band
from ctx.plotting import axes_or_new, figure, mark_errors, overlay


def plot_confusion(
    m: ConfusionMatrix | torch.Tensor,
    class_names: Sequence[str] = CLASS_NAMES,
    boundary: bool = False,
    ax: plt.Axes | None = None,
    title: str | None = None,
    min_share: float = 1.0,
) -> Figure:
    """Row-normalised confusion matrix (each true class's pixels sum to 100 %) with a colourbar,
    the percentages written in the cells of at least `min_share` %."""
    fig, ax = axes_or_new(ax, 6.4, 5.6)
    share = 100 * row_shares(m, boundary)
    im = ax.imshow(share.numpy(), cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(im, ax=ax, shrink=0.8, label="% of the true class's pixels")
    c = len(share)
    for i, j in zip(*np.nonzero(share.numpy() >= min_share), strict=True):
        v = float(share[i, j])
        ax.text(
            j,
            i,
            f"{v:.0f}",
            ha="center",
            va="center",
            fontsize=8.5,
            color="white" if v > 55 else "black",
        )
    ax.set_xticks(range(c), class_names[:c], rotation=90, fontsize=9)
    ax.set_yticks(range(c), class_names[:c], fontsize=9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("boundary band" if boundary else "all pixels") + " (% of each row)")
    return fig


class ConfusionExplorer(Explorer):
    """Confusion matrix and per-class IoU of one of several predictors, over all pixels or only
    the boundary band (pixels within `width` of a label change), on all scenes; with `images`,
    a third panel shows the band and the predictor's wrong pixels on the scene `index` picks,
    titled with that scene's shares. preds: {name: [N,H,W]}.
    Controls: `model`, `region` ("all pixels" | "boundary band"), `width`, and `index` (with
    images). `result`: {"model", "region", "width", "miou", "boundary_miou", "band_pixels",
    "band_errors" (`band_shares` over all scenes), "top", and with images "index",
    "scene_band_pixels", "scene_band_errors" (the same shares on scene `index`), "text"}.
    Notebook 01.
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
        if images is not None:
            last = len(images) - 1
            controls["index"] = slider(widgets.IntSlider, "scene", min=0, max=last, value=0)
        super().__init__(self.draw, controls)

    def matrix(self, name: str, width: int) -> ConfusionMatrix:
        """The confusion matrix of predictor `name` with a band of `width` (computed once)."""
        if (name, width) not in self._cms:
            self._cms[(name, width)] = confusion(
                self.preds[name], self.labels, self.num_classes, width
            )
        return self._cms[(name, width)]

    def draw(self, model: str, region: str, width: int, index: int = 0) -> tuple[dict, Figure]:
        cm = self.matrix(model, width)
        boundary = region == "boundary band"
        panels = 3 if self.images is not None else 2
        fig, (axes,) = figure(
            4.6 * panels, 4.6, 1, panels, gridspec_kw={"width_ratios": [1.25, 1, 1][:panels]}
        )
        s = cm.summary()
        plot_confusion(cm, self.class_names, boundary, ax=axes[0], title=f"{model}: {region}")
        iou = cm.per_class_iou().numpy() * 100
        biou = cm.per_class_iou(boundary=True).numpy() * 100
        x = np.arange(self.num_classes)
        axes[1].bar(x - 0.2, iou, 0.4, label=f"all pixels (mIoU {s['miou']:.1f})")
        axes[1].bar(x + 0.2, biou, 0.4, label=f"band (mIoU {s['boundary_miou']:.1f})")
        axes[1].set_xticks(x, self.class_names[: self.num_classes], rotation=90, fontsize=9)
        axes[1].set_ylabel("IoU (%)")
        axes[1].set_ylim(0, 100)
        axes[1].legend(fontsize=8, loc="lower right")
        axes[1].set_title(f"per-class IoU, all {len(self.labels)} scenes")
        pixels, errors = band_shares(cm)
        result = {
            "model": model,
            "region": region,
            "width": width,
            "miou": s["miou"],
            "boundary_miou": s["boundary_miou"],
            "band_pixels": pixels,
            "band_errors": errors,
            "top": top_confusions(cm, 5, self.class_names, boundary),
            "text": f"all {len(self.labels)} scenes: {band_sentence(width, pixels, errors)}",
        }
        if self.images is not None:
            result |= self.band_panel(axes[2], model, width, index)
        return result, fig

    def band_panel(self, ax: plt.Axes, model: str, width: int, index: int) -> dict:
        """Scene `index` with its boundary band (white) and `model`'s wrong pixels marked,
        titled with the scene's own shares; returns them."""
        labels, pred = self.labels[index : index + 1], self.preds[model][index : index + 1]
        pixels, errors = band_shares(confusion(pred, labels, self.num_classes, width))
        band = boundary_band(labels, width)[0]
        overlay(ax, self.images[index], band, colour=(1.0, 1.0, 1.0), alpha=0.8)
        band_handle = Patch(facecolor="white", edgecolor="0.5", label="band")
        handles = [band_handle, mark_errors(ax, pred[0], labels[0])]
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.02),
            ncols=2,
            fontsize=8,
            frameon=False,
        )
        ax.set_title(f"scene {index}\n" + band_sentence(width, pixels, errors, "\n"), fontsize=9)
        return {"index": index, "scene_band_pixels": pixels, "scene_band_errors": errors}


def band_sentence(width: int, pixels: float, errors: float, sep: str = " ") -> str:
    """ "the band of width w holds p % of the pixels and e % of the wrong ones", from
    `band_shares`' two numbers ("... and no pixel is wrong" when the second is NaN); `sep`
    goes before "and"."""
    wrong = "no pixel is wrong" if math.isnan(errors) else f"{100 * errors:.0f} % of the wrong ones"
    return f"the band of width {width} holds {100 * pixels:.0f} % of the pixels{sep}and {wrong}"
