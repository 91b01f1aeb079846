"""Figures a class can read: the palette, the error marks, learning curves, the confusion matrix
and the band panel of notebook 01 (issue 16)."""

import itertools
import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from ctx.labels import IGNORE_INDEX  # noqa: E402
from ctx.lessons.confusion import ConfusionExplorer, band_sentence, plot_confusion  # noqa: E402
from ctx.lessons.scenes import SceneBrowser  # noqa: E402
from ctx.metrics import boundary_band  # noqa: E402
from ctx.plotting import (  # noqa: E402
    ERROR_COLOUR,
    IGNORE_COLOUR,
    PALETTE,
    error_edges,
    figure,
    log_ticks,
    mark_errors,
    plot_history,
    plot_scenes,
)


def lab(rgb) -> np.ndarray:
    """sRGB in [0,1] -> CIELAB (D65), written from the formulas."""
    rgb = np.asarray(rgb, float)
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1
    )


def test_lab_of_known_colours():
    np.testing.assert_allclose(lab([1.0, 1.0, 1.0]), [100, 0, 0], atol=0.05)
    np.testing.assert_allclose(lab([0.0, 0.0, 0.0]), [0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(lab([1.0, 0.0, 0.0]), [53.24, 80.09, 67.20], atol=0.1)


def test_every_class_colour_differs_from_the_others_the_errors_and_ignore():
    colours = [*PALETTE, ERROR_COLOUR, IGNORE_COLOUR]
    names = ["background", *(f"digit {d}" for d in range(10)), "errors", "ignore"]
    assert len(PALETTE) == 11
    close = [
        (names[i], names[j], round(float(np.linalg.norm(lab(a) - lab(b))), 1))
        for (i, a), (j, b) in itertools.combinations(enumerate(colours), 2)
        if np.linalg.norm(lab(a) - lab(b)) < 25  # CIE76 ΔE: 2.3 is just noticeable
    ]
    assert close == []


def test_error_edges_of_hand_made_masks():
    one = np.zeros((3, 3), bool)
    one[1, 1] = True
    edges = {tuple(map(tuple, e)) for e in error_edges(one).tolist()}
    assert edges == {
        ((0.5, 0.5), (0.5, 1.5)),  # left
        ((1.5, 0.5), (1.5, 1.5)),  # right
        ((0.5, 0.5), (1.5, 0.5)),  # top
        ((0.5, 1.5), (1.5, 1.5)),  # bottom
    }
    pair = np.zeros((2, 3), bool)
    pair[0, 0:2] = True  # two pixels side by side at the top-left corner: 6 outer edges
    assert len(error_edges(pair)) == 6
    assert error_edges(np.zeros((2, 2), bool)).shape == (0, 2, 2)


def test_mark_errors_skips_ignore_and_returns_the_legend_entry():
    labels = torch.tensor([[1, 2], [IGNORE_INDEX, 0]])
    fig, axes = figure(2, 2)
    handle = mark_errors(axes[0, 0], torch.tensor([[1, 2], [5, 0]]), labels)  # only ignore differs
    assert not axes[0, 0].collections and handle.get_label() == "wrong pixels"
    assert handle.get_hatch() == "////" and tuple(handle.get_edgecolor()[:3]) == ERROR_COLOUR
    mark_errors(axes[0, 0], torch.tensor([[1, 3], [5, 0]]), labels)
    lines = [c for c in axes[0, 0].collections if isinstance(c, LineCollection)]
    assert len(lines) == 1 and len(lines[0].get_segments()) == 4  # one wrong pixel


def test_plot_scenes_marks_errors_in_the_legend():
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    preds = labels.clone()
    preds[1, 2:4, 2:4] = 3
    fig = plot_scenes(torch.rand(2, 3, 8, 8), labels, preds, errors=True)
    texts = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert texts[-1] == "wrong pixels"
    assert not fig.axes[4].collections and len(fig.axes[5].collections) == 2  # hatch, outline


@pytest.mark.parametrize(
    ("lo", "hi", "ticks"),
    [
        (32, 6000, [50, 100, 200, 500, 1000, 2000, 5000]),
        (0.05, 15.6, [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10]),
        (1.1, 1.9, [1, 2]),
    ],
)
def test_log_ticks(lo, hi, ticks):
    assert log_ticks(lo, hi) == pytest.approx(ticks)


def history(steps: list[int], seconds: float = 1.0) -> list[dict]:
    return [{"step": s, "train_seconds": s * seconds, "val": {"miou": s / 100}} for s in steps]


def test_plot_history_shows_a_short_run_beside_a_long_one():
    fig = plot_history(
        {"short": history([32, 64, 96]), "long": history(list(range(200, 6001, 200)))}
    )
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "step (log scale)"
    assert [line.get_marker() for line in ax.lines] == ["o", "o"]  # few points: markers
    assert ax.get_ylabel() == "validation mIoU (%)"
    assert fig.get_figwidth() >= 9  # the notebook's full width
    assert ax.get_xlim()[0] <= 32 and ax.get_xlim()[1] >= 6000


def test_plot_history_keeps_a_linear_axis_for_similar_runs():
    many = history(list(range(10, 1001, 10)))  # 100 evaluations: a line without markers
    fig = plot_history({"a": many, "b": history([500, 1000])}, key="miou", x="minutes")
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear" and ax.get_xlabel() == "training minutes"
    assert ax.lines[0].get_marker() == "None" and ax.lines[1].get_marker() == "o"
    assert plot_history({"a": many}, xscale="log").axes[0].get_xscale() == "log"


def test_plot_confusion_has_a_colourbar_and_readable_numbers():
    mat = torch.tensor([[990, 10, 0], [0, 5, 5], [1, 0, 199]])  # rows: 99/1/0, 0/50/50, 0.5/0/99.5
    fig = plot_confusion(mat, ("a", "b", "c"))
    assert len(fig.axes) == 2 and "% of the true class" in fig.axes[1].get_ylabel()
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert texts == {"99", "1", "50", "100"}  # 99.5 rounds to 100; 0.5 % is below 1 %: blank
    assert min(t.get_fontsize() for t in fig.axes[0].texts) >= 8
    assert len(plot_confusion(mat, ("a", "b", "c"), min_share=60).axes[0].texts) == 2


def test_band_sentence():
    assert band_sentence(2, 0.26, 0.891) == (
        "the band of width 2 holds 26 % of the pixels and 89 % of the wrong ones"
    )
    assert band_sentence(1, 0.5, math.nan, "\n").endswith("pixels\nand no pixel is wrong")


def test_confusion_explorers_band_panel_follows_the_scene():
    labels = torch.zeros(3, 16, 16, dtype=torch.long)
    labels[:, 4:12, 4:12] = 3  # a square digit in every scene
    pred = labels.clone()
    pred[1, 4, 6] = 0  # scene 1: one wrong pixel on the square's edge, in the band
    pred[2, 8, 8] = 0  # scene 2: one in its middle, 4 px from any edge: outside a band of 2
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    w = ConfusionExplorer({"m": pred}, labels, images)
    assert w.result["index"] == 0 and math.isnan(w.result["scene_band_errors"])
    assert w.figure.axes[2].get_title().startswith("scene 0\n")
    assert w.result["band_errors"] == pytest.approx(0.5)  # all scenes: one of the two errors
    band = boundary_band(labels[:1], 2)
    assert w.result["scene_band_pixels"] == pytest.approx(float(band.float().mean()))
    w.controls["index"].value = 1
    assert w.result["index"] == 1 and w.result["scene_band_errors"] == 1.0
    title = w.figure.axes[2].get_title()
    assert title.startswith("scene 1\n") and "100 % of the wrong ones" in title
    w.controls["index"].value = 2
    assert w.result["scene_band_errors"] == 0.0 and w.result["band_errors"] == pytest.approx(0.5)
    assert "all 3 scenes" in w.result["text"] and "50 % of the wrong ones" in w.result["text"]


def test_scene_browser_marks_errors_with_a_legend_entry():
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    pred = labels.clone()
    pred[0, 2, 2] = 4
    w = SceneBrowser(torch.rand(2, 3, 8, 8), labels, {"m": pred})
    legend = [t.get_text() for t in w.figure.axes[-1].get_legend().get_texts()]
    assert "wrong pixels" not in legend and not w.figure.axes[-1].collections
    w.controls["errors"].value = True
    legend = [t.get_text() for t in w.figure.axes[-1].get_legend().get_texts()]
    assert legend[-1] == "wrong pixels" and len(w.figure.axes[-1].collections) == 2
