"""The numbers the notebooks plot, computed on tensors with no widget or figure involved (each is
tested on its own, on hand-made inputs):

- predictions and scores of scenes (notebooks 00, 04): `as_float_images`, `predict`,
  `scene_scores`, `per_scene_scores`, `scene_gains`;
- receptive fields (01): `receptive_field`, `stage_receptive_fields`, `input_gradient`, `extent`,
  `nearest_cell`, `centre_share`;
- confusions (01): `confusion`, `row_shares`, `top_confusions`, `band_shares`;
- the PA loss on a 2-D toy and on real embeddings (02): `toy_circle`, `negative_weights`,
  `exact_pa_loss`, `stage_anchors`, `pca_basis`;
- class anchors across stages and training (02, 05): `anchor_similarity`, `stage_alignment`,
  `anchor_summary`, `anchor_pca`.

BANE's negative sets (03) are in `ctx.bane_sets`, the embedding atlas's projections (06) in
`ctx.projection`; the widgets and figures that show all of these in `ctx.lessons`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctx.anchors import class_anchors
from ctx.data import CLASS_NAMES
from ctx.labels import IGNORE_INDEX
from ctx.losses import pixel_anchor_loss
from ctx.metrics import ConfusionMatrix

# --------------------------------------------------------------------------------- scenes (00, 04)


def as_float_images(images: torch.Tensor) -> torch.Tensor:
    """Images as float in [0,1] (uint8 divided by 255; float ones as they are)."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Argmax predictions [N,H,W] (int64, CPU) of `model` (run in eval mode on its own device)
    for images [N,3,H,W], uint8 or float in [0,1]."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [
        model(as_float_images(images[i : i + batch_size]).to(device)).logits.argmax(1).cpu()
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


def scene_gains(a: torch.Tensor, b: torch.Tensor, top: int = 5) -> dict:
    """How per-scene scores b [N] compare with a [N] (e.g. Contextrast's against CE's mIoU):
    "gain" b - a [N]; counts "better", "worse", "equal"; "median" gain; "typical", the scene
    whose gain is nearest the median (the first such); "gains" and "losses", the `top` scenes
    with the largest gains and the largest losses (largest first)."""
    gain = (b - a).double()
    median = float(gain.median())
    order = gain.argsort(descending=True, stable=True).tolist()
    return {
        "gain": gain,
        "better": int((gain > 0).sum()),
        "worse": int((gain < 0).sum()),
        "equal": int((gain == 0).sum()),
        "median": median,
        "typical": int((gain - median).abs().argmin()),
        "gains": [i for i in order[:top] if gain[i] > 0],
        "losses": [i for i in order[::-1][:top] if gain[i] < 0],
    }


# ------------------------------------------------------------------------- receptive fields (01)


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
    x = as_float_images(image.detach()).reshape(1, *image.shape[-3:]).requires_grad_(True)
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


def nearest_cell(rf: RF, pixel: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """The (row, col) cell of a stage map of `size` (h, w) whose receptive-field centre
    (start + cell·jump) is nearest to the input `pixel` (row, col), clipped to the map."""
    return tuple(
        min(max(round((p - rf.start) / rf.jump), 0), n - 1)
        for p, n in zip(pixel, size, strict=True)
    )


def centre_share(grad: torch.Tensor, rf: RF, cell: tuple[int, int]) -> float:
    """Share of the input gradient [H,W] (`input_gradient`) of `cell` that lies inside the
    central half of its analytic receptive field `rf` (a square of side rf.size / 2 around the
    centre, clipped to the image); NaN when the gradient is zero."""
    h, w = grad.shape
    half = rf.size / 4  # half the side of the central half
    r, c = (rf.start + cell[0] * rf.jump, rf.start + cell[1] * rf.jump)
    r0, r1 = int(max(0, math.ceil(r - half))), int(min(h, math.floor(r + half) + 1))
    c0, c1 = int(max(0, math.ceil(c - half))), int(min(w, math.floor(c + half) + 1))
    total = float(grad.sum())
    return float(grad[r0:r1, c0:c1].sum()) / total if total > 0 else float("nan")


# ------------------------------------------------------------------------------- confusions (01)


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


def row_shares(m: ConfusionMatrix | torch.Tensor, boundary: bool = False) -> torch.Tensor:
    """A confusion matrix (rows = truth; the boundary band's if `boundary`) divided by its row
    sums: each true class's pixels sum to 1 (rows without pixels stay 0). float64 [C,C]."""
    mat = _matrix(m, boundary)
    return mat / mat.sum(1, keepdim=True).clamp_min(1)


def top_confusions(
    m: ConfusionMatrix | torch.Tensor,
    k: int = 5,
    class_names: Sequence[str] = CLASS_NAMES,
    boundary: bool = False,
) -> list[tuple[str, str, float]]:
    """The k largest off-diagonal entries of a confusion matrix (rows = truth), as
    (true class, predicted class, share of that true class's pixels)."""
    share = row_shares(m, boundary)
    c = share.shape[0]
    share.fill_diagonal_(0)
    vals, idx = share.flatten().topk(min(k, share.numel()))
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


# ---------------------------------------------------------------------------- the PA loss (02)


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


def stage_anchors(
    embs: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], num_classes: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`class_anchors` (anchors [C,D], present [C]) of each stage's embeddings and labels."""
    return [class_anchors(e, y, num_classes) for e, y in zip(embs, labels, strict=True)]


def pca_basis(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [D], first two principal axes [D,2]) of the rows of x [n,D]: `(x - mean) @ axes`
    projects onto them."""
    mean = x.mean(0)
    _, _, v = torch.linalg.svd(x - mean, full_matrices=False)
    return mean, v[:2].T


# ------------------------------------------------------------------------------- anchors (02, 05)


def anchor_similarity(
    anchors: torch.Tensor,
    present: torch.Tensor | None = None,
    other: torch.Tensor | None = None,
    other_present: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cosine similarities between class anchors: [..., C, D] -> [..., C, C], row n against
    column m; against another set of anchors (e.g. the last stage's) when `other` [..., C, D] is
    given, else among themselves. Rows are re-normalised first (snapshots are stored in half
    precision); entries involving a class absent from `present` (rows) or `other_present`
    (columns), [..., C] each, are NaN."""
    if anchors.dim() < 2:
        raise ValueError(f"anchors must be [..., C, D], got {tuple(anchors.shape)}")
    if other is None:
        other, other_present = anchors, present
    a, b = F.normalize(anchors.float(), dim=-1), F.normalize(other.float(), dim=-1)
    sim = a @ b.transpose(-1, -2)
    if present is not None:
        sim = torch.where(present[..., :, None], sim, torch.full_like(sim, math.nan))
    if other_present is not None:
        sim = torch.where(other_present[..., None, :], sim, torch.full_like(sim, math.nan))
    return sim


def stage_alignment(anchors: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """cos(a_i^n, a_I^n): each stage's class anchor against the last stage's, per snapshot.
    anchors [E,S,C,D], present [E,S,C] -> [E,S,C] (NaN where the class is absent at either
    stage; the last stage's row is 1). Stages share the dimension D but not the head, so the
    cosine is only high if training pulled them together (CCL's fusion does)."""
    if anchors.dim() != 4 or present.shape != anchors.shape[:3]:
        raise ValueError(
            f"anchors must be [E,S,C,D] and present [E,S,C], got {tuple(anchors.shape)} and "
            f"{tuple(present.shape)}"
        )
    a = F.normalize(anchors.float(), dim=-1)
    cos = (a * a[:, -1:]).sum(-1)
    ok = present & present[:, -1:]
    return torch.where(ok, cos, torch.full_like(cos, math.nan))


def anchor_summary(anchor_sets: dict[str, dict], epoch: int = -1) -> list[dict]:
    """One row per (model, stage) at snapshot `epoch`: the mean off-diagonal anchor similarity
    (lower = classes further apart) and the mean alignment with the last stage."""
    rows = []
    for name, a in anchor_sets.items():
        anchors, present = a["anchors"][epoch], a["present"][epoch]
        align = stage_alignment(a["anchors"], a["present"])[epoch]
        for s in range(anchors.shape[0]):
            sim = anchor_similarity(anchors[s], present[s])
            off = ~torch.eye(sim.shape[0], dtype=torch.bool)
            rows.append(
                {
                    "model": name,
                    "stage": s + 1,
                    "mean class similarity": float(torch.nanmean(sim[off])),
                    "alignment with last": float(torch.nanmean(align[s])),
                }
            )
    return rows


def anchor_pca(
    anchors: torch.Tensor, present: torch.Tensor, stages: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """2-D PCA of every present anchor snapshot of `stages` together (one shared basis).
    anchors [E,S,C,D], present [E,S,C] -> (coords [E,len(stages),C,2] with NaN for absent
    classes, explained variance ratio [2]). Signs are fixed so each component's largest
    loading is positive (deterministic across runs)."""
    a = F.normalize(anchors.float(), dim=-1)[:, list(stages)].numpy().astype(np.float64)
    p = present[:, list(stages)].numpy()
    x = a[p]
    if len(x) < 2:
        coords = np.full((*a.shape[:3], 2), np.nan)
        if len(x) == 1:
            coords[p] = 0.0
        return coords, np.zeros(2)
    mean = x.mean(0)
    _, sv, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:
        comps = np.vstack([comps, np.zeros_like(comps)])
    signs = np.sign(comps[np.arange(2), np.abs(comps).argmax(1)])
    comps = comps * np.where(signs == 0, 1, signs)[:, None]
    var = sv**2
    ratio = np.zeros(2)
    ratio[: min(2, len(var))] = (var / var.sum())[:2] if var.sum() > 0 else 0
    coords = np.full((*a.shape[:3], 2), np.nan)
    coords[p] = (x - mean) @ comps.T
    return coords, ratio
