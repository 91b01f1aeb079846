"""Notebook helpers: interactive explorers, live training curves, and the small computations the
tutorials plot (receptive fields, confusions, a 2-D toy for the PA loss).

Every explorer follows one pattern (STYLE.md, "Widgets"): explicit ipywidgets controls with
`continuous_update=False`, wired with `widgets.interactive_output`, shown in a notebook with
`display(w.ui, w.out)`. Each exposes its controls as `w.controls` (a dict), the numbers it
computed last as `w.result` and the figure it drew last as `w.figure` (`w.png`), so a test can
set `w.controls["tau"].value = 0.5` headlessly and check the effect. An exception in a callback
is kept in `w.error` and re-raised (a front end shows it in the output area; a failure of the
first, default draw is raised by the constructor, so a notebook cell fails rather than hiding it).

Taught in notebooks 00 (`SceneBrowser`), 01 (`ReceptiveFieldExplorer`, `ConfusionExplorer`),
02 (`toy_circle`, `TemperatureExplorer`, `FusionExplorer`) and 04 (`LiveCurves`,
`show_ablation`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

try:
    import ipywidgets as widgets
except ImportError as e:  # the library installs without the notebook extras
    raise ImportError(
        "ctx.widgets needs the notebooks extra: pip install 'ctx-contextrast[notebooks]'"
    ) from e
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Rectangle
from torch import nn

from ctx.anchors import class_anchors, fuse_anchors
from ctx.data import CLASS_NAMES
from ctx.labels import IGNORE_INDEX
from ctx.losses import pixel_anchor_loss
from ctx.metrics import ConfusionMatrix, boundary_band
from ctx.plotting import PALETTE, class_legend, label_to_rgb, overlay, to_image

# ---------------------------------------------------------------------------------------------
# Display plumbing


def in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with ipywidgets
        return False
    return get_ipython() is not None


def _colour(c: int) -> np.ndarray:
    return PALETTE[c % len(PALETTE)]


class Explorer(widgets.VBox):
    """A widget: explicit `controls` (dict name -> ipywidgets control) in `ui`, above an Output
    `out`. The base of every explorer in `ctx.widgets` and `ctx.explore`.

    `draw(**values)` returns `(result dict, Figure or None)`; it runs once when built and again on
    every control change (`widgets.interactive_output`). The figure is rendered to PNG and shown
    inside `out`; `result`, `figure`, `png` and `draws` keep the last call's outcome. An exception
    in `draw` is stored on `error` and re-raised: when the explorer is built it propagates (the
    cell fails); later, in a kernel, the Output widget shows its traceback. A `text` entry of the
    result is printed under the figure.
    Display with `display(explorer.ui, explorer.out)` (or `display(explorer)`).
    """

    def __init__(self, draw: Callable[..., tuple[dict, Figure | None]], controls: dict) -> None:
        super().__init__()
        self.controls = controls
        self.result: dict | None = None
        self.figure: Figure | None = None
        self.png: bytes | None = None
        self.error: BaseException | None = None
        self.draws = 0
        self._draw = draw
        self.ui = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        self.out = widgets.interactive_output(self._update, controls)
        self.children = (self.ui, self.out)
        if self.error is not None:  # the default draw failed inside a kernel: fail the cell
            raise self.error

    def _update(self, **values) -> None:
        try:
            result, fig = self._draw(**values)
        except Exception as e:
            self.error = e
            raise  # shown by the Output widget in a front end, propagated headlessly
        self.error = None
        self.result, self.figure, self.draws = result, fig, self.draws + 1
        if fig is not None:
            self.png = figure_png(fig)
            if in_ipython():
                from IPython.display import Image, display

                display(Image(data=self.png))
        if result.get("text"):
            print(result["text"])


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # the figures use constrained layout: no tight bbox pass
    plt.close(fig)
    return buf.getvalue()


def _slider(kind, description: str, **kw) -> widgets.Widget:
    return kind(
        description=description,
        continuous_update=False,
        style={"description_width": "initial"},
        **kw,
    )


# ---------------------------------------------------------------------------------------------
# Predictions (notebooks 00, 01, 04)


def _as_float_images(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Argmax predictions [N,H,W] (int64, CPU) of `model` (run in eval mode on its own device)
    for images [N,3,H,W], uint8 or float in [0,1]."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [
        model(_as_float_images(images[i : i + batch_size]).to(device)).logits.argmax(1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    model.train(was)
    return torch.cat(out)


def scene_scores(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """mIoU, boundary mIoU and pixel accuracy (percent) of one or more predicted scenes."""
    cm = ConfusionMatrix(num_classes)
    cm.update(pred.reshape(-1, *pred.shape[-2:]), labels.reshape(-1, *labels.shape[-2:]))
    s = cm.summary()
    return {k: s[k] for k in ("miou", "boundary_miou", "pixel_acc")}


def per_scene_scores(
    preds: torch.Tensor, labels: torch.Tensor, num_classes: int, key: str = "miou"
) -> torch.Tensor:
    """`key` of `scene_scores` for each scene of preds, labels [N,H,W] -> [N] (percent)."""
    return torch.tensor(
        [scene_scores(p, y, num_classes)[key] for p, y in zip(preds, labels, strict=True)]
    )


class SceneBrowser(Explorer):
    """Pick a scene: its image, its labels and each predictor's prediction, side by side.

    images [N,3,H,W], labels [N,H,W]; `predictors` maps a name to a model (run on the fly) or to
    precomputed predictions [N,H,W]. Controls: `index`, `errors` (tint wrong pixels).
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
            "index": _slider(widgets.IntSlider, "scene", min=0, max=len(images) - 1, value=index),
            "errors": widgets.Checkbox(value=False, description="tint wrong pixels"),
        }
        super().__init__(self.draw, controls)

    def prediction(self, name: str, i: int) -> torch.Tensor:
        p = self.predictors[name]
        if isinstance(p, torch.Tensor):
            return p[i]
        if (name, i) not in self._cache:
            self._cache[(name, i)] = predict(p, self.images[i : i + 1])[0]
        return self._cache[(name, i)]

    def draw(self, index: int, errors: bool) -> dict:
        names = list(self.predictors)
        fig = Figure(
            figsize=(self.size * (2 + len(names)) + 1.4, self.size + 0.4), layout="constrained"
        )
        axes = fig.subplots(1, 2 + len(names), squeeze=False)[0]
        axes[0].imshow(to_image(self.images[index]))
        axes[0].set_title(f"scene {index}")
        axes[1].imshow(label_to_rgb(self.labels[index]))
        axes[1].set_title("labels")
        scores = {}
        for ax, name in zip(axes[2:], names, strict=True):
            pred = self.prediction(name, index)
            scores[name] = scene_scores(pred, self.labels[index], self.num_classes)
            rgb = label_to_rgb(pred)
            if errors:
                wrong = (
                    (pred != self.labels[index]) & (self.labels[index] != IGNORE_INDEX)
                ).numpy()
                rgb[wrong] = 0.35 * rgb[wrong] + 0.65 * np.array([1.0, 0.0, 0.3])
            ax.imshow(rgb)
            ax.set_title(f"{name}\nmIoU {scores[name]['miou']:.1f} %", fontsize=9)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        class_legend(axes[-1])
        return {"index": index, "scores": scores}, fig


# ---------------------------------------------------------------------------------------------
# Receptive fields (notebook 01)


class RF(NamedTuple):
    """Receptive field of one output cell: `size` (px, square), `jump` (input px between
    neighbouring cells, i.e. the stride) and `start` (input coordinate of cell 0's centre)."""

    size: int
    jump: int
    start: float


PIXEL = RF(1, 1, 0.0)  # one input pixel: the receptive field before any layer


def _conv_params(m: nn.Module) -> tuple[int, int, int, int] | None:
    if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):

        def first(v):
            return v[0] if isinstance(v, tuple) else v

        dilation = first(getattr(m, "dilation", 1))
        return first(m.kernel_size), first(m.stride), first(m.padding), dilation
    return None


def receptive_field(layers: nn.Module | Iterable[nn.Module], rf: RF = PIXEL) -> RF:
    """Analytic receptive field of a sequential stack of convolutions and poolings.

    `layers`: a module (its Conv2d / MaxPool2d / AvgPool2d leaves are taken in definition order;
    residual shortcuts named `skip` are left out, since they run in parallel) or an iterable of
    modules. Per layer (kernel k, stride s, padding p, dilation d):
    size += (k-1)·d·jump; start += ((k-1)/2·d - p)·jump; jump *= s.
    Other layers (BatchNorm, ReLU, ...) act per pixel and do not change it.
    """
    mods = (
        [m for n, m in layers.named_modules() if "skip" not in n.split(".")]
        if isinstance(layers, nn.Module)
        else list(layers)
    )
    size, jump, start = rf
    for m in mods:
        p = _conv_params(m)
        if p is None:
            continue
        k, s, pad, d = p
        size += (k - 1) * d * jump
        start += ((k - 1) / 2 * d - pad) * jump
        jump *= s
    return RF(int(size), int(jump), float(start))


def stage_receptive_fields(encoder: nn.Module) -> list[RF]:
    """Analytic receptive field of each stage's output of an encoder with `.stages` (and an
    optional `.stem`), e.g. `model.encoder` of `ctx.model.build_model`."""
    rf = PIXEL
    if getattr(encoder, "stem", None) is not None:
        rf = receptive_field(encoder.stem, rf)
    out = []
    for stage in encoder.stages:
        rf = receptive_field(stage, rf)
        out.append(rf)
    return out


def input_gradient(
    features: Callable[[torch.Tensor], Sequence[torch.Tensor] | torch.Tensor],
    image: torch.Tensor,
    stage: int,
    cell: tuple[int, int],
) -> torch.Tensor:
    """|∂ (Σ_channels F_stage[cell]) / ∂ input|, summed over input channels: [H,W].

    `features(x [1,C,H,W])` returns the stage maps (a list, e.g. `model.stage_features`, or one
    tensor); `cell` = (row, col) in that stage's map. Where this is non-zero is the region of the
    input that can change that feature (its empirical receptive field). Put BatchNorm models in
    eval mode first: batch statistics would couple every pixel. Parameters get no gradient.
    """
    x = _as_float_images(image.detach()).reshape(1, *image.shape[-3:]).requires_grad_(True)
    with torch.enable_grad():
        feats = features(x)
        f = feats[stage] if isinstance(feats, list | tuple) else feats
        (grad,) = torch.autograd.grad(f[0, :, cell[0], cell[1]].sum(), x)
    return grad.abs().sum(1)[0]


def extent(grad: torch.Tensor, eps: float = 0.0) -> tuple[int, int, int, int] | None:
    """Bounding box (row0, col0, height, width) of the entries of a [H,W] map above `eps`,
    or None if there are none."""
    rows = torch.nonzero((grad > eps).any(1)).flatten()
    cols = torch.nonzero((grad > eps).any(0)).flatten()
    if rows.numel() == 0:
        return None
    r0, c0 = int(rows[0]), int(cols[0])
    return r0, c0, int(rows[-1]) - r0 + 1, int(cols[-1]) - c0 + 1


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
            feats = model.stage_features(_as_float_images(images[:1]).to(self.device))
        self.sizes = [tuple(f.shape[-2:]) for f in feats]
        h, w = images.shape[-2:]
        controls = {
            "index": _slider(widgets.IntSlider, "scene", min=0, max=len(images) - 1, value=0),
            "stage": _slider(widgets.IntSlider, "stage", min=1, max=len(self.rfs), value=stage),
            "row": _slider(widgets.IntSlider, "row", min=0, max=h - 1, value=h // 2),
            "col": _slider(widgets.IntSlider, "col", min=0, max=w - 1, value=w // 2),
        }
        super().__init__(self.draw, controls)

    def draw(self, index: int, stage: int, row: int, col: int) -> dict:
        rf = self.rfs[stage - 1]
        image = self.images[index]
        h, w = image.shape[-2:]
        # the cell whose centre (start + cell·jump) is nearest to the chosen pixel
        cell = tuple(
            min(max(round((p - rf.start) / rf.jump), 0), n - 1)
            for p, n in zip((row, col), self.sizes[stage - 1], strict=True)
        )
        grad = input_gradient(self.model.stage_features, image.to(self.device), stage - 1, cell)
        grad = grad.cpu()
        box = extent(grad)
        centre = (rf.start + cell[0] * rf.jump, rf.start + cell[1] * rf.jump)
        half = rf.size / 4  # central half of the field's side
        r0, r1 = (
            int(max(0, math.ceil(centre[0] - half))),
            int(min(h, math.floor(centre[0] + half) + 1)),
        )
        c0, c1 = (
            int(max(0, math.ceil(centre[1] - half))),
            int(min(w, math.floor(centre[1] + half) + 1)),
        )
        total = float(grad.sum())
        share = float(grad[r0:r1, c0:c1].sum()) / total if total > 0 else float("nan")

        fig = Figure(figsize=(8.2, 3.8), layout="constrained")
        ax_img, ax_grad = fig.subplots(1, 2)
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


# ---------------------------------------------------------------------------------------------
# Confusions (notebook 01)


def confusion(
    preds: torch.Tensor, labels: torch.Tensor, num_classes: int, boundary_width: int = 2
) -> ConfusionMatrix:
    """A ConfusionMatrix filled with predictions and labels [N,H,W]."""
    cm = ConfusionMatrix(num_classes, boundary_width=boundary_width)
    cm.update(preds, labels)
    return cm


def _matrix(m: ConfusionMatrix | torch.Tensor, boundary: bool = False) -> torch.Tensor:
    if isinstance(m, ConfusionMatrix):
        return (m.boundary if boundary else m.mat).double().cpu()
    return torch.as_tensor(m).double().cpu()


def top_confusions(
    m: ConfusionMatrix | torch.Tensor,
    k: int = 5,
    class_names: Sequence[str] = CLASS_NAMES,
    boundary: bool = False,
) -> list[tuple[str, str, float]]:
    """The k largest off-diagonal entries of a confusion matrix (rows = truth), as
    (true class, predicted class, share of that true class's pixels)."""
    mat = _matrix(m, boundary)
    share = mat / mat.sum(1, keepdim=True).clamp_min(1)
    share.fill_diagonal_(0)
    vals, idx = share.flatten().topk(min(k, share.numel()))
    c = mat.shape[0]
    return [
        (class_names[int(i) // c], class_names[int(i) % c], float(v))
        for v, i in zip(vals, idx, strict=True)
        if v > 0
    ]


def band_shares(cm: ConfusionMatrix) -> tuple[float, float]:
    """(share of the labelled pixels that lie in the boundary band, share of the wrong pixels
    that do) of a filled ConfusionMatrix; the second is NaN when nothing is wrong."""
    mat, band = _matrix(cm), _matrix(cm, boundary=True)
    wrong = float(mat.sum() - mat.diag().sum())
    band_wrong = float(band.sum() - band.diag().sum())
    pixels = float(band.sum() / mat.sum().clamp_min(1))
    return pixels, band_wrong / wrong if wrong > 0 else float("nan")


def plot_confusion(
    m: ConfusionMatrix | torch.Tensor,
    class_names: Sequence[str] = CLASS_NAMES,
    boundary: bool = False,
    ax: plt.Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Row-normalised confusion matrix (each true class's pixels sum to 100 %), with the
    percentages written in cells of at least 1 %."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.2, 4.6))
    mat = _matrix(m, boundary)
    share = 100 * mat / mat.sum(1, keepdim=True).clamp_min(1)
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
            "width": _slider(widgets.IntSlider, "band width (px)", min=1, max=6, value=2),
        }
        super().__init__(self.draw, controls)

    def matrix(self, name: str, width: int) -> ConfusionMatrix:
        if (name, width) not in self._cms:
            self._cms[(name, width)] = confusion(
                self.preds[name], self.labels, self.num_classes, width
            )
        return self._cms[(name, width)]

    def draw(self, model: str, region: str, width: int) -> dict:
        cm = self.matrix(model, width)
        boundary = region == "boundary band"
        panels = 3 if self.images is not None else 2
        fig = Figure(figsize=(4.4 * panels, 4.4), layout="constrained")
        axes = fig.subplots(1, panels, gridspec_kw={"width_ratios": [1.15, 1, 0.9][:panels]})
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


# ---------------------------------------------------------------------------------------------
# The PA loss on a 2-D toy and on real embeddings (notebook 02)


def toy_circle(
    num_classes: int = 3,
    per_class: int = 4,
    spread: float = 0.35,
    rotation: float = 0.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit 2-D embeddings of a few points per class on a circle: class n around angle
    2πn/C + rotation, with Gaussian angular noise of std `spread` (radians).
    Returns (emb [1,2,1,N], labels [1,1,N]): a 1×N "image", so every ctx function applies."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(num_classes).repeat_interleave(per_class)
    angle = 2 * math.pi * y.to(torch.float64) / num_classes + rotation
    angle = angle + spread * torch.randn(len(y), generator=g, dtype=torch.float64)
    z = torch.stack([angle.cos(), angle.sin()])  # [2,N]
    return z.to(dtype)[None, :, None, :], y[None, None, :]


def negative_weights(
    emb: torch.Tensor, labels: torch.Tensor, anchor: torch.Tensor, cls: int, tau: float
) -> torch.Tensor:
    """Softmax over the negatives q of class `cls` of â·z_q/τ: how the PA loss's gradient spreads
    over them (emb [B,D,H,W], labels [B,H,W], anchor [D]) -> [Q] in the order of the pixels."""
    z = emb.permute(1, 0, 2, 3).reshape(emb.shape[1], -1)
    y = labels.reshape(-1)
    neg = (y != cls) & (y != IGNORE_INDEX)
    return torch.softmax(anchor @ z[:, neg] / tau, dim=0)


def exact_pa_loss(
    emb: torch.Tensor,
    labels: torch.Tensor,
    anchors: torch.Tensor,
    present: torch.Tensor,
    tau: float,
) -> float:
    """`pixel_anchor_loss` with caps large enough that every pixel is used (the formula exactly)."""
    n = labels.numel()
    return float(
        pixel_anchor_loss(emb, labels, anchors, present, tau=tau, max_positives=n, max_negatives=n)
    )


def _stage_anchors(embs, labels, num_classes):
    return [class_anchors(e, y, num_classes) for e, y in zip(embs, labels, strict=True)]


def _circle(ax) -> None:
    ax.add_patch(Circle((0, 0), 1, fill=False, color="0.8", lw=1))
    ax.set_xlim(-1.45, 1.45)
    ax.set_ylim(-1.45, 1.45)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_points(
    emb: torch.Tensor,
    labels: torch.Tensor,
    anchors: torch.Tensor | None = None,
    present: torch.Tensor | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
    ax: plt.Axes | None = None,
) -> Figure:
    """2-D embeddings emb [B,2,H,W] on the unit circle, coloured by labels [B,H,W], and the
    class anchors [C,2] (those `present`, default all) as arrows from the origin."""
    if emb.shape[1] != 2:
        raise ValueError(f"plot_points draws 2-D embeddings, got D={emb.shape[1]}")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(3.8, 3.8))
    z = emb.detach().permute(1, 0, 2, 3).reshape(2, -1)
    y = labels.reshape(-1)
    _circle(ax)
    ax.scatter(z[0], z[1], c=[_colour(int(c)) for c in y], s=14, alpha=0.6)
    if anchors is not None:
        shown = torch.ones(len(anchors), dtype=torch.bool) if present is None else present
        for c in torch.nonzero(shown).flatten().tolist():
            ax.annotate(
                "",
                xy=anchors[c].tolist(),
                xytext=(0, 0),
                arrowprops={"arrowstyle": "->", "color": _colour(c), "lw": 2},
            )
            ax.text(
                *(1.15 * anchors[c]).tolist(),
                class_names[c],
                ha="center",
                va="center",
                fontsize=8,
                color=_colour(c),
            )
    return fig


class TemperatureExplorer(Explorer):
    """τ of the PA loss: the loss against τ (marker at the chosen τ) and how the softmax weight
    spreads over the negatives of one anchor. 2-D embeddings are drawn on the unit circle (marker
    area ∝ weight); higher dimensions as sorted weights.

    embs, labels: lists (one per stage) of [B,D,H,W] and [B,H,W]; anchors: per-stage [C,D] or
    None (class_anchors of each stage). Controls: `tau`, `cls`, and `stage` when several.
    `result`: {"tau", "cls", "stage", "loss", "weights", "effective_negatives"}. Notebook 02.
    """

    TAUS = np.logspace(-2, 0, 25)

    def __init__(
        self,
        embs: Sequence[torch.Tensor],
        labels: Sequence[torch.Tensor],
        anchors: Sequence[torch.Tensor] | None = None,
        num_classes: int = len(CLASS_NAMES),
        class_names: Sequence[str] = CLASS_NAMES,
        tau: float = 0.1,
    ) -> None:
        self.embs, self.labels = [e.float() for e in embs], list(labels)
        base = _stage_anchors(self.embs, self.labels, num_classes)
        self.anchors = [a for a, _ in base] if anchors is None else [a.float() for a in anchors]
        self.present = [p for _, p in base]
        self.class_names = class_names
        self._curves: dict[int, np.ndarray] = {}
        present = torch.stack(self.present).any(0)
        options = [(class_names[c], c) for c in range(num_classes) if present[c]]
        controls = {
            "tau": _slider(
                widgets.FloatLogSlider,
                "τ",
                value=tau,
                base=10,
                min=-2,
                max=0,
                step=0.05,
                readout_format=".3f",
            ),
            "cls": widgets.Dropdown(options=options, value=options[-1][1], description="anchor"),
        }
        if len(self.embs) > 1:
            controls["stage"] = _slider(
                widgets.IntSlider, "stage", min=1, max=len(self.embs), value=len(self.embs)
            )
        super().__init__(self.draw, controls)

    def loss(self, stage: int, tau: float) -> float:
        return exact_pa_loss(
            self.embs[stage], self.labels[stage], self.anchors[stage], self.present[stage], tau
        )

    def curve(self, stage: int) -> np.ndarray:
        if stage not in self._curves:
            self._curves[stage] = np.array([self.loss(stage, t) for t in self.TAUS])
        return self._curves[stage]

    def draw(self, tau: float, cls: int, stage: int | None = None) -> dict:
        s = (len(self.embs) if stage is None else stage) - 1
        emb, lab, anchor = self.embs[s], self.labels[s], self.anchors[s][cls]
        loss = self.loss(s, tau)
        w = negative_weights(emb, lab, anchor, cls, tau)
        eff = float(1 / (w**2).sum()) if w.numel() else 0.0
        fig = Figure(figsize=(9, 3.8), layout="constrained")
        ax_l, ax_w = fig.subplots(1, 2)
        ax_l.semilogx(self.TAUS, self.curve(s), color="0.3")
        ax_l.plot([tau], [loss], "o", color="crimson")
        ax_l.set_xlabel("τ")
        ax_l.set_ylabel("PA loss")
        ax_l.set_title(f"stage {s + 1}: loss {loss:.3f} at τ = {tau:.3f}")
        ax_l.grid(alpha=0.3)
        name = self.class_names[cls]
        if emb.shape[1] == 2:
            only = torch.zeros(len(self.anchors[s]), dtype=torch.bool)
            only[cls] = True
            plot_points(emb, lab, self.anchors[s], only, self.class_names, ax=ax_w)
            z = emb.permute(1, 0, 2, 3).reshape(2, -1)
            y = lab.reshape(-1)
            neg = (y != cls) & (y != IGNORE_INDEX)
            ax_w.scatter(
                z[0, neg], z[1, neg], s=20 + 600 * w.numpy(), facecolors="none", edgecolors="k"
            )
            ax_w.set_title(f"anchor '{name}': ring area ∝ weight of each negative")
        else:
            ax_w.semilogy(np.arange(1, w.numel() + 1), w.sort(descending=True).values.numpy())
            ax_w.set_xscale("log")
            ax_w.set_xlabel("negatives, hardest first")
            ax_w.set_ylabel("softmax weight")
            ax_w.set_title(f"anchor '{name}': {w.numel()} negatives")
            ax_w.grid(alpha=0.3)
        ax_w.text(
            0.02,
            0.02,
            f"effective negatives 1/Σw² = {eff:.1f}",
            transform=ax_w.transAxes,
            fontsize=8,
        )
        return {
            "tau": tau,
            "cls": cls,
            "stage": s + 1,
            "loss": loss,
            "weights": w,
            "effective_negatives": eff,
        }, fig


def _pca_basis(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(0)
    _, _, v = torch.linalg.svd(x - mean, full_matrices=False)
    return mean, v[:2].T


class FusionExplorer(Explorer):
    """Anchor fusion â = normalise(w_l·a_low + w_h·a_last), w_l = 1 − w_h: the low-stage anchors
    (circles), the last stage's (crosses) and the fused ones (stars, arrows from the low anchor),
    and the low stage's PA loss with fused anchors against w_h. 2-D embeddings are drawn as they
    are; higher dimensions are projected on the anchors' first two principal axes.

    embs, labels: lists (one per stage, last = the high stage) of [B,D,H,W] and [B,H,W].
    Controls: `w_h`, and `stage` (the low stage) when there are more than two.
    `result`: {"w_l", "w_h", "stage", "fused", "loss", "cos_to_low"}. Notebook 02.
    """

    WEIGHTS = np.linspace(0, 1, 21)

    def __init__(
        self,
        embs: Sequence[torch.Tensor],
        labels: Sequence[torch.Tensor],
        num_classes: int = len(CLASS_NAMES),
        class_names: Sequence[str] = CLASS_NAMES,
        tau: float = 0.1,
        w_h: float = 0.7,
    ) -> None:
        if len(embs) < 2:
            raise ValueError("fusion needs at least two stages (a low one and the last)")
        self.embs, self.labels = [e.float() for e in embs], list(labels)
        self.base = _stage_anchors(self.embs, self.labels, num_classes)
        self.class_names, self.tau = class_names, tau
        self._curves: dict[int, np.ndarray] = {}
        controls = {
            "w_h": _slider(
                widgets.FloatSlider, "w_h (w_l = 1 − w_h)", value=w_h, min=0, max=1, step=0.05
            )
        }
        if len(embs) > 2:
            controls["stage"] = _slider(
                widgets.IntSlider, "low stage", min=1, max=len(embs) - 1, value=1
            )
        super().__init__(self.draw, controls)

    def fused(self, stage: int, w_h: float) -> torch.Tensor:
        (low, pl), (high, ph) = self.base[stage], self.base[-1]
        return fuse_anchors(low, high, pl, ph, w_l=1.0 - w_h, w_h=w_h)

    def loss(self, stage: int, w_h: float) -> float:
        return exact_pa_loss(
            self.embs[stage],
            self.labels[stage],
            self.fused(stage, w_h),
            self.base[stage][1],
            self.tau,
        )

    def curve(self, stage: int) -> np.ndarray:
        if stage not in self._curves:
            self._curves[stage] = np.array([self.loss(stage, w) for w in self.WEIGHTS])
        return self._curves[stage]

    def draw(self, w_h: float, stage: int | None = None) -> dict:
        s = 0 if stage is None else stage - 1
        (low, pl), (high, ph) = self.base[s], self.base[-1]
        fused = self.fused(s, w_h)
        loss = self.loss(s, w_h)
        both = pl & ph
        cos = float((fused[both] * low[both]).sum(1).mean()) if both.any() else float("nan")

        fig = Figure(figsize=(9, 4), layout="constrained")
        ax_p, ax_l = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
        d = low.shape[1]
        if d == 2:

            def proj(x):
                return x

            plot_points(self.embs[s], self.labels[s], ax=ax_p)
        else:
            mean, basis = _pca_basis(torch.cat([low[pl], high[ph]]))

            def proj(x):
                return (x - mean) @ basis

            ax_p.set_aspect("equal", adjustable="datalim")
            ax_p.set_xlabel("PC 1 of the anchors")
            ax_p.set_ylabel("PC 2")
        pl_, ph_, pf = proj(low), proj(high), proj(fused)
        for c in torch.nonzero(pl | ph).flatten().tolist():
            col = _colour(c)
            if pl[c]:
                ax_p.scatter(*pl_[c], marker="o", s=50, facecolors="none", edgecolors=[col], lw=1.5)
            if ph[c]:
                ax_p.scatter(*ph_[c], marker="x", s=50, color=[col])
            if both[c]:
                ax_p.scatter(*pf[c], marker="*", s=120, color=[col], edgecolors="k", lw=0.5)
                ax_p.annotate(
                    "",
                    xy=pf[c].tolist(),
                    xytext=pl_[c].tolist(),
                    arrowprops={"arrowstyle": "->", "color": col, "lw": 1},
                )
        ax_p.set_title(f"stage {s + 1} anchors (o), last stage (x), fused (*)")
        ax_l.plot(self.WEIGHTS, self.curve(s), color="0.3")
        ax_l.plot([w_h], [loss], "o", color="crimson")
        ax_l.set_xlabel("w_h")
        ax_l.set_ylabel(f"stage {s + 1} PA loss (τ = {self.tau:g})")
        ax_l.set_title(f"w_l = {1 - w_h:.2f}, w_h = {w_h:.2f}: loss {loss:.3f}")
        ax_l.grid(alpha=0.3)
        return {
            "w_l": 1.0 - w_h,
            "w_h": w_h,
            "stage": s + 1,
            "fused": fused,
            "loss": loss,
            "cos_to_low": cos,
        }, fig


def plot_anchor_similarity(
    anchors: Sequence[torch.Tensor],
    present: Sequence[torch.Tensor],
    class_names: Sequence[str] = CLASS_NAMES,
) -> Figure:
    """Cosine similarity between each stage's anchors (rows) and the last stage's (columns),
    one panel per stage; classes absent from either are blank."""
    last, p_last = anchors[-1].float(), present[-1]
    n = len(anchors)
    fig, axes = plt.subplots(
        1, n, figsize=(2.6 * n + 0.8, 2.9), squeeze=False, layout="constrained"
    )
    for i, (a, p) in enumerate(zip(anchors, present, strict=True)):
        sim = (a.float() @ last.T).numpy().copy()
        sim[~p.numpy()] = np.nan
        sim[:, ~p_last.numpy()] = np.nan
        im = axes[0, i].imshow(sim, cmap="RdBu_r", vmin=-1, vmax=1)
        c = len(sim)
        axes[0, i].set_xticks(range(c), class_names[:c], rotation=90, fontsize=6)
        axes[0, i].set_yticks(range(c), class_names[:c] if i == 0 else [], fontsize=6)
        axes[0, i].set_title(f"stage {i + 1} · last", fontsize=9)
    fig.colorbar(im, ax=axes[0, -1], shrink=0.8, label="cosine")
    return fig


# ---------------------------------------------------------------------------------------------
# Training curves, ablation (notebook 04)


class LiveCurves:
    """Learning curves that redraw in place while `ctx.engine.loop.train` runs.

    Use one per figure: `curves = LiveCurves()`, then
    `train(cfg, on_epoch_end=curves.callback("CE"))` for each run (or `train_live`). Each call
    appends the history entry and redraws (training loss; validation mIoU solid, boundary mIoU
    dashed). Under IPython the figure is shown once and then updated through a display handle;
    headless it is only redrawn, so scripts and tests run unchanged. `histories` holds the
    entries by run name, `figure` the last figure (`png` its image), `draws` the redraw count.
    """

    def __init__(self, title: str = "", show: bool | None = None) -> None:
        self.title = title
        self.histories: dict[str, list[dict]] = {}
        self.figure: Figure | None = None
        self.png: bytes | None = None
        self.draws = 0
        self.show = in_ipython() if show is None else show
        self._handle = None

    def callback(self, name: str) -> Callable[[nn.Module, dict], None]:
        """An `on_epoch_end(model, entry)` that records the entry under `name` and redraws; its
        `replay(history)` draws a loaded or resumed run's past entries at once."""

        def on_epoch_end(model: nn.Module, entry: dict) -> None:
            self.add(name, entry)

        on_epoch_end.replay = lambda history: self.replay(name, history)
        return on_epoch_end

    def add(self, name: str, entry: dict, redraw: bool = True) -> None:
        self.histories.setdefault(name, []).append(entry)
        if redraw:
            self.redraw()

    def replay(self, name: str, history: Sequence[dict]) -> None:
        """Add a run's past entries at once (a loaded or resumed run)."""
        for e in history:
            self.add(name, e, redraw=False)
        self.redraw()

    def redraw(self) -> Figure:
        fig = Figure(figsize=(9, 3.3), layout="constrained")
        ax_loss, ax_val = fig.subplots(1, 2)
        for i, (name, hist) in enumerate(self.histories.items()):
            colour = f"C{i}"
            steps = [e["step"] for e in hist]
            ax_loss.plot(
                steps,
                [e["train"].get("loss", np.nan) for e in hist],
                ".-",
                color=colour,
                label=name,
            )
            ax_val.plot(
                steps, [e["val"]["miou"] for e in hist], ".-", color=colour, label=f"{name} mIoU"
            )
            ax_val.plot(
                steps,
                [e["val"]["boundary_miou"] for e in hist],
                ".--",
                color=colour,
                alpha=0.7,
                label=f"{name} boundary mIoU",
            )
        ax_loss.set_ylabel("training loss (epoch mean)")
        ax_val.set_ylabel("validation (%)")
        for ax in (ax_loss, ax_val):
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if self.histories:
                ax.legend(fontsize=7)
        if self.title:
            fig.suptitle(self.title)
        self.figure = fig
        self.draws += 1
        if self.show:
            from IPython.display import Image, display

            self.png = figure_png(fig)
            if self._handle is None:
                self._handle = display(Image(data=self.png), display_id=True)
            else:
                self._handle.update(Image(data=self.png))
        return fig

    def __call__(self, model: nn.Module, entry: dict) -> None:
        """Single-run use: `train(cfg, on_epoch_end=curves)`."""
        self.add(self.title or "run", entry)


def train_live(cfg, curves: LiveCurves, name: str):
    """`ctx.engine.loop.train_or_load` with live curves: a loaded run's history is drawn at once, a
    resumed one's past entries first, and each new evaluation as it comes."""
    from ctx.engine.loop import train_or_load

    return train_or_load(cfg, on_epoch_end=curves.callback(name))


def show_ablation(results_dir: str | Path | None = None) -> str | None:
    """Display results/ablation.md as Markdown and results/ablation.png if present; without them
    show how to produce them. Returns the Markdown text, or None."""
    from IPython.display import Image, Markdown, display

    if results_dir is None:
        from ctx.reference import ROOT

        results_dir = ROOT / "results"
    results_dir = Path(results_dir)
    md, png = results_dir / "ablation.md", results_dir / "ablation.png"
    if not md.exists():
        display(
            Markdown(
                f"*No ablation results yet in `{results_dir}`.* Produce them with "
                "`python -m ctx.experiments ablation` (5 variants × 3 seeds, hours on a CPU, "
                "resumable), or a quick smoke version with "
                "`python -m ctx.experiments ablation --quick --results-dir /tmp/q`."
            )
        )
        return None
    text = md.read_text()
    display(Markdown(text))
    if png.exists():
        display(Image(filename=str(png)))
    return text
