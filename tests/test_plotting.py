import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ctx.plotting import PALETTE, label_to_rgb, overlay, plot_history, plot_scenes  # noqa: E402


def test_label_to_rgb():
    rgb = label_to_rgb(torch.tensor([[0, 3], [255, 10]]))
    np.testing.assert_allclose(rgb[0, 0], PALETTE[0])
    np.testing.assert_allclose(rgb[0, 1], PALETTE[3])
    np.testing.assert_allclose(rgb[1, 0], [1, 1, 1])


def test_plot_scenes_has_rows_and_legend():
    images = torch.rand(3, 3, 16, 16)
    labels = torch.randint(0, 11, (3, 16, 16))
    fig = plot_scenes(images, labels, preds=labels, titles=["a", "b", "c"])
    assert len(fig.axes) == 9
    legend = fig.axes[2].get_legend()
    assert [t.get_text() for t in legend.get_texts()][:2] == ["background", "0"]


def test_plot_history_and_overlay():
    hist = [  # a run paused between its evaluations: wall time jumps, CPU time does not
        {"step": 10, "train_seconds": 60, "train_cpu_seconds": 30, "val": {"miou": 20.0}},
        {"step": 20, "train_seconds": 1260, "train_cpu_seconds": 60, "val": {"miou": 30.0}},
    ]
    fig = plot_history({"ce": hist}, x="minutes")
    assert list(fig.axes[0].lines[0].get_xdata()) == [1.0, 21.0]
    fig = plot_history({"ce": hist}, x="cpu_minutes")
    assert list(fig.axes[0].lines[0].get_xdata()) == [0.5, 1.0]
    assert fig.axes[0].get_xlabel() == "training CPU minutes"
    with pytest.raises(ValueError, match="x must be one of step, minutes, cpu_minutes"):
        plot_history({"ce": hist}, x="hours")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    overlay(
        ax, torch.zeros(3, 8, 8), torch.ones(4, 4, dtype=torch.bool), colour=(1, 0, 0), alpha=1.0
    )
    np.testing.assert_allclose(ax.images[0].get_array()[0, 0], [1, 0, 0])
