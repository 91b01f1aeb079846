"""Notebook 06's atlas explorer: the "method" label on the line of its buttons, and digit points
drawn to be read."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import ipywidgets as widgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from lesson_fakes import fake_ref  # noqa: E402

from ctx.lessons.atlas import AtlasExplorer, plot_atlas  # noqa: E402
from ctx.projection import Atlas  # noqa: E402


def _atlas() -> Atlas:
    refs = {"ce": fake_ref(0), "contextrast": fake_ref(1)}
    return Atlas(refs, max_points=40, project=lambda x, *_: np.asarray(x)[:, :2].copy())


def test_method_label_sits_on_the_line_of_its_buttons():
    w = AtlasExplorer(_atlas(), stage=1)
    toggle = w.controls["method"]
    assert toggle.description == ""  # its own description would wrap above the buttons
    assert w.method_box in w.ui.children and toggle not in w.ui.children
    label, buttons = w.method_box.children
    assert isinstance(label, widgets.Label) and label.value == "method" and buttons is toggle
    assert w.method_box.layout.flex_flow == "row nowrap"
    toggle.value = "UMAP"  # the control still drives the explorer
    assert w.result["method"] == "UMAP" and w.draws == 2
    plt.close("all")


def test_digit_points_are_larger_than_background_points():
    atlas = _atlas()
    fig = plot_atlas(atlas, 1, "t-SNE", models=["ce"], highlight="none")
    bg, digits = fig.axes[0].collections[:2]
    labels = atlas.points("ce", 1)["labels"]
    assert len(bg.get_offsets()) == (labels == 0).sum()
    assert len(digits.get_offsets()) == (labels != 0).sum()
    assert digits.get_sizes()[0] >= 3 * bg.get_sizes()[0] and digits.get_alpha() > 0.9
    plt.close("all")
