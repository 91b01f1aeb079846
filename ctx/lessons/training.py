"""Notebooks 00 and 04: learning curves that redraw while a run trains (`LiveCurves`,
`train_live`; the static ones are `ctx.plotting.plot_history`) and the ablation's table and
figure (`show_ablation`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from torch import nn

from ctx.lessons.base import figure_png, in_ipython
from ctx.plotting import figure


class LiveCurves:
    """Learning curves (`ctx.plotting.plot_history`'s live sibling) that redraw in place while
    `ctx.engine.loop.train` runs.

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
        if self.figure is not None:  # one open figure at a time (headless ones are never shown)
            plt.close(self.figure)
        fig, ((ax_loss, ax_val),) = figure(9, 3.3, 1, 2)
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
