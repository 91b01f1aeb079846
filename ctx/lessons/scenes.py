"""Notebooks 00 and 04: scenes with their labels and predictions (`plot_scenes`), and
`SceneBrowser`, which puts each predictor's prediction of a chosen scene beside its labels.
"""

from __future__ import annotations

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure
from torch import nn

from ctx.analysis import predict, scene_scores
from ctx.data import CLASS_NAMES
from ctx.lessons.base import Explorer, slider
from ctx.plotting import class_legend, error_handle, figure, label_to_rgb, mark_errors, to_image


class SceneBrowser(Explorer):
    """Pick a scene: its image, its labels and each predictor's prediction, side by side.

    images [N,3,H,W], labels [N,H,W]; `predictors` maps a name to a model (run on the fly) or to
    precomputed predictions [N,H,W]. Controls: `index`, `errors` (outline and hatch the wrong
    pixels, `ctx.plotting.mark_errors`, with a legend entry).
    `result`: {"index", "scores": {name: {"miou", "boundary_miou", "pixel_acc"}}}. Notebooks 00, 04.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        predictors: dict[str, nn.Module | torch.Tensor] | None = None,
        num_classes: int = len(CLASS_NAMES),
        index: int = 0,
        size: float = 2.4,
    ) -> None:
        if len(images) != len(labels) or len(images) == 0:
            raise ValueError(
                f"need as many images as labels (>0), got {len(images)}, {len(labels)}"
            )
        self.images, self.labels, self.num_classes, self.size = images, labels, num_classes, size
        self.predictors = dict(predictors or {})
        self._cache: dict[tuple[str, int], torch.Tensor] = {}
        controls = {
            "index": slider(widgets.IntSlider, "scene", min=0, max=len(images) - 1, value=index),
            "errors": widgets.Checkbox(value=False, description="mark wrong pixels"),
        }
        super().__init__(self.draw, controls)

    def prediction(self, name: str, i: int) -> torch.Tensor:
        """Predictor `name`'s prediction [H,W] of scene i (a model's is computed once)."""
        p = self.predictors[name]
        if isinstance(p, torch.Tensor):
            return p[i]
        if (name, i) not in self._cache:
            self._cache[(name, i)] = predict(p, self.images[i : i + 1])[0]
        return self._cache[(name, i)]

    def draw(self, index: int, errors: bool) -> tuple[dict, Figure]:
        names = list(self.predictors)
        fig, (axes,) = figure(
            self.size * (2 + len(names)) + 1.4, self.size + 0.4, 1, 2 + len(names)
        )
        axes[0].imshow(to_image(self.images[index]))
        axes[0].set_title(f"scene {index}")
        axes[1].imshow(label_to_rgb(self.labels[index]))
        axes[1].set_title("labels")
        scores = {}
        for ax, name in zip(axes[2:], names, strict=True):
            pred = self.prediction(name, index)
            scores[name] = scene_scores(pred, self.labels[index], self.num_classes)
            ax.imshow(label_to_rgb(pred))
            if errors:
                mark_errors(ax, pred, self.labels[index])
            ax.set_title(f"{name}\nmIoU {scores[name]['miou']:.1f} %", fontsize=9)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        class_legend(axes[-1], extra=[error_handle()] if errors else ())
        return {"index": index, "scores": scores}, fig
