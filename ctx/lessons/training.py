"""Notebooks 00 and 04: learning curves that redraw while a run trains (`LiveCurves`,
`train_live`; the static ones are `ctx.plotting.plot_history`) its per-step cost
(`seconds_per_step`) and what a short run's difference shows (`short_run_verdict`); the
ablation's table, reading and figure (`show_ablation`, `ablation_reading`, `plot_ablation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ctx.experiments.ablation_report import REMAKE, RUN, plot_ablation
from ctx.io import read_results
from ctx.lessons.base import figure_png, in_ipython
from ctx.plotting import figure


class LiveCurves:
    """Learning curves (`ctx.plotting.plot_history`'s live sibling) that redraw in place while
    `ctx.engine.loop.train` runs.

    Use one per figure: `curves = LiveCurves()`, then
    `train(cfg, on_epoch_end=curves.callback("CE"))` for each run (or `train_live`). Each call
    appends the history entry and redraws. Left: the CE term of every run (solid) and, for a run
    with a contrastive term, the weighted PA term α·PA = loss - CE (dotted), so CE is compared
    with CE; right: validation mIoU (solid) and boundary mIoU (dashed). Each run's legend gives
    its training seconds per step (`seconds_per_step`). Under IPython the figure is shown once and then updated through a display handle;
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
        if self.figure is not None:  # one open figure at a time (headless ones are never shown)
            plt.close(self.figure)
        fig, ((ax_loss, ax_val),) = figure(9, 3.3, 1, 2)
        for i, (name, hist) in enumerate(self.histories.items()):
            colour, steps = f"C{i}", [e["step"] for e in hist]
            sps = seconds_per_step(hist)
            label = name if sps != sps else f"{name} ({sps:.2f} s/step)"
            ce = [e["train"].get("ce", e["train"].get("loss", np.nan)) for e in hist]
            ax_loss.plot(steps, ce, ".-", color=colour, label=f"{label}: CE term")
            pa = [e["train"].get("loss", np.nan) - e["train"].get("ce", np.nan) for e in hist]
            if np.nansum(np.abs(pa)) > 0:  # the weighted PA term, alpha * PA = total - CE
                ax_loss.plot(steps, pa, ".:", color=colour, label=f"{name}: α·PA term")
            ax_val.plot(steps, [e["val"]["miou"] for e in hist], ".-", color=colour, label=label)
            ax_val.plot(
                steps,
                [e["val"]["boundary_miou"] for e in hist],
                ".--",
                color=colour,
                alpha=0.7,
                label=f"{name} boundary mIoU",
            )
        ax_loss.set_ylabel("training loss terms (epoch mean)")
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


def seconds_per_step(history: Sequence[dict]) -> float:
    """Training seconds per step of a run's history (its last entry; NaN without timing)."""
    if not history or "train_seconds" not in history[-1] or not history[-1]["step"]:
        return float("nan")
    return history[-1]["train_seconds"] / history[-1]["step"]


def short_run_verdict(
    miou: dict[str, float], floor: float, spread: float, margin: float = 1.0
) -> str:
    """What two runs' validation mIoU (name -> %) show, in words. `floor`: the mIoU of predicting
    background everywhere on the same scenes; `spread`: the seed-to-seed std of paired
    differences known from full-length runs (a lower bound for a short run's). Noise when both
    runs are within `margin` points of the floor (neither has learned digits yet) or when the
    difference is at most twice `spread`; otherwise a one-seed hint, not a result."""
    (a, ma), (b, mb) = miou.items()
    diff = mb - ma
    head = f"{b} − {a}: {mb:.1f} − {ma:.1f} = {diff:+.1f} points of validation mIoU"
    if max(ma, mb) - floor < margin:
        return (
            f"{head}. Noise: both runs are within {margin:g} point of predicting background "
            f"everywhere ({floor:.1f} %), so neither has learned the digits yet."
        )
    if abs(diff) <= 2 * spread:
        return (
            f"{head}. Noise: within twice the seed-to-seed spread of paired differences "
            f"(std {spread:.2f} points over seeds in the full-length ablation)."
        )
    return (
        f"{head}: more than twice the seed-to-seed spread ({spread:.2f}), but one seed of one "
        "run: a hint to check with more seeds, not a result."
    )


# what the lessons read of an ablation.json: each run's scores and the PA setting
LESSON_SHAPE = {"runs": [RUN], "config": dict}


def load_ablation(results_dir: str | Path) -> dict | None:
    """An ablation's results (results_dir/ablation.json), or None when there are none."""
    path = Path(results_dir) / "ablation.json"
    return read_results(path, LESSON_SHAPE, REMAKE) if path.exists() else None


def paired_spread(results: dict | None) -> float:
    """The largest std over seeds of (variant − ce) paired by seed in an ablation's results
    (`load_ablation`); NaN without results or without two paired seeds."""
    from ctx.experiments.ablation_report import summarise

    rows = summarise(results["runs"]) if results else []
    stds = [r["paired"][1] for r in rows if r["paired"] and r["paired"][1] == r["paired"][1]]
    return max(stds) if stds else float("nan")


def ablation_reading(rows: list[dict], spread: float | None = None, level: float = 0.95) -> str:
    """What an ablation table says, read from its numbers (rows: `summarise`'s): per variant,
    the mean difference to ce paired by seed with its `level` t-interval over seeds, called
    better / worse when the interval excludes 0 and within noise when it holds 0. A variant with
    one seed has no interval: it is called better / worse only when the difference exceeds three
    times `spread` (the seed-to-seed std of paired differences from a run with several seeds),
    else within noise."""
    from ctx.experiments.stats import t_interval

    calls: dict[str, list[str]] = {"better": [], "worse": [], "within noise": []}
    lines = []
    for r in rows:
        if not r["paired"]:
            continue
        mean, lo, hi = r["paired"][0], *t_interval(r["diffs"], level)
        if len(r["diffs"]) < 2:
            span = "one seed, no interval"
            lo = hi = mean
            if spread is not None and spread == spread:
                span += f"; {abs(mean) / spread:.1f}× the seed-to-seed spread of {spread:.2f}"
                lo, hi = mean - 3 * spread, mean + 3 * spread
            else:
                lo, hi = -math.inf, math.inf
        else:
            span = f"{level:.0%} interval [{lo:+.2f}, {hi:+.2f}] over {len(r['diffs'])} seeds"
        call = "better" if lo > 0 else "worse" if hi < 0 else "within noise"
        calls[call].append(r["variant"])
        lines.append(f"- `{r['variant']}`: {mean:+.2f} points vs `ce` ({span}): {call}")
    words = {
        "better": "better than `ce`",
        "worse": "worse than `ce`",
        "within noise": "within noise",
    }
    summary = "; ".join(
        f"{', '.join(f'`{n}`' for n in v)}: {words[k]}" for k, v in calls.items() if v
    )
    return (
        "**Reading** (Δ test mIoU against `ce`, paired by seed):\n\n"
        + "\n".join(lines)
        + f"\n\nIn all: {summary}."
    )


def show_ablation(
    results_dir: str | Path | None = None, title: str = "Ablation", spread: float | None = None
) -> str | None:
    """Display an ablation (results_dir: ablation.md, ablation.json) under `title` and its
    setting (α, warm-up): its table, a reading computed from the numbers (`ablation_reading`;
    `spread` judges one-seed rows when the ablation has no spread of its own) and dots with
    95 % intervals (`plot_ablation`); without results, how to produce them. Returns the
    Markdown shown, or None."""
    from IPython.display import Markdown, display

    from ctx.experiments.ablation_report import summarise

    if results_dir is None:
        from ctx.reference import ROOT

        results_dir = ROOT / "results"
    results_dir = Path(results_dir)
    md, results = results_dir / "ablation.md", load_ablation(results_dir)
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
    if results:
        c = results["config"]
        title += f": α = {c['alpha']:g}, {c['warmup_steps']} CE-only warm-up steps"
    text = f"### {title}\n\n" + md.read_text()
    if results:
        own = paired_spread(results)
        text += "\n" + ablation_reading(summarise(results["runs"]), own if own == own else spread)
    display(Markdown(text))
    if results:
        plot_ablation(results, title)
    return text


def reference_setting(ce, cx, tuned: dict | None = None, manifest: dict | None = None) -> str:
    """Which setting the Contextrast reference run `cx` was trained at and what it costs against
    the CE reference `ce` (both `load_reference(...)`), read from their configs, the manifest
    (`reference_manifest()` when None: its regime, and the test metrics of the shipped weights
    when it records them) and else the runs' last validation; the cost is each run's training
    CPU time from its history, when recorded. `tuned`: the config dict of the
    validation-tuned ablation (results/ablation.json), named when the reference uses it."""
    from ctx.engine.config import TrainConfig
    from ctx.reference import reference_manifest

    manifest = reference_manifest() if manifest is None else manifest
    c, default = cx.config, TrainConfig()
    setting = f"α = {c.alpha:g}, " + (
        f"the PA term from step {c.warmup_steps}"
        if c.warmup_steps
        else "the PA term from the first step"
    )
    same, is_tuned = (c.alpha, c.warmup_steps), False
    if manifest.get("regime"):
        which = f"the regime study's setting for its `{manifest['regime']}` regime"
    elif same == (default.alpha, default.warmup_steps):
        which = "METHOD.md's defaults"
    elif tuned and same == (tuned["alpha"], tuned["warmup_steps"]):
        which, is_tuned = "the setting tuned on the validation scenes (results/ablation.json)", True
    else:
        which = "neither METHOD.md's defaults nor the tuned setting"
    a, b = ce.history[-1], cx.history[-1]
    text = (
        f"The Contextrast reference was trained at {setting}: {which}; "
        f"{b['step']} steps, seed {c.seed} (CE: {a['step']} steps, seed {ce.config.seed}).\n"
    )
    runs = manifest.get("runs", {})
    if all("test" in runs.get(n, {}) for n in ("ce", "contextrast")):
        m_ce, m_cx = runs["ce"]["test"]["miou"], runs["contextrast"]["test"]["miou"]
        where = f"Test mIoU of the shipped weights ({runs['ce']['test']['scenes']} scenes)"
    else:
        m_ce, m_cx = a["val"]["miou"], b["val"]["miou"]
        where = f"Final validation mIoU ({c.val_scenes} scenes)"
    text += f"{where}: CE {m_ce:.2f} %, Contextrast {m_cx:.2f} % ({m_cx - m_ce:+.2f} points)."
    if "train_cpu_seconds" in a and "train_cpu_seconds" in b:
        per_step = (b["train_cpu_seconds"] / b["step"]) / (a["train_cpu_seconds"] / a["step"])
        text += (
            f"\nTraining CPU time (evaluation excluded): CE {a['train_cpu_seconds'] / 60:.1f} min, "
            f"Contextrast {b['train_cpu_seconds'] / 60:.1f} min: ×{per_step:.2f} per step."
        )
    if tuned and not is_tuned and not manifest.get("regime"):
        text += (
            f"\nThe tuned setting (α = {tuned['alpha']:g}, {tuned['warmup_steps']} CE-only steps "
            "first) is results/ablation.md's; these reference runs do not use it."
        )
    return text


def scene_gain_text(g: dict, a: str, b: str, scores: dict[str, torch.Tensor]) -> str:
    """`ctx.analysis.scene_gains(scores[a], scores[b])` in words: the counts, the median gain,
    the largest gains and the largest losses, each scene with both mIoUs."""

    def rows(idx: list[int]) -> str:
        return (
            "\n".join(
                f"  scene {i:3d}: {scores[a][i]:5.1f} % -> {scores[b][i]:5.1f} % "
                f"({g['gain'][i]:+.1f})"
                for i in idx
            )
            or "  (none)"
        )

    n = len(g["gain"])
    return (
        f"{b} against {a}, per-scene mIoU on {n} validation scenes: better on {g['better']}, "
        f"worse on {g['worse']}, equal on {g['equal']}; median change {g['median']:+.1f} points "
        f"(scene {g['typical']} is typical: {g['gain'][g['typical']]:+.1f}).\n"
        f"largest gains:\n{rows(g['gains'])}\nlargest losses:\n{rows(g['losses'])}"
    )
