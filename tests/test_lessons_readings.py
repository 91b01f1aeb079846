"""Notebooks 04-06: the sentences printed beside results (`short_run_verdict`, `ablation_reading`,
`reference_setting`, `scene_gain_text`, `alignment_reading`, `separation_reading`) decided by the
numbers, and the figures they sit beside (live curves, ablation dots, anchor arrows)."""

from __future__ import annotations

import math
import statistics
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ctx.analysis import scene_gains  # noqa: E402
from ctx.engine.config import TrainConfig  # noqa: E402
from ctx.experiments.ablation_report import plot_ablation  # noqa: E402
from ctx.lessons.anchors import alignment_reading, plot_trajectories  # noqa: E402
from ctx.lessons.atlas import separation_reading  # noqa: E402
from ctx.lessons.training import (  # noqa: E402
    LiveCurves,
    ablation_reading,
    paired_spread,
    reference_setting,
    scene_gain_text,
    seconds_per_step,
    short_run_verdict,
    show_ablation,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _entry(step, ce, pa_weighted, miou, seconds):
    return {
        "step": step,
        "train_seconds": seconds,
        "train": {"ce": ce, "pa": pa_weighted * 10, "loss": ce + pa_weighted},
        "val": {"miou": miou, "boundary_miou": miou / 2},
    }


def test_short_run_verdict_calls_noise_by_the_numbers():
    # notebook 04's FAST case: both runs at the all-background level
    text = short_run_verdict({"CE": 7.7, "Contextrast": 7.5}, floor=7.6, spread=1.15)
    assert text.startswith("Contextrast − CE: 7.5 − 7.7 = -0.2") and "Noise" in text
    assert "background everywhere" in text
    # both learned something, but the difference is within twice the seed spread
    text = short_run_verdict({"CE": 40.0, "Contextrast": 41.5}, floor=7.6, spread=1.0)
    assert "Noise" in text and "seed-to-seed" in text
    # a difference beyond twice the spread is a hint, not a result
    text = short_run_verdict({"CE": 40.0, "Contextrast": 43.0}, floor=7.6, spread=1.0)
    assert "Noise" not in text and "hint" in text and "+3.0" in text


def test_seconds_per_step():
    assert seconds_per_step([_entry(10, 1, 0, 5, 2.0), _entry(20, 1, 0, 5, 5.0)]) == 0.25
    assert math.isnan(seconds_per_step([]))
    assert math.isnan(seconds_per_step([{"step": 3, "val": {}}]))


def test_live_curves_compare_ce_with_ce_and_show_the_step_cost():
    curves = LiveCurves(show=False)
    ce, cx = curves.callback("CE"), curves.callback("Contextrast")
    ce(None, _entry(10, 2.0, 0.0, 8.0, 1.0))
    ce(None, _entry(20, 1.5, 0.0, 9.0, 2.0))
    cx(None, _entry(10, 2.2, 0.8, 8.0, 2.0))
    cx(None, _entry(20, 1.6, 0.6, 9.0, 4.0))
    ax_loss, _ = curves.figure.axes
    lines = {ln.get_label(): list(ln.get_ydata()) for ln in ax_loss.lines}
    assert lines["CE (0.10 s/step): CE term"] == [2.0, 1.5]
    assert lines["Contextrast (0.20 s/step): CE term"] == [2.2, 1.6]  # not the total
    assert lines["Contextrast: α·PA term"] == pytest.approx([0.8, 0.6])
    assert len(ax_loss.lines) == 3  # CE has no PA line


def _run(variant, seed, miou):
    return {
        "variant": variant,
        "seed": seed,
        "miou": miou,
        "boundary_miou": miou - 3,
        "steps": 100,
        "train_seconds": 60.0,
    }


THREE_SEEDS = {
    "config": {"alpha": 0.02, "warmup_steps": 3000},
    "runs": [_run("ce", s, 70.0 + s) for s in range(3)]
    + [_run("bane", s, 71.0 + s + 0.1 * s) for s in range(3)]  # +1.0, +1.1, +1.2: better
    + [_run("ccl", s, 70.0 + s + d) for s, d in enumerate([1.0, -1.0, 0.2])],  # noise
}


def test_ablation_reading_by_the_intervals():
    from ctx.experiments.ablation_report import summarise

    text = ablation_reading(summarise(THREE_SEEDS["runs"]))
    assert "`bane`: +1.10 points vs `ce` (95% interval [+0.85, +1.35] over 3 seeds): better" in text
    assert "`ccl`: +0.07" in text and "within noise" in text
    assert text.endswith("In all: `bane`: better than `ce`; `ccl`: within noise.")
    one = [_run("ce", 0, 80.0), _run("contextrast", 0, 67.0), _run("ccl", 0, 79.5)]
    text = ablation_reading(summarise(one), spread=1.0)
    assert "`contextrast`: -13.00 points vs `ce` (one seed, no interval; 13.0×" in text
    assert "`contextrast`: worse than `ce`" in text and "`ccl`: within noise" in text
    assert "within noise" in ablation_reading(summarise(one))  # no spread: nothing is called
    assert paired_spread(THREE_SEEDS) == pytest.approx(statistics.stdev([1.0, -1.0, 0.2]))  # ccl's
    assert math.isnan(paired_spread(None)) and math.isnan(paired_spread({"runs": one}))


def test_plot_ablation_draws_dots_and_intervals():
    fig = plot_ablation(THREE_SEEDS, "t")
    ax, ax_d = fig.axes
    assert len(ax.containers) == 3 and len(ax_d.containers) == 2  # an interval per variant
    lo, hi = ax.get_ylim()
    assert lo > 60  # dots: no bar from zero, so no axis to truncate


def test_show_ablation_titles_and_reads(tmp_path):
    import json

    (tmp_path / "ablation.md").write_text("| variant |\n|---|\n| `ce` |\n")
    (tmp_path / "ablation.json").write_text(json.dumps(THREE_SEEDS))
    text = show_ablation(tmp_path, "Ablation X")
    assert text.startswith("### Ablation X: α = 0.02, 3000 CE-only warm-up steps")
    assert "`ce`" in text and "**Reading**" in text and "`bane`: better" in text
    assert len(plt.get_fignums()) == 1


def _ref(miou, step=6000, **cfg):
    return SimpleNamespace(
        config=TrainConfig(**cfg), history=[{"step": step, "val": {"miou": miou}}]
    )


def test_reference_setting_reads_the_runs():
    ce, tuned = _ref(78.0, loss="ce"), {"alpha": 0.02, "warmup_steps": 3000}
    text = reference_setting(ce, _ref(65.5, loss="contextrast"), tuned, manifest={})
    assert "α = 0.1, the PA term from the first step: METHOD.md's defaults" in text
    assert "CE 78.00 %, Contextrast 65.50 % (-12.50 points)" in text
    assert "these reference runs do not use it" in text
    text = reference_setting(ce, _ref(79.0, alpha=0.02, warmup_steps=3000), tuned, manifest={})
    assert "tuned on the validation scenes" in text and "do not use it" not in text
    assert "(+1.00 points)" in text
    # a rebuilt reference: the manifest names the regime and the shipped weights' test scores
    test = {"ce": {"test": {"miou": 70.0, "scenes": 500}}, "contextrast": {"test": {"miou": 72.5}}}
    cx = _ref(60.0, alpha=0.05, warmup_steps=1000)
    text = reference_setting(ce, cx, tuned, {"regime": "scarce", "runs": test})
    assert (
        "α = 0.05, the PA term from step 1000: the regime study's setting for its `scarce`" in text
    )
    assert (
        "Test mIoU of the shipped weights (500 scenes): CE 70.00 %, Contextrast 72.50 % (+2.50"
        in text
    )
    assert "do not use it" not in text
    assert "CPU time" not in text  # these histories record none
    ce.history[-1]["train_cpu_seconds"], cx.history[-1]["train_cpu_seconds"] = 600.0, 900.0
    text = reference_setting(ce, cx, tuned, {"regime": "scarce", "runs": test})
    assert "CE 10.0 min, Contextrast 15.0 min: ×1.50 per step." in text


def test_scene_gains_and_text_show_both_sides():
    a = torch.tensor([50.0, 60.0, 70.0, 80.0, 90.0, 40.0])
    b = torch.tensor([55.0, 60.0, 60.0, 79.0, 70.0, 41.0])
    g = scene_gains(a, b, top=2)
    assert (g["better"], g["worse"], g["equal"]) == (2, 3, 1)
    assert g["median"] == pytest.approx(-1.0)  # torch's lower median of [-20,-10,-1,0,1,5]
    assert g["typical"] == 3 and g["gains"] == [0, 5] and g["losses"] == [4, 2]
    text = scene_gain_text(g, "CE", "Cx", {"CE": a, "Cx": b})
    assert "better on 2, worse on 3, equal on 1" in text and "scene 3 is typical" in text
    assert "largest losses:\n  scene   4:  90.0 % ->  70.0 % (-20.0)" in text
    none = scene_gains(a, a, top=2)
    assert none["gains"] == [] and "(none)" in scene_gain_text(none, "CE", "Cx", {"CE": a, "Cx": a})


def _anchor_set(cos_end: float, stages: int = 3, epochs: int = 2, classes: int = 3) -> dict:
    """Anchors whose lower stages start orthogonal to the last stage's and end at cos_end."""
    last = F.normalize(torch.eye(classes, 4), dim=-1)
    anchors = torch.zeros(epochs, stages, classes, 4)
    anchors[:, -1] = last
    angle = math.acos(cos_end)
    ortho = torch.roll(torch.eye(classes, 4), 1, dims=1)  # orthogonal to `last`, row by row
    anchors[0, :-1] = ortho
    anchors[-1, :-1] = math.cos(angle) * last + math.sin(angle) * ortho
    return {
        "step": list(range(epochs)),
        "anchors": anchors,
        "present": torch.ones(epochs, stages, classes, dtype=torch.bool),
    }


def test_alignment_reading_by_hand():
    text = alignment_reading({"far": _anchor_set(0.15), "near": _anchor_set(0.8)})
    assert "far: stage 1 +0.00 -> +0.15 (far); stage 2 +0.00 -> +0.15 (far)" in text
    assert "near: stage 1 +0.00 -> +0.80 (near)" in text
    assert "(partway)" in alignment_reading({"x": _anchor_set(0.5)})


def test_trajectories_show_arrows_and_highlighted_paths():
    sets = {"x": _anchor_set(0.5, epochs=4)}
    fig = plot_trajectories(sets, 0)
    ax = fig.axes[0]
    arrows = [t for t in ax.texts if t.arrow_patch is not None]
    assert len(arrows) == 6  # 3 classes x (stage 1, last stage): one arrow from first to last
    fig = plot_trajectories(sets, 0, highlight=[1])
    ax = fig.axes[0]
    assert len([t for t in ax.texts if t.arrow_patch is not None]) == 4
    assert any(len(line.get_xdata()) == 4 for line in ax.lines)  # class 1's whole path


FEATURES = [{"stage": s + 1, "ce": 60.0, "cx": v} for s, v in enumerate([59.5, 66.0, 80.0, 85.0])]
HEADS = [{"stage": s + 1, "ce": 50.0, "cx": 90.0} for s in range(4)]


def test_separation_reading_faces_the_paradox():
    errors = {"rim_share_of_errors": 84.0, "rim_error_rate": 10.57, "interior_error_rate": 0.53}
    text = separation_reading(FEATURES, HEADS, {"ce": 78.0, "cx": 66.0}, errors)
    assert "better than ce at stages 2-4 and worse at no stage" in text
    assert "one pair of runs on these probe scenes, so no interval: within 1 point" in text
    assert "90/90/90/90 % (cx) against 50/50/50/50 % (ce)" in text and "random one" in text
    assert "(-12.00 points)" in text
    assert "better separated embeddings, worse segmentation" in text
    assert "84 % of them lie within 2 px" in text and "0.53 % further inside" in text
    assert "the diagnosis's CE run on the default scenes' test split, not these runs" in text
    text = separation_reading(FEATURES, HEADS, {"ce": 78.0, "cx": 78.4})
    assert "better separated embeddings, equal segmentation" in text and "diagnosis.md" in text
    assert "paradox" not in separation_reading(FEATURES, HEADS, {"ce": 78.0, "cx": 80.0})
