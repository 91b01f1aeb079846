"""The diagnosis measurements on hand-made maps."""

import json
import math
from pathlib import Path

import pytest
import torch

from ctx.experiments import diagnosis
from ctx.projection import nearest_anchor_accuracy

ROOT = Path(__file__).resolve().parents[1]


def test_error_split_by_distance_to_class_edge():
    labels = torch.zeros(1, 9, 9, dtype=torch.long)
    labels[0, :, 5:] = 1  # a vertical class edge between columns 4 and 5
    pred = labels.clone()
    pred[0, 0, 4] = 1  # distance 1 from the edge: rim
    pred[0, 0, 0] = 1  # column 0 is 5 px from the edge: interior
    pred[0, 1, 0] = 1
    s = diagnosis.error_split(pred, labels, rim=2.0)
    # rim pixels: columns 3, 4 (class 0, D = 2, 1) and 5, 6 (class 1, D = 1, 2): 4 of 9 columns
    assert s["rim_pixel_share"] == pytest.approx(100 * 4 / 9)
    assert s["rim_error_rate"] == pytest.approx(100 * 1 / 36)
    assert s["interior_error_rate"] == pytest.approx(100 * 2 / 45)
    assert s["rim_share_of_errors"] == pytest.approx(100 / 3)
    assert s["errors_per_image"] == 3


def test_expected_background_share_counts_hard_then_fill():
    y = torch.tensor([[[0, 0, 0, 0, 1, 1, 2, 2]]])
    hard = torch.tensor([[[True, False, False, False, False, True, False, False]]])
    # anchor 1: other pixels 0,0,0,0,2,2; one hard (background), cap 3 -> 2 filled from
    # 3 bg + 2 class-2 pixels: (1 * 1 + 2 * 3/5) / 3
    # anchor 2: other 0,0,0,0,1,1; hard ones labelled != 2: pixel 0 (bg) and 5 (class 1):
    # (2 * 1/2 + 1 * 3/4) / 3
    want = 100 * ((1 + 2 * 3 / 5) / 3 + (1 + 3 / 4) / 3) / 2
    assert diagnosis.expected_background_share(y, hard, 3) == pytest.approx(want)


def test_bane_inputs_count_far_errors_and_fill():
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    labels[:, 2:12, 2:12] = 3
    pred = labels.clone()
    pred[0, 2:12, 2:12] = 0  # a 10x10 block of class 3 all wrong: D up to 5
    out = diagnosis.bane_inputs(pred, labels, [(16, 16), (4, 4)], k=0.5, max_negatives=8)
    full, coarse = out
    assert full["errors_per_image"] == 50  # 100 wrong pixels over 2 images
    assert full["errors_far_pct"] == pytest.approx(100 * 64 / 100)  # the inner 8x8 has D > 1
    # 50 picks: the 36 rim pixels (D = 1), then 14 of the 28 at D = 2
    assert full["picks_far_pct"] == pytest.approx(100 * 14 / 50)
    assert full["picks_background_pct"] == 0  # every pick is a class-3 pixel
    # anchor 0: 50 hard class-3 pixels fill its 8 negatives (0 % at random); anchor 3: no hard
    # pixel of another class, all 8 at random (100 %)
    assert full["fill_pct"] == pytest.approx(50.0)
    for b in out:
        assert all(not math.isnan(v) for v in b.values() if isinstance(v, float))
    # 4x4: nearest keeps rows/cols 0, 4, 8, 12: a 2x2 block of class 3, wrong in image 0 only,
    # all D = 1; 2 picks; anchor 0 fills 6 of 8 at random, anchor 3 all 8
    assert coarse["errors_per_image"] == pytest.approx(2.0)
    assert coarse["picks_far_pct"] == 0.0
    assert coarse["fill_pct"] == pytest.approx((75.0 + 100.0) / 2)


def test_separation_is_perfect_for_class_aligned_embeddings():
    labels = torch.randint(0, 3, (2, 4, 4))
    emb = torch.nn.functional.one_hot(labels, 8).permute(0, 3, 1, 2).float()
    assert nearest_anchor_accuracy(emb, labels) == 100.0
    assert nearest_anchor_accuracy(torch.ones_like(emb), labels) < 100.0


def test_reading_is_built_from_the_numbers():
    bane = [
        {
            "errors_far_pct": 12.0,
            "picks_far_pct": 0.1,
            "fill_pct": 20.0,
            "negatives_background_pct": 30.0,
            "errors_per_image": 9.0,
        }
    ] * 2
    run = {
        "errors": {"rim_share_of_errors": 84.0, "rim_error_rate": 10.5, "interior_error_rate": 0.5},
        "separation_features": [60.0, 55.0],
        "test": {"miou": 79.9},
        "train_miou": 88.3,
        "train_test_gap": 8.4,
        "bane": bane,
    }
    other = {**run, "test": {"miou": 77.1}, "separation_features": [61.0, 90.0]}
    text = "\n".join(diagnosis.reading({"ce": run, "contextrast": other}))
    assert "60/55 % (CE) to 61/90 %" in text and "79.94" not in text and "79.90 → 77.10" in text
    assert "84 % of CE's test errors" in text and "0.1/0.1 %" in text
    assert "acts at every stage: 12.0/12.0 % of the error pixels" in text
    assert "yet BANE's own picks make most of them at every stage" in text  # fill 20 % < 50 %
    assert "random ones of `ccl`" not in text


def _stages(errors_far: list[float], picks_far: list[float] | None = None) -> list[dict]:
    picks_far = picks_far or [0.0] * len(errors_far)
    return [
        {"errors_far_pct": e, "picks_far_pct": p, "fill_pct": 0.0}
        for e, p in zip(errors_far, picks_far, strict=True)
    ]


def test_ranking_acts_where_errors_lie_deeper_than_the_rim():
    """The ranking matters where the errors hold pixels deeper than the rim (D > 1) for its cut
    to leave out, whatever share of its picks end up there: 12 % of the errors at D > 1 with no
    pick among them is the ranking at work."""
    from ctx.experiments.diagnosis import bane_summary, ranking_reading, ranking_where, stage_span

    default = _stages([12.6, 1.5, 0.0, 0.0], [0.1, 0.0, 0.0, 0.0])
    assert bane_summary(default)["ranks_at"] == [1]
    assert ranking_where(default) == "only at stage 1"
    text = ranking_reading(default)
    assert text.startswith("BANE's distance ranking acts only at stage 1: 12.6/1.5/0.0/0.0 % of")
    assert "against 0.1/0.0/0.0/0.0 % of its picks" in text
    assert "so at stage 1 its cut leaves out the errors inside thick regions" in text
    assert text.endswith(
        "at stages 2-4 (≤ 5 % of the errors deeper than the rim) its picks are "
        "(nearly) a random subset of the errors"
    )
    flat = _stages([5.0, 0.0])  # at the bound: not more than 5 %
    assert ranking_where(flat) == "at no stage" and "leaves out" not in ranking_reading(flat)
    assert ranking_where(_stages([40.0, 6.0])) == "at every stage"
    assert "; at" not in ranking_reading(_stages([40.0, 6.0]))
    assert ranking_where(_stages([40.0, 0.0, 9.0])) == "only at stages 1, 3"
    assert ranking_where(_stages([40.0, 13.0, 1.0, 0.0])) == "only at stages 1-2"
    assert [stage_span(s) for s in ([], [3], [1, 2, 3], [1, 3])] == [
        "no stage",
        "stage 3",
        "stages 1-3",
        "stages 1, 3",
    ]


def test_train_command_names_the_recorded_sources():
    """The shipped diagnosis names each run by the command `train_command` derives from its
    config, so the label cannot drift from the setting that was diagnosed."""
    from ctx.experiments.diagnosis import train_command
    from ctx.experiments.regimes import regime_config

    recorded = json.loads((ROOT / "results" / "regimes" / "diagnosis.json").read_text())["sources"]
    assert train_command(regime_config("default", loss="ce")) == recorded["ce"]
    cx = regime_config("default", loss="contextrast", alpha=0.02, warmup_steps=3000)
    assert train_command(cx) == recorded["contextrast"]


def test_shipped_diagnosis_md_is_the_rendering_of_its_json():
    """`diagnose --report-only` rebuilds diagnosis.md from diagnosis.json: the shipped page must
    be what the current reading makes of the shipped numbers."""
    folder = ROOT / "results" / "regimes"
    saved = json.loads((folder / "diagnosis.json").read_text())
    md = diagnosis.markdown(saved["runs"], saved["sources"])
    assert (folder / "diagnosis.md").read_text() == md
    assert "decided at full resolution" not in md  # a cause the numbers never measured


def test_report_only_rewrites_from_the_json_and_names_the_command_without_it(tmp_path):
    from ctx.experiments import cli

    folder = tmp_path / "regimes"
    folder.mkdir()
    shipped = ROOT / "results" / "regimes" / "diagnosis.json"
    (folder / "diagnosis.json").write_text(shipped.read_text())
    cli.main(["diagnose", "--report-only", "--results-dir", str(tmp_path)])
    saved = json.loads(shipped.read_text())
    want = diagnosis.markdown(saved["runs"], saved["sources"])
    assert (folder / "diagnosis.md").read_text() == want
    assert want.splitlines()[0] in (tmp_path / "regimes.md").read_text()
    with pytest.raises(SystemExit) as e:
        cli.main(["diagnose", "--report-only", "--results-dir", str(tmp_path / "none")])
    assert "python -m ctx.experiments diagnose" in str(e.value) and "\n" not in str(e.value)
