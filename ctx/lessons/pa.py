"""Notebook 02: the PA loss on 2-D points (`plot_points`, coloured by `toy_colours`),
`TemperatureExplorer` (τ), `FusionExplorer` (w_l, w_h), the loss with own against fused anchors
on the same sample (`fusion_effect`, `fusion_reading`) and the cosines between stages' anchors
(`plot_anchor_similarity`, `anchor_agreement`, `agreement_reading`).
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from ctx.analysis import (
    anchor_similarity,
    exact_pa_loss,
    negative_weights,
    pca_basis,
    stage_anchors,
)
from ctx.anchors import fuse_anchors
from ctx.data import CLASS_NAMES
from ctx.labels import IGNORE_INDEX
from ctx.lessons.base import Explorer, slider
from ctx.losses import pixel_anchor_loss
from ctx.plotting import axes_or_new, colour, figure


def _circle(ax: plt.Axes) -> None:
    ax.add_patch(Circle((0, 0), 1, fill=False, color="0.8", lw=1))
    ax.set_xlim(-1.45, 1.45)
    ax.set_ylim(-1.45, 1.45)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def toy_colours(num_classes: int) -> list[np.ndarray]:
    """Colours for a toy's classes 0..num_classes-1: the digits' (classes 1..num_classes), so that
    the toy's class 0 is not drawn in the background's grey."""
    return [colour(c + 1) for c in range(num_classes)]


def _palette(colours: Sequence | None, num_classes: int) -> list:
    return [colour(c) for c in range(num_classes)] if colours is None else list(colours)


def plot_points(
    emb: torch.Tensor,
    labels: torch.Tensor,
    anchors: torch.Tensor | None = None,
    present: torch.Tensor | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
    ax: plt.Axes | None = None,
    colours: Sequence | None = None,
) -> Figure:
    """2-D embeddings emb [B,2,H,W] on the unit circle, coloured by labels [B,H,W], and the
    class anchors [C,2] (those `present`, default all) as arrows from the origin. `colours`: one
    per class (default `ctx.plotting.colour` of each id; `toy_colours` for a toy)."""
    if emb.shape[1] != 2:
        raise ValueError(f"plot_points draws 2-D embeddings, got D={emb.shape[1]}")
    fig, ax = axes_or_new(ax, 3.8, 3.8)
    z = emb.detach().permute(1, 0, 2, 3).reshape(2, -1)
    y = labels.reshape(-1)
    pal = _palette(colours, len(class_names))
    _circle(ax)
    ax.scatter(z[0], z[1], c=[pal[int(c)] for c in y], s=14, alpha=0.6)
    if anchors is not None:
        shown = torch.ones(len(anchors), dtype=torch.bool) if present is None else present
        for c in torch.nonzero(shown).flatten().tolist():
            ax.annotate(
                "",
                xy=anchors[c].tolist(),
                xytext=(0, 0),
                arrowprops={"arrowstyle": "->", "color": pal[c], "lw": 2},
            )
            ax.text(
                *(1.15 * anchors[c]).tolist(),
                class_names[c],
                ha="center",
                va="center",
                fontsize=8,
                color=pal[c],
            )
    return fig


class TemperatureExplorer(Explorer):
    """τ of the PA loss: the loss against τ (marker at the chosen τ) and how the softmax weight
    spreads over the negatives of one anchor. 2-D embeddings are drawn on the unit circle (marker
    area ∝ weight); higher dimensions as sorted weights.

    embs, labels: lists (one per stage) of [B,D,H,W] and [B,H,W]; anchors: per-stage [C,D] or
    None (class_anchors of each stage); colours: as in `plot_points`. Controls: `tau`, `cls`, and
    `stage` when several.
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
        colours: Sequence | None = None,
    ) -> None:
        self.embs, self.labels = [e.float() for e in embs], list(labels)
        self.colours = colours
        base = stage_anchors(self.embs, self.labels, num_classes)
        self.anchors = [a for a, _ in base] if anchors is None else [a.float() for a in anchors]
        self.present = [p for _, p in base]
        self.class_names = class_names
        self._curves: dict[int, np.ndarray] = {}
        present = torch.stack(self.present).any(0)
        options = [(class_names[c], c) for c in range(num_classes) if present[c]]
        controls = {
            "tau": slider(
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
            controls["stage"] = slider(
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

    def draw(self, tau: float, cls: int, stage: int | None = None) -> tuple[dict, Figure]:
        s = (len(self.embs) if stage is None else stage) - 1
        emb, lab, anchor = self.embs[s], self.labels[s], self.anchors[s][cls]
        loss = self.loss(s, tau)
        w = negative_weights(emb, lab, anchor, cls, tau)
        eff = float(1 / (w**2).sum()) if w.numel() else 0.0
        fig, ((ax_l, ax_w),) = figure(9, 3.8, 1, 2)
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
            plot_points(emb, lab, self.anchors[s], only, self.class_names, ax_w, self.colours)
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


class FusionExplorer(Explorer):
    """Anchor fusion â = normalise(w_l·a_low + w_h·a_last), w_l = 1 − w_h: the low-stage anchors
    (circles), the last stage's (crosses) and the fused ones (stars, arrows from the low anchor),
    and the low stage's PA loss with fused anchors against w_h. 2-D embeddings are drawn as they
    are; higher dimensions are projected on the anchors' first two principal axes.

    embs, labels: lists (one per stage, last = the high stage) of [B,D,H,W] and [B,H,W];
    colours: as in `plot_points`. Controls: `w_h`, and `stage` (the low stage) when there are more than two.
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
        colours: Sequence | None = None,
    ) -> None:
        if len(embs) < 2:
            raise ValueError("fusion needs at least two stages (a low one and the last)")
        self.embs, self.labels = [e.float() for e in embs], list(labels)
        self.base = stage_anchors(self.embs, self.labels, num_classes)
        self.class_names, self.tau = class_names, tau
        self.colours = _palette(colours, num_classes)
        self._curves: dict[int, np.ndarray] = {}
        controls = {
            "w_h": slider(
                widgets.FloatSlider, "w_h (w_l = 1 − w_h)", value=w_h, min=0, max=1, step=0.05
            )
        }
        if len(embs) > 2:
            controls["stage"] = slider(
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

    def draw(self, w_h: float, stage: int | None = None) -> tuple[dict, Figure]:
        s = 0 if stage is None else stage - 1
        (low, pl), (high, ph) = self.base[s], self.base[-1]
        fused = self.fused(s, w_h)
        loss = self.loss(s, w_h)
        both = pl & ph
        cos = float((fused[both] * low[both]).sum(1).mean()) if both.any() else float("nan")

        fig, ((ax_p, ax_l),) = figure(9, 4, 1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
        d = low.shape[1]
        if d == 2:

            def proj(x):
                return x

            plot_points(
                self.embs[s],
                self.labels[s],
                class_names=self.class_names,
                ax=ax_p,
                colours=self.colours,
            )
        else:
            mean, basis = pca_basis(torch.cat([low[pl], high[ph]]))

            def proj(x):
                return (x - mean) @ basis

            ax_p.set_aspect("equal", adjustable="datalim")
            ax_p.set_xlabel("PC 1 of the anchors")
            ax_p.set_ylabel("PC 2")
        pl_, ph_, pf = proj(low), proj(high), proj(fused)
        for c in torch.nonzero(pl | ph).flatten().tolist():
            col = self.colours[c]
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
    """Cosine similarity between each lower stage's anchors (rows) and the last stage's
    (columns), one panel per lower stage (the last against itself would say nothing about
    agreement); classes absent from either are blank."""
    n = len(anchors) - 1
    if n < 1:
        raise ValueError("plot_anchor_similarity compares stages with the last: give two or more")
    fig, axes = figure(2.6 * n + 0.8, 2.9, 1, n)
    for i in range(n):
        sim = anchor_similarity(anchors[i], present[i], anchors[-1], present[-1]).numpy()
        im = axes[0, i].imshow(sim, cmap="RdBu_r", vmin=-1, vmax=1)
        c = len(sim)
        axes[0, i].set_xticks(range(c), class_names[:c], rotation=90, fontsize=6)
        axes[0, i].set_yticks(range(c), class_names[:c] if i == 0 else [], fontsize=6)
        axes[0, i].set_title(f"stage {i + 1} (rows) vs stage {n + 1}", fontsize=9)
    fig.colorbar(im, ax=axes[0, -1], shrink=0.8, label="cosine")
    return fig


def anchor_agreement(anchors: Sequence[torch.Tensor], present: Sequence[torch.Tensor]) -> list:
    """The numbers behind `plot_anchor_similarity`: per lower stage, the mean cosine between its
    anchor and the last stage's anchor of the same class (the diagonal) and of other classes
    (off the diagonal), over the classes present in both."""
    rows = []
    for i in range(len(anchors) - 1):
        sim = anchor_similarity(anchors[i], present[i], anchors[-1], present[-1])
        diagonal = torch.eye(len(sim), dtype=torch.bool)
        rows.append(
            {
                "stage": i + 1,
                "same class": float(sim[diagonal].nanmean()),
                "other classes": float(sim[~diagonal].nanmean()),
            }
        )
    return rows


def agreement_reading(rows: list[dict], name: str) -> str:
    """One sentence per stage on `anchor_agreement` rows: how far the diagonal stands out."""

    def verdict(gap: float) -> str:
        if gap > 0.2:
            return "a clear diagonal"
        return "a faint diagonal" if gap > 0.05 else "no diagonal"

    parts = [
        f"stage {r['stage']}: {verdict(r['same class'] - r['other classes'])} (same class "
        f"{r['same class']:.2f}, other classes {r['other classes']:.2f})"
        for r in rows
    ]
    return f"{name}, mean cosine to the last stage's anchors: " + "; ".join(parts) + "."


def fusion_effect(
    embs: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor],
    num_classes: int = len(CLASS_NAMES),
    tau: float = 0.1,
    w_l: float = 0.3,
    w_h: float = 0.7,
    samples: int = 5,
    seed: int = 0,
) -> list[dict]:
    """Each lower stage's PA loss (`pixel_anchor_loss`, its sampling caps) with its own anchors
    and with anchors fused with the last stage's, on the same sample: both calls get a generator
    with the same seed, so the same positives and negatives, and the difference is fusion's alone.
    Repeated on `samples` samples (seeds seed, seed+1, ...). One row per lower stage: mean `own`
    and `fused` loss, `fused − own` (mean) with its `min` and `max` over the samples, and
    `cos(fused, own)`, the mean cosine between a class's fused and own anchor."""
    base = stage_anchors([e.float() for e in embs], labels, num_classes)
    a_last, p_last = base[-1]
    rows = []
    for i in range(len(embs) - 1):
        (a, p), e, y = base[i], embs[i].float(), labels[i]
        fused = fuse_anchors(a, a_last, p, p_last, w_l=w_l, w_h=w_h)
        pairs = []
        for s in range(seed, seed + samples):
            pairs.append(
                [
                    float(pixel_anchor_loss(e, y, q, p, tau=tau, generator=_seeded(s)))
                    for q in (a, fused)
                ]
            )
        own, with_fused = np.array(pairs).T
        gap = with_fused - own
        both = p & p_last
        rows.append(
            {
                "stage": i + 1,
                "own": float(own.mean()),
                "fused": float(with_fused.mean()),
                "fused − own": float(gap.mean()),
                "min": float(gap.min()),
                "max": float(gap.max()),
                "cos(fused, own)": float((fused[both] * a[both]).sum(1).mean()),
            }
        )
    return rows


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fusion_reading(rows: list[dict], samples: int) -> str:
    """What `fusion_effect` rows show, stage by stage: a change of the same sign on every sample,
    or one within sampling noise (the sign changes between samples)."""
    parts = []
    for r in rows:
        if r["min"] > 0:
            says = f"fusion raises the loss by {r['fused − own']:.3f} on all {samples} samples"
        elif r["max"] < 0:
            says = f"fusion lowers the loss by {-r['fused − own']:.3f} on all {samples} samples"
        else:
            says = (
                f"the difference changes sign between samples ({r['fused − own']:+.3f} on "
                f"average, {r['min']:+.3f} to {r['max']:+.3f} over {samples} samples): within "
                "sampling noise"
            )
        parts.append(f"stage {r['stage']}: {says}")
    return "; ".join(parts) + "."
