"""Notebook 07's helpers (ctx.lessons.regimes): the gain map from validation or test numbers, the
sentences read from the numbers, fusion coverage by hand, and RegimeCompare driven headlessly."""

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from scipy import stats
from test_regime_study import _full_grid, _tuning_rows

from ctx.analysis import predict, scene_scores
from ctx.data import NUM_CLASSES
from ctx.engine.config import TrainConfig
from ctx.experiments import error_kinds, gallery, mechanisms
from ctx.experiments.regime_study import FINAL_SEEDS
from ctx.io import save_checkpoint, write_json
from ctx.lessons import regimes as R
from ctx.model import build_model

CE = {0: 60.0, 1: 50.0}
BEST = {0: 62.0, 1: 51.0}  # alpha 0.05, warm-up 0.5: +2.0 and +1.0 over CE


def _tuning(regime="default"):
    grid = _full_grid(40.0)
    grid[(0.05, 0.5)] = BEST
    return _tuning_rows(regime, CE, grid)


def _finals(regime, diffs):
    rows = []
    for s, d in enumerate(diffs):
        rows.append({"regime": regime, "variant": "ce", "seed": s, "miou": 70.0 + s})
        rows.append({"regime": regime, "variant": "contextrast", "seed": s, "miou": 70.0 + s + d})
    return rows


@pytest.fixture
def results(tmp_path):
    write_json({"runs": _tuning()}, tmp_path / "regimes" / "tuning.json")
    return tmp_path


def test_verdict_reads_the_interval():
    assert R.verdict(0.1, 2.0).endswith("a gain")
    assert "a candidate, not yet a gain" in R.verdict(0.1, 2.0, selected=True)
    assert R.verdict(-0.1, 2.0, selected=True).endswith("within noise")
    assert R.verdict(-2.0, -0.1).endswith("a loss")
    assert R.verdict(-0.1, 2.0).endswith("within noise")
    assert R.verdict(math.nan, math.nan).startswith("one seed")


def test_interval_kind_and_short_verdict_agree_with_the_sentence():
    cases = {(0.1, 2.0): "gain", (-2.0, -0.1): "loss", (-0.1, 2.0): "noise", (0.0, 1.0): "noise"}
    for (lo, hi), kind in cases.items():
        assert R.interval_kind(lo, hi) == kind
        assert R.verdict(lo, hi).endswith(": " + R.verdict(lo, hi, short=True))
    assert R.interval_kind(0.1, 2.0, selected=True) == "candidate"
    assert R.interval_kind(-2.0, -0.1, selected=True) == "loss"
    assert R.interval_kind(math.nan, 1.0) == "none"
    assert R.verdict(-2.0, -0.1, short=True) == "a loss"


def test_gain_map_from_validation_when_no_test_runs(results):
    rows = {r["regime"]: r for r in R.gain_map(results)}
    d = rows["default"]
    assert d["source"] == "validation" and d["label"] == "validation, tuning runs, 2 seeds"
    assert d["diffs"] == [2.0, 1.0] and d["mean"] == 1.5
    half = stats.t.ppf(0.975, 1) * stats.tstd([2.0, 1.0]) / math.sqrt(2)
    assert (d["lo"], d["hi"]) == pytest.approx((1.5 - half, 1.5 + half))
    assert rows["scarce"]["source"] is None and "0 of 14" in rows["scarce"]["status"]
    text = R.map_reading(list(rows.values()))
    assert text[0].startswith("default (validation, tuning runs, 2 seeds): +1.50 points")
    assert "α = 0.05, warm-up 0.5" in text[0] and text[0].endswith("within noise.")
    assert R.plot_gain_map(list(rows.values())).axes[0].get_legend().get_texts()[0].get_text() == (
        "validation, tuning runs, 2 seeds"
    )


def test_gain_map_from_test_once_every_final_seed_is_in(results):
    n = len(FINAL_SEEDS)
    write_json({"runs": _finals("default", [1.0] * (n - 1))}, results / "regimes.json")
    d = R.gain_map(results)[0]
    assert d["source"] == "validation" and d["finals"] == n - 1  # partial: still validation
    assert f"{n - 1} of {n} test pairs in so far" in R.map_reading([d])[0]
    write_json({"runs": _finals("default", [1.0, 2.0, 1.5, 1.0, 2.0])}, results / "regimes.json")
    rows = R.gain_map(results)
    d = rows[0]
    assert d["source"] == "test" and d["label"] == f"test, final runs, {n} seeds"
    assert d["mean"] == pytest.approx(1.5) and d["lo"] > 0
    assert R.map_reading([d])[0].endswith("a gain.")
    summary = R.slide_summary(rows, R.load_diagnosis())
    assert summary[0].startswith(f"Test split (final runs, {n} seeds): default +1.50")
    assert summary[-1].startswith(
        "Claim: Contextrast beats CE on the test scenes of default (+1.50)."
    )
    assert R.plot_gain_map(rows).axes[0].get_legend().get_texts()[0].get_text().startswith("test")


def test_slide_summary_without_test_runs_claims_no_gain(results):
    summary = R.slide_summary(R.gain_map(results), R.load_diagnosis())
    assert summary[0] == f"Test split ({len(FINAL_SEEDS)} seeds, paired): no regime measured yet."
    assert "default +1.50" in summary[1] and summary[1].endswith("every interval includes zero.")
    assert summary[-1].startswith("Claim: no regime shows a test-split gain yet.")


def test_diagnosis_sentences_follow_the_numbers():
    diag = R.load_diagnosis()
    text = R.diagnosis_reading(diag)
    ce = diag["runs"]["ce"]
    assert f"{ce['errors']['rim_share_of_errors']:.0f} % of CE's test errors" in text[0]
    assert text[0].endswith("does not move errors off the rims.")
    diag["runs"]["contextrast"]["errors"]["rim_share_of_errors"] = 50.0
    assert R.diagnosis_reading(diag)[0].endswith("by more than 2 points.")
    bane = diag["runs"]["contextrast"]["bane"]
    for key in ("errors_far_pct", "picks_far_pct"):
        assert "/".join(f"{s[key]:.1f}" for s in bane) in text[2]
    assert text[2].startswith("BANE's distance ranking acts")
    assert len(R.diagnosis_rows(diag)) == 15 and len(R.bane_rows(diag)) == 4
    assert len(R.plot_diagnosis(diag).axes) == 2


def test_mechanism_verdicts_flip_with_the_numbers():
    diag = R.load_diagnosis()
    rows = {r["mechanism"]: r for r in R.mechanism_rows(diag, [98.0, 98.0, 98.0])}
    where = R.ranking_where(diag["runs"]["contextrast"]["bane"])
    assert rows["BANE"]["acts?"].startswith(f"ranks {where}" if where != "at no stage" else "no")
    assert rows["fusion"]["acts?"] == "yes"
    for s in diag["runs"]["contextrast"]["bane"]:
        s["errors_far_pct"] = 1.0
    rows = {r["mechanism"]: r for r in R.mechanism_rows(diag, [98.0, 98.0, 98.0])}
    assert rows["BANE"]["acts?"].startswith("no ranking (errors with D > 1 ≤ 5 %)")
    for s in diag["runs"]["contextrast"]["bane"]:
        s["errors_far_pct"] = 30.0
    rows = {r["mechanism"]: r for r in R.mechanism_rows(diag, [10.0, 98.0, 98.0])}
    assert rows["BANE"]["acts?"].startswith("ranks at every stage")
    assert rows["fusion"]["acts?"] == "little"


def test_fusion_coverage_by_hand():
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[0, 0:2, 0:2] = 3  # a small digit: at 8x8 yes, at 2x2 (nearest: rows/cols 0, 4) yes
    labels[1, 1, 1] = 4  # one pixel: at 8x8 yes, at 2x2 no
    # batch of both: stage 8x8 has {0, 3, 4}, last stage 2x2 has {0, 3}: 2 of 3
    assert R.fusion_coverage(labels, [(8, 8), (2, 2)], batch=2) == pytest.approx([200 / 3])
    # one scene a batch: {0,3} -> {0,3} (2 of 2), {0,4} -> {0} (1 of 2): 3 of 4
    assert R.fusion_coverage(labels, [(8, 8), (2, 2)], batch=1) == pytest.approx([75.0])


def _fake_gallery(folder):
    """Two regimes of tiny untrained runs (different scenes and weights), as the export ships."""
    runs = []
    for i, (regime, digits) in enumerate((("default", 2), ("scarce", 4))):
        cfg = TrainConfig(
            image_size=16,
            widths=(4, 4, 8, 8),
            embed_dim=4,
            val_scenes=4,
            min_digits=digits,
            max_digits=digits,
            device="cpu",
        )
        for j, variant in enumerate(R.RUNS):
            torch.manual_seed(10 * i + j)
            model = build_model(cfg.model_config(), NUM_CLASSES)
            src = folder / "src" / f"{regime}_{variant}.pt"
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "config": asdict(cfg),
                    "num_classes": NUM_CLASSES,
                    "step": 1,
                    "max_steps": 1,
                },
                src,
            )
            dst = gallery.export_weights(src, folder / f"{regime}_{variant}.pt")
            runs.append(
                {
                    "regime": regime,
                    "variant": variant,
                    "phase": "tune",
                    "setting": {"alpha": 0.05, "warmup": 0.5} if j else None,
                    "steps": 1,
                    "file": str(dst),
                    "split": "val",
                    "miou": 5.0 + j,
                    "scenes": 4,
                    "check": f"python -m ctx.evaluate {dst} --split val",
                }
            )
    write_json({"runs": runs, "skipped": {"crowded": "why"}}, folder / "manifest.json")


def test_regime_compare_follows_its_controls(tmp_path):
    _fake_gallery(tmp_path)
    w = R.RegimeCompare(tmp_path, scenes=3)
    assert w.result["regime"] == "default" and w.result["split"] == "val" and w.draws == 1
    assert "wrong pixels" in [t.get_text() for t in w.figure.axes[-1].get_legend().get_texts()]
    w.controls["regime"].value = "scarce"
    assert w.result["regime"] == "scarce" and w.draws == 2
    model, cfg = gallery.load_gallery_model(tmp_path, {"file": "scarce_contextrast.pt"})
    scenes = cfg.digit_scenes("val", 3)
    w.controls["index"].value = 2
    pred = predict(model, scenes.images[2:3])[0]
    assert w.result["index"] == 2
    assert w.result["scores"]["contextrast"] == scene_scores(pred, scenes.labels[2], NUM_CLASSES)
    assert w.result["wrong"]["contextrast"] == int((pred != scenes.labels[2]).sum())
    assert "Contextrast (tune run, 1 steps): 6.00 % mIoU on all 4 val scenes" in w.result["text"]
    w.controls["errors"].value = False
    texts = [t.get_text() for t in w.figure.axes[-1].get_legend().get_texts()]
    assert "wrong pixels" not in texts and w.draws == 4
    assert w.result["wrong"]["contextrast"] == int((pred != scenes.labels[2]).sum())


def test_shipped_runs_table(tmp_path):
    _fake_gallery(tmp_path)
    rows, skipped = R.shipped_runs(tmp_path)
    assert [(r["regime"], r["run"], r["setting"]) for r in rows] == [
        ("default", "ce", "–"),
        ("default", "contextrast", "α=0.05, w=0.5"),
        ("scarce", "ce", "–"),
        ("scarce", "contextrast", "α=0.05, w=0.5"),
    ]
    assert skipped == {"crowded": "why"} and rows[1]["mIoU %"] == 6.0
    assert rows[0]["source"] == "study run"
    assert [r["regime"] for r in R.regime_rows()][:2] == ["default", "scarce"]


def test_regime_compare_needs_a_gallery(tmp_path):
    with pytest.raises(FileNotFoundError, match="ctx.experiments gallery"):
        R.RegimeCompare(tmp_path)
    write_json({"runs": [], "skipped": {}}, tmp_path / "manifest.json")
    with pytest.raises(ValueError, match="ships no runs"):
        R.RegimeCompare(tmp_path)


def test_shipped_manifest_matches_its_files():
    folder = R.gallery_dir()
    if not (folder / "manifest.json").exists():
        pytest.skip("no gallery shipped")
    m = json.loads((folder / "manifest.json").read_text())
    for e in m["runs"]:
        assert e["file"] == f"data/regimes/{e['regime']}_{e['variant']}.pt"
        assert (folder / f"{e['regime']}_{e['variant']}.pt").exists()
        assert e["split"] == {"tune": "val", "final": "test"}[e["phase"]]
        cfg = torch.load(folder / f"{e['regime']}_{e['variant']}.pt", weights_only=True)["config"]
        assert not Path(cfg["out"]).is_absolute()


def test_controls_pair_every_comparison_by_seed(tmp_path):
    path = tmp_path / "regimes.json"
    diffs = [1.0, 2.0, 1.5, 1.0, 2.0]  # Contextrast − CE
    runs = _finals("scarce", diffs)
    assert R.control_rows(tmp_path) == (None, [])  # no results file yet
    write_json({"runs": runs}, path)
    assert R.control_rows(tmp_path) == (None, [])  # no default regime chosen yet
    assert "not chosen yet" in R.control_reading(None, [])[0]
    write_json({"default_regime": "scarce", "runs": runs[:-1]}, path)  # 4 of 5 Contextrast
    assert R.control_rows(tmp_path) == ("scarce", [])
    assert "not all in yet" in R.control_reading("scarce", [])[0]
    cx = {r["seed"]: r["miou"] for r in runs if r["variant"] == "contextrast"}
    ccl = [0.5, -0.5, 0.0, 1.0, 0.0]  # ccl − Contextrast per seed: mean +0.2
    ccl_rows = [
        {"regime": "scarce", "variant": "ccl", "seed": s, "miou": cx[s] + d}
        for s, d in enumerate(ccl)
    ]
    ce_time = [  # 4 of 5 seeds: not compared yet
        {"regime": "scarce", "variant": "ce_time", "seed": s, "miou": 70.0}
        for s in range(len(FINAL_SEEDS) - 1)
    ]
    write_json({"default_regime": "scarce", "runs": runs + ccl_rows + ce_time}, path)
    regime, rows = R.control_rows(tmp_path)
    assert regime == "scarce"
    assert [r["comparison"] for r in rows] == ["Contextrast − CE", "ccl − CE", "Contextrast − ccl"]
    by = {r["comparison"]: r for r in rows}
    assert by["Contextrast − CE"]["diffs"] == pytest.approx(diffs)
    assert by["ccl − CE"]["diffs"] == pytest.approx(
        [d + c for d, c in zip(diffs, ccl, strict=True)]
    )
    half = stats.t.ppf(0.975, 4) * stats.tstd(ccl) / math.sqrt(5)
    got = by["Contextrast − ccl"]
    assert got["diffs"] == pytest.approx([-c for c in ccl])
    assert got["mean"] == pytest.approx(-0.2)
    assert (got["lo"], got["hi"]) == pytest.approx((-0.2 - half, -0.2 + half))
    text = R.control_reading(regime, rows)
    assert text[2].startswith("Contextrast − ccl (what BANE's negatives add over random ones")
    assert text[2].endswith("over 5 seeds: the interval includes zero: within noise.")
    assert text[0].endswith("the interval lies above zero: a gain.")
    bullets = R.slide_summary([], R.load_diagnosis(), (regime, rows))
    controls = next(b for b in bullets if b.startswith("Controls in scarce (test, paired): "))
    assert "Contextrast − CE" not in controls  # the map's bullet already says it
    assert "; Contextrast − ccl -0.20 [" in controls and controls.endswith("]: within noise.")
    assert not any(b.startswith("Controls") for b in R.slide_summary([], R.load_diagnosis()))
    fig = R.plot_controls(regime, rows)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["Contextrast − ccl", "ccl − CE", "Contextrast − CE"]  # first on top


def _mech(**far):
    return {
        regime: {
            "runs": {
                "contextrast": {
                    "bane": [
                        {"errors_far_pct": v, "picks_far_pct": 0.0, "fill_pct": 0.0} for v in values
                    ]
                }
            }
        }
        for regime, values in far.items()
    }


def test_bane_across_regimes_names_where_the_ranking_acts():
    flat = _mech(default=[0.1, 0.0], scarce=[4.0, 0.0])
    text = R.bane_across_regimes(flat)
    assert text.endswith(": default at no stage (0/0 %); scarce at no stage (4/0 %).")
    text = R.bane_across_regimes(_mech(default=[12.6, 1.5], res128=[38.7, 13.2]))
    assert text == (
        "BANE across regimes: its distance ranking acts where more than 5 % of the errors lie "
        "deeper than the rim (D > 1; stages 1-4 in brackets): default only at stage 1 (13/2 %); "
        "res128 at every stage (39/13 %)."
    )
    assert "no shipped Contextrast run" in R.bane_across_regimes({"x": {"runs": {"ce": {}}}})
    bullets = R.slide_summary([], R.load_diagnosis(), mech=flat)
    assert R.bane_across_regimes(flat) in bullets
    assert not any(b.startswith("BANE across") for b in R.slide_summary([], R.load_diagnosis()))


def test_shipped_mechanisms_cover_the_shipped_gallery():
    mech = R.load_mechanisms()
    manifest = gallery.read_manifest(R.gallery_dir())
    assert set(mech) == {e["regime"] for e in manifest["runs"]}
    for e in manifest["runs"]:  # measured on the split the gallery scores each run on
        assert mech[e["regime"]]["split"] == e["split"]
        assert mech[e["regime"]]["runs"][e["variant"]]["miou"] == pytest.approx(e["miou"], abs=0.01)


def _kinds(n, digit, to_bg, from_bg, misread):
    """Errors of one run: n px per image, the kinds in px per image."""
    shares = [100 * x / n for x in (digit, to_bg, from_bg, misread)]
    return {"errors_per_image": n, **dict(zip(mechanisms.KINDS, shares, strict=True))}


def test_slide_reads_the_error_kinds_when_the_pairs_are_shipped():
    bane = [{"errors_far_pct": 0.1, "picks_far_pct": 0.1, "fill_pct": 0.0}]
    mech = {
        "scarce": {
            "split": "test",
            "runs": {
                "ce": {"errors": _kinds(190, 130, 40, 20, 100), "bane": bane},
                "contextrast": {"errors": _kinds(174, 114, 38, 22, 85), "bane": bane},
            },
        }
    }
    bullets = R.slide_summary([], R.load_diagnosis(), mech=mech)
    assert f"Error kinds (seed 0): {mechanisms.changes_reading(mech)}" in bullets
    assert "in every shipped regime its run takes fewer digits for other digits;" in bullets[-1]
    mech["scarce"]["runs"]["contextrast"]["errors"] = _kinds(174, 131, 23, 20, 100)
    bullets = R.slide_summary([], R.load_diagnosis(), mech=mech)
    assert "fewer digits for other digits" not in bullets[-1]  # the cut is at the edges now
    want = R.ranking_where(R.load_diagnosis()["runs"]["contextrast"]["bane"])
    assert bullets[-1].endswith(f"BANE's distance ranking acts {want}.")
    plain = R.slide_summary([], R.load_diagnosis(), mech=_mech(default=[0.1]))
    assert not any(b.startswith("Error kinds") for b in plain)


def _paired(digit_hi: float, edge_lo: float) -> dict:
    """error_kinds.paired_kinds-like stats: digit-for-digit -6 [-9, digit_hi], the two
    digit/background kinds 0 [edge_lo, 1]."""
    stat = lambda m, lo, hi: {"ce": 100.0, "contextrast": 100 + m, "mean": m, "lo": lo, "hi": hi}  # noqa: E731
    return {
        "n": 5,
        "errors": stat(-6, -9, -3),
        "digit_confusion_share": stat(-6, -9, digit_hi),
        "digit_as_background_share": stat(0, edge_lo, 1),
        "background_as_digit_share": stat(0, edge_lo, 1),
        "misread_digit_share": stat(-5, -8, -2),
    }


def test_slide_prefers_the_five_seed_error_kinds():
    kinds = {"scarce": _paired(-3, -1), "crowded": _paired(-3, -1)}
    bullets = R.slide_summary([], R.load_diagnosis(), kinds=kinds)
    assert (
        f"Error kinds ({len(FINAL_SEEDS)} seeds, paired): {error_kinds.summary(kinds)}" in bullets
    )
    assert (
        "over 5 seeds its gain is fewer digits taken for other digits (scarce, crowded);"
        in bullets[-1]
    )
    unclear = {"scarce": _paired(1, -1)}  # the digit-for-digit interval reaches above zero
    assert "fewer digits" not in R.slide_summary([], R.load_diagnosis(), kinds=unclear)[-1]
    assert error_kinds.recognition(kinds) and not error_kinds.recognition(unclear)


def test_post_hoc_reading_waits_then_reads_the_paired_interval(tmp_path):
    runs = _finals("res128", [1.0, 2.0, 1.5, 1.0, 2.0])
    cx = {r["seed"]: r["miou"] for r in runs if r["variant"] == "contextrast"}
    ccl = [{"regime": "res128", "variant": "ccl", "seed": s, "miou": cx[s] - 1.0} for s in cx]
    write_json({"default_regime": "scarce", "runs": runs + ccl[:3]}, tmp_path / "regimes.json")
    (text,) = R.post_hoc_reading(tmp_path)
    assert text.startswith("res128, post hoc: Contextrast − ccl (what BANE's negatives add")
    assert text.endswith("waits for its runs, 5 of 5 Contextrast and 3 of 5 ccl.")
    for s, r in enumerate(ccl):
        r["miou"] -= 0.1 * s  # differences 1.0, 1.1, ..., 1.4: mean 1.2, sd 0.158
    write_json({"default_regime": "scarce", "runs": runs + ccl}, tmp_path / "regimes.json")
    (text,) = R.post_hoc_reading(tmp_path)
    half = stats.t.ppf(0.975, 4) * stats.tstd([1.0, 1.1, 1.2, 1.3, 1.4]) / math.sqrt(5)
    assert f"+1.20 points, 95 % interval [{1.2 - half:+.2f}, {1.2 + half:+.2f}] over 5" in text
    assert text.endswith("the interval lies above zero: a gain.")
    write_json({"default_regime": "res128", "runs": runs + ccl}, tmp_path / "regimes.json")
    assert R.post_hoc_reading(tmp_path) == []  # the default's controls are the protocol's own
