"""Notebook 05: class anchors during training: similarity matrices, alignment with the last stage
(and `alignment_reading`, where it ends, in words), PCA trajectories (first and last snapshot),
and `AnchorExplorer` (the numbers are `ctx.analysis`'s).
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ctx.analysis import anchor_pca, anchor_similarity, stage_alignment
from ctx.data import CLASS_NAMES
from ctx.lessons.base import Explorer, dropdown, slider
from ctx.plotting import PALETTE, figure


def _steps(anchors: dict) -> list[int]:
    s = anchors["step"]
    return [int(v) for v in (s.tolist() if isinstance(s, torch.Tensor) else s)]


def _sim_panel(ax: plt.Axes, sim: torch.Tensor, title: str) -> plt.cm.ScalarMappable:
    """A class-by-class cosine matrix on `ax` (blue -1 to red 1)."""
    im = ax.imshow(sim.numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    ticks = range(len(CLASS_NAMES))
    ax.set_xticks(ticks, ["bg", *CLASS_NAMES[1:]], fontsize=7)
    ax.set_yticks(ticks, ["bg", *CLASS_NAMES[1:]], fontsize=7)
    ax.set_title(title)
    return im


def plot_similarity_matrices(
    anchor_sets: dict[str, dict], epochs: Sequence[int], stage: int
) -> plt.Figure:
    """Class-similarity matrices (`anchor_similarity`) of `stage` (0-based): one row per model,
    one column per snapshot in `epochs` (0-based indices)."""
    names = list(anchor_sets)
    fig, axes = figure(3.3 * len(epochs) + 1, 3.1 * len(names), len(names), len(epochs))
    im = None
    for r, name in enumerate(names):
        a = anchor_sets[name]
        steps = _steps(a)
        for c, e in enumerate(epochs):
            sim = anchor_similarity(a["anchors"][e, stage], a["present"][e, stage])
            im = _sim_panel(axes[r, c], sim, f"{name}, step {steps[e]}")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="cosine")
    fig.suptitle(f"anchor cosine similarities, stage {stage + 1}")
    return fig


def plot_anchor_epoch(anchor_sets: dict[str, dict], epoch: int, stage: int) -> plt.Figure:
    """Snapshot `epoch` (0-based), stage `stage` (0-based). Top: each model's class-similarity
    matrix, then each model's per-class alignment with the last stage (bars). Bottom: each
    model's anchor trajectories (PCA of stage and last-stage snapshots, this epoch marked ★),
    then the mean alignment of every stage over training (this stage bold, this epoch marked)."""
    names = list(anchor_sets)
    fig, axes = figure(4.4 * (len(names) + 1), 8.4, 2, len(names) + 1, layout=None)
    # a fixed layout: a layout engine would double the drawing time of every widget update
    fig.subplots_adjust(left=0.065, right=0.98, bottom=0.07, top=0.9, wspace=0.3, hspace=0.32)
    steps = _steps(anchor_sets[names[0]])
    last = anchor_sets[names[0]]["anchors"].shape[1] - 1
    im = None
    for j, name in enumerate(names):
        a = anchor_sets[name]
        sim = anchor_similarity(a["anchors"][epoch, stage], a["present"][epoch, stage])
        im = _sim_panel(axes[0, j], sim, f"{name}: anchor cosines, stage {stage + 1}")
        _trajectory_panel(axes[1, j], a, stage, epoch, f"{name}: anchor trajectories")
    fig.colorbar(im, ax=axes[0, : len(names)].tolist(), fraction=0.03, pad=0.02)
    ax = axes[0, -1]
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        a = anchor_sets[name]
        al = stage_alignment(a["anchors"], a["present"])[epoch, stage].numpy()
        ax.bar(np.arange(len(al)) + (j - (len(names) - 1) / 2) * width, al, width, label=name)
    ax.set_xticks(range(len(CLASS_NAMES)), ["bg", *CLASS_NAMES[1:]], fontsize=7)
    ax.set_ylim(-1, 1.05)
    ax.axhline(0, color="k", lw=0.5)
    note = " (1 by definition)" if stage == last else ""
    ax.set_title(f"cos($a_{stage + 1}^n$, $a_{last + 1}^n$) per class{note}")
    ax.legend(fontsize=8)
    _alignment_panel(axes[1, -1], anchor_sets, range(last), marker=steps[epoch], bold=stage)
    fig.suptitle(
        f"snapshot {epoch + 1} of {len(steps)} (after step {steps[epoch]}), stage {stage + 1}"
    )
    return fig


def _trajectory_panel(
    ax: plt.Axes,
    a: dict,
    stage: int,
    epoch: int | None,
    title: str,
    highlight: Sequence[int] = (),
) -> None:
    """Each class's anchor from the first snapshot (×) to the last (● `stage`, □ last stage),
    as an arrow; the whole path only for the classes in `highlight`; ★ at snapshot `epoch`."""
    last = a["anchors"].shape[1] - 1
    stages = [stage] if stage == last else [stage, last]
    coords, ratio = anchor_pca(a["anchors"], a["present"], stages)
    for c in range(coords.shape[2]):
        for j in range(len(stages)):
            xy = coords[:, j, c]
            ok = np.isfinite(xy).all(1)
            if not ok.any():
                continue
            ends = xy[ok][[0, -1]]
            col, style = PALETTE[c], "-" if j == 0 else ":"
            if c in highlight:
                ax.plot(*xy.T, style, color=col, lw=1.6, alpha=0.9)
            else:
                ax.annotate(
                    "",
                    ends[1],
                    ends[0],
                    arrowprops={"arrowstyle": "->", "color": col, "lw": 0.9, "ls": style},
                )
            ax.plot(*ends[0], "x", color=col, ms=4, alpha=0.8)
            end = "o" if j == 0 else "s"
            ax.plot(*ends[1], end, color=col, ms=6, mfc=col if j == 0 else "none", mew=1.2)
            if epoch is not None:
                ax.plot(xy[epoch, 0], xy[epoch, 1], "*", color=col, ms=11, mec="k", mew=0.5)
            if j == 0:
                name = CLASS_NAMES[c] if c else "bg"
                ax.annotate(name, ends[1], fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"PC1 ({ratio[0]:.0%})")
    ax.set_ylabel(f"PC2 ({ratio[1]:.0%})")
    what = f"stage {stage + 1} (solid, ●)" + (", last stage (dotted, □)" if len(stages) > 1 else "")
    ax.set_title(f"{title}\nfirst snapshot × → last: {what}", fontsize=9)


def _alignment_panel(
    ax: plt.Axes,
    anchor_sets: dict[str, dict],
    stages: Sequence[int],
    marker: int | None = None,
    bold: int | None = None,
) -> None:
    styles = ["--", "-", "-.", ":"] if len(anchor_sets) > 1 else ["-"]
    for j, (name, a) in enumerate(anchor_sets.items()):
        steps = _steps(a)
        al = torch.nanmean(stage_alignment(a["anchors"], a["present"]), dim=2)  # [E,S]
        for s in stages:
            ax.plot(
                steps,
                al[:, s].numpy(),
                styles[j % len(styles)],
                marker="o" if len(steps) < 3 else ".",
                color=f"C{s}",
                lw=2.2 if s == bold else 1.2,
                alpha=1.0 if bold is None or s == bold else 0.5,
                label=f"{name}, stage {s + 1}",
            )
    if marker is not None:
        ax.axvline(marker, color="k", lw=0.8, alpha=0.5)
    ax.set_xlabel("step")
    ax.set_ylabel("mean cos with the last stage's anchor")
    ax.set_ylim(-1, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("cross-stage alignment during training")


def plot_alignment_curves(anchor_sets: dict[str, dict]) -> plt.Figure:
    """Mean over classes of cos(a_i^n, a_I^n) against the training step, one panel per model,
    one line per lower stage."""
    names = list(anchor_sets)
    fig, axes = figure(4.6 * len(names), 3.4, 1, len(names), layout="tight")
    for ax, name in zip(axes[0], names, strict=True):
        num_stages = anchor_sets[name]["anchors"].shape[1]
        _alignment_panel(ax, {name: anchor_sets[name]}, range(num_stages - 1))
        ax.set_title(f"{name}: alignment with the last stage")
    return fig


def plot_trajectories(
    anchor_sets: dict[str, dict], stage: int, highlight: Sequence[int] = ()
) -> plt.Figure:
    """Each model's class anchors of `stage` (and of the last stage) moving during training, in
    a PCA of all their snapshots: per class an arrow from the first snapshot (×) to the last
    (●/□); the full path of the classes in `highlight` (class ids)."""
    names = list(anchor_sets)
    fig, axes = figure(5 * len(names), 4.4, 1, len(names), layout="tight")
    for ax, name in zip(axes[0], names, strict=True):
        _trajectory_panel(ax, anchor_sets[name], stage, None, name, highlight)
        ax.grid(alpha=0.3)
    return fig


class AnchorExplorer(Explorer):
    """Anchors across training: controls `snapshot` (IntSlider, 1-based: one per validation of
    the run, after the step its title names) and `stage` (Dropdown, 0-based value, 1-based
    label); the figure is `plot_anchor_epoch`. `result`: "similarity" and "alignment" (name ->
    [C,C] and [C] tensors), "step", "snapshot", "stage". `anchor_sets`: name ->
    load_reference(...).anchors."""

    def __init__(
        self, anchor_sets: dict[str, dict], snapshot: int | None = None, stage: int = 0
    ) -> None:
        self.anchor_sets = anchor_sets
        first = next(iter(anchor_sets.values()))
        num_epochs, num_stages = first["anchors"].shape[:2]
        for name, a in anchor_sets.items():
            if a["anchors"].shape[:2] != (num_epochs, num_stages):
                raise ValueError(
                    f"{name} has {tuple(a['anchors'].shape[:2])} (epochs, stages) snapshots, "
                    f"expected {(num_epochs, num_stages)}"
                )
        self.steps = _steps(first)
        controls = {
            "snapshot": slider(
                widgets.IntSlider,
                "snapshot",
                value=num_epochs if snapshot is None else snapshot,
                min=1,
                max=num_epochs,
            ),
            "stage": dropdown([(f"stage {s + 1}", s) for s in range(num_stages)], stage, "stage"),
        }
        super().__init__(self.draw, controls)

    def draw(self, snapshot: int, stage: int) -> tuple[dict, Figure]:
        e, sets = snapshot - 1, self.anchor_sets
        sim = {
            n: anchor_similarity(a["anchors"][e, stage], a["present"][e, stage])
            for n, a in sets.items()
        }
        align = {n: stage_alignment(a["anchors"], a["present"])[e, stage] for n, a in sets.items()}
        fig = plot_anchor_epoch(sets, e, stage)
        result = {
            "similarity": sim,
            "alignment": align,
            "step": self.steps[e],
            "snapshot": snapshot,
            "stage": stage,
        }
        return result, fig


def alignment_reading(anchor_sets: dict[str, dict], near: float = 0.7, far: float = 0.3) -> str:
    """Where each model's lower stages end relative to the last stage's anchors, in words: the
    mean over classes of cos(a_i^n, a_I^n) at the first and the last snapshot, called "near"
    (at least `near`), "far" (below `far`) or "partway"."""
    lines = []
    for name, a in anchor_sets.items():
        al = torch.nanmean(stage_alignment(a["anchors"], a["present"]), dim=2)  # [E,S]
        parts = []
        for s in range(al.shape[1] - 1):
            end = float(al[-1, s])
            call = "near" if end >= near else "far" if end < far else "partway"
            parts.append(f"stage {s + 1} {float(al[0, s]):+.2f} -> {end:+.2f} ({call})")
        lines.append(f"{name}: " + "; ".join(parts))
    return (
        "mean cos with the last stage's anchor, first -> last snapshot "
        f"(near: >= {near:g}, far: < {far:g}):\n" + "\n".join(lines)
    )
