"""Notebook 01: `ReceptiveFieldExplorer`, the gradient of one stage feature with respect to the
input beside the analytic receptive field (`ctx.analysis`).
"""

from __future__ import annotations

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from ctx.analysis import (
    as_float_images,
    centre_share,
    extent,
    input_gradient,
    nearest_cell,
    stage_receptive_fields,
)
from ctx.lessons.base import Explorer, slider
from ctx.plotting import figure, to_image


class ReceptiveFieldExplorer(Explorer):
    """Pick a scene, a stage and an input pixel: the gradient of that stage's feature (at the cell
    covering the pixel) with respect to the input, the analytic receptive field (solid square)
    and the bounding box of the non-zero gradient (dashed). `model`: a `SegmentationNet` (put in
    eval mode). `result`: {"stage", "cell", "rf" (analytic px), "measured" (bbox h, w), "centre_share" (share
    of the gradient inside the central half of the analytic field)}. Notebook 01.
    """

    def __init__(self, model: nn.Module, images: torch.Tensor, stage: int = 2) -> None:
        self.model, self.images = model.eval(), images
        self.rfs = stage_receptive_fields(model.encoder)
        self.device = next(model.parameters()).device
        with torch.no_grad():
            feats = model.stage_features(as_float_images(images[:1]).to(self.device))
        self.sizes = [tuple(f.shape[-2:]) for f in feats]
        h, w = images.shape[-2:]
        controls = {
            "index": slider(widgets.IntSlider, "scene", min=0, max=len(images) - 1, value=0),
            "stage": slider(widgets.IntSlider, "stage", min=1, max=len(self.rfs), value=stage),
            "row": slider(widgets.IntSlider, "row", min=0, max=h - 1, value=h // 2),
            "col": slider(widgets.IntSlider, "col", min=0, max=w - 1, value=w // 2),
        }
        super().__init__(self.draw, controls)

    def draw(self, index: int, stage: int, row: int, col: int) -> tuple[dict, Figure]:
        rf = self.rfs[stage - 1]
        image = self.images[index]
        h, w = image.shape[-2:]
        cell = nearest_cell(rf, (row, col), self.sizes[stage - 1])
        grad = input_gradient(self.model.stage_features, image.to(self.device), stage - 1, cell)
        grad = grad.cpu()
        box = extent(grad)
        share = centre_share(grad, rf, cell)
        centre = (rf.start + cell[0] * rf.jump, rf.start + cell[1] * rf.jump)
        total = float(grad.sum())

        fig, ((ax_img, ax_grad),) = figure(8.2, 3.8, 1, 2)
        ax_img.imshow(to_image(image))
        g = (grad / grad.max()).numpy() if total > 0 else grad.numpy()
        ax_grad.imshow(g, cmap="magma", vmin=0, vmax=1)
        for ax in (ax_img, ax_grad):
            ax.add_patch(
                Rectangle(
                    (centre[1] - rf.size / 2, centre[0] - rf.size / 2),
                    rf.size,
                    rf.size,
                    fill=False,
                    color="cyan",
                    lw=1.5,
                )
            )
            if box is not None:
                ax.add_patch(
                    Rectangle(
                        (box[1] - 0.5, box[0] - 0.5),
                        box[3],
                        box[2],
                        fill=False,
                        color="white",
                        lw=1,
                        ls="--",
                    )
                )
            ax.plot([col], [row], marker="+", color="red", ms=10)
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
        ax_img.set_title(f"stage {stage}: analytic field {rf.size}×{rf.size} px (cyan)")
        measured = (box[2], box[3]) if box is not None else (0, 0)
        ax_grad.set_title(
            f"|∂ feature / ∂ input|: non-zero over {measured[0]}×{measured[1]} px (dashed)\n"
            f"{100 * share:.0f} % of it in the central half"
            if total > 0
            else "zero gradient"
        )
        return {
            "stage": stage,
            "cell": cell,
            "rf": rf.size,
            "measured": measured,
            "centre_share": share,
        }, fig
