"""The one widget base of the notebooks, and the one setup call every notebook starts with.

`setup()` seeds Python, NumPy and torch, picks the device and sets the plot style.

Every explorer is an `Explorer` subclass built one way: explicit ipywidgets controls with
`continuous_update=False` (`slider`, `dropdown`), wired with `widgets.interactive_output` to the
subclass's `draw(**values) -> (result dict, Figure or None)`, shown with
`display(w.ui, w.out)`. Each keeps its controls in `w.controls` (a dict), the numbers
it computed last in `w.result` and the figure it drew last in `w.figure` (`w.png`), so a test
sets `w.controls["tau"].value = 0.5` headlessly and checks the effect. An exception in `draw` is
kept in `w.error` and re-raised (a front end shows it in the output area; a failure of the
first, default draw is raised by the constructor, so a notebook cell fails rather than hiding it).
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ctx.engine.device import resolve_device
from ctx.plotting import plot_style


def fast_mode() -> bool:
    """FAST (small sizes for tests and CPUs) when CI or CTX_FAST is set, or when there is no GPU.
    CTX_FAST=0 forces full size."""
    flag = os.environ.get("CTX_FAST")
    if flag is not None:
        return flag not in {"0", "false", "False", ""}
    return bool(os.environ.get("CI")) or not torch.cuda.is_available()


def setup(seed: int = 0) -> tuple[bool, torch.device]:
    """Seed Python, NumPy and torch, pick the device (cuda -> mps -> cpu), set a plot style.
    Returns (FAST, device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    plot_style()
    fast, device = fast_mode(), resolve_device("auto")
    print(f"FAST={fast}  device={device.type}")
    return fast, device


def in_ipython() -> bool:
    """Whether an IPython kernel or shell is running (else: a script or a test)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with ipywidgets
        return False
    return get_ipython() is not None


class Explorer(widgets.VBox):
    """A widget: explicit `controls` (dict name -> ipywidgets control) in `ui`, above an Output
    `out`. The base of every explorer in `ctx.lessons`: a subclass builds its controls and
    calls `super().__init__(self.draw, controls)`.

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
    """`fig` as PNG bytes; the figure is closed (a widget shows the image, not the figure)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # the figures use constrained layout: no tight bbox pass
    plt.close(fig)
    return buf.getvalue()


def slider(kind, description: str, **kw) -> widgets.Widget:
    """A `kind` control (e.g. `widgets.IntSlider`) that reports only when released."""
    return kind(
        description=description,
        continuous_update=False,
        style={"description_width": "initial"},
        **kw,
    )


def dropdown(options, value, description: str) -> widgets.Dropdown:
    """A Dropdown of `options` (values, or (label, value) pairs) set to `value`."""
    return widgets.Dropdown(options=options, value=value, description=description)
