"""What the mechanisms act on per regime (`ctx.experiments.mechanisms`), from a gallery."""

import pytest
from test_lessons_regimes import _fake_gallery

from ctx.analysis import predict
from ctx.data import NUM_CLASSES
from ctx.experiments import cli
from ctx.experiments import mechanisms as M
from ctx.experiments.diagnosis import bane_inputs, error_split
from ctx.experiments.error_kinds import KINDS
from ctx.experiments.gallery import load_gallery_model
from ctx.io import read_json
from ctx.metrics import ConfusionMatrix


def test_measures_every_shipped_run_on_its_split(tmp_path):
    _fake_gallery(tmp_path)
    d = M.regime_mechanisms(tmp_path, scenes=3)
    assert list(d) == ["default", "scarce"]
    for r in d.values():
        assert (r["phase"], r["split"], r["scenes"]) == ("tune", "val", 3)
        assert list(r["runs"]) == ["ce", "contextrast"]
    model, cfg = load_gallery_model(tmp_path, {"file": "scarce_contextrast.pt"})
    scenes = cfg.digit_scenes("val", 3)
    pred = predict(model, scenes.images)
    got = d["scarce"]["runs"]["contextrast"]
    cm = ConfusionMatrix(NUM_CLASSES)
    cm.update(pred, scenes.labels)
    assert got["miou"] == pytest.approx(cm.summary()["miou"])
    want = error_split(pred, scenes.labels)
    assert {k: got["errors"][k] for k in want} == pytest.approx(want)
    assert len(got["bane"]) == 4
    sizes = [tuple(s["size"]) for s in got["bane"]]
    assert got["bane"] == bane_inputs(pred, scenes.labels, sizes, cfg.k, cfg.max_negatives)


def _regime(errors_far: list[float], fill: list[float]) -> dict:
    stages = [
        {"errors_far_pct": e, "picks_far_pct": 0.0, "fill_pct": f}
        for e, f in zip(errors_far, fill, strict=True)
    ]
    errors = {
        "errors_per_image": 120.0,
        "rim_share_of_errors": 80.0,
        "digit_confusion_share": 40,
        "misread_digit_share": 25,
    }
    return {"split": "test", "runs": {"contextrast": {"errors": errors, "bane": stages}}}


def test_reading_follows_the_numbers():
    d = {
        "flat": _regime([4.9, 0.0, 0.0, 0.0], [10.0, 60.0, 90.0, 99.0]),
        "thick": _regime([12.5, 3.0, 0.0, 0.0], [0.0, 10.0, 40.0, 50.0]),
        "no_contextrast": {"split": "val", "runs": {}},
    }
    flat, thick = M.reading(d)
    assert flat.startswith(
        "flat (test): 120 error px per image, 80 % on the rims, 40 % a digit taken for another, "
        "25 % inside digits misread as a whole;"
    )
    assert "BANE's distance ranking acts at no stage (5/0/0/0 % of the errors at stages" in flat
    assert "random from stage 2 on" in flat
    assert "acts only at stage 1 (12/3/0/0 % of the errors at stages 1-4 lie deeper" in thick
    assert "BANE's own picks fill the negatives at every stage" in thick  # 50 % is not most


def test_cli_writes_the_section_and_the_report_includes_it(tmp_path):
    _fake_gallery(tmp_path / "g")
    results = tmp_path / "results"
    cli.main(["mechanisms", "--out", str(tmp_path / "g"), "--results-dir", str(results)])
    saved = read_json(results / "regimes" / "mechanisms.json")
    assert list(saved["regimes"]) == ["default", "scarce"]
    text = (results / "regimes" / "mechanisms.md").read_text()
    assert text.count("| default |") == 2 and text.count("| scarce |") == 2
    assert "## What the mechanisms act on in each regime" in (results / "regimes.md").read_text()


def test_cli_without_a_gallery_says_how_to_make_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["mechanisms", "--out", str(tmp_path / "none"), "--results-dir", str(tmp_path)])
    assert "ctx.experiments gallery" in str(e.value) and "\n" not in str(e.value)


def test_an_empty_gallery_gives_a_section_that_says_so():
    assert "No regime's runs are shipped yet" in M.markdown({})
    assert M.rows({}) == [] and M.reading({}) == []


def test_bane_summary_reads_the_stages_at_their_bounds():
    from ctx.experiments.diagnosis import bane_summary

    def stage(errors_far, picks_far, fill):
        return {"errors_far_pct": errors_far, "picks_far_pct": picks_far, "fill_pct": fill}

    at_bounds = bane_summary([stage(5.0, 1.0, 10.0), stage(0.5, 0.5, 50.0), stage(0, 0, 50.1)])
    assert at_bounds == {"ranks_at": [], "random_from": 3}
    assert bane_summary([stage(5.1, 0.2, 0.0), stage(30.0, 1.1, 20.0)]) == {
        "ranks_at": [1, 2],
        "random_from": None,
    }


def _pair(ce: tuple, cx: tuple) -> dict:
    """A regime's CE and Contextrast errors from (errors per image, digit for digit, digit for
    background, background for digit, inside misread digits), the kinds in px per image."""

    def errors(n, dd, db, bd, mis):
        shares = (100 * x / n for x in (dd, db, bd, mis))
        return {"errors_per_image": n, **dict(zip(KINDS, shares, strict=True))}

    return {
        "split": "test",
        "runs": {"ce": {"errors": errors(*ce)}, "contextrast": {"errors": errors(*cx)}},
    }


def test_error_changes_are_px_per_image_by_kind():
    d = {
        "scarce": _pair((190, 130, 40, 20, 100), (174, 114, 38, 22, 85)),
        "solo": {"split": "val", "runs": {}},
    }
    assert M.error_changes(d) == [
        "scarce (test): 190 → 174 error px per image (-16): digit for digit -16, "
        "digit for background -2, background for digit +2 (inside misread digits -15)."
    ]
    assert M.changes_reading(d).startswith("In every regime Contextrast's run takes fewer digits")
    assert "(-16 px per image, scarce)" in M.changes_reading(d)
    assert "by at most 2 px per image" in M.changes_reading(d)


def test_changes_reading_claims_recognition_only_when_every_regime_shows_it():
    gain = _pair((190, 130, 40, 20, 100), (174, 114, 38, 22, 85))
    edges = _pair((100, 50, 30, 20, 30), (90, 45, 24, 21, 28))  # digit/background move more
    text = M.changes_reading({"scarce": gain, "edgy": edges})
    assert text == (
        "Digit-for-digit errors change by -16/-5 px per image (scarce/edgy); those between a "
        "digit and the background by up to 6 (one seed pair per regime)."
    )
    more = _pair((100, 50, 30, 20, 30), (102, 52, 30, 20, 31))
    assert M.changes_reading({"scarce": gain, "worse": more}).startswith("Digit-for-digit")
    assert M.changes_reading({}) is None


def test_shipped_page_is_the_rendering_of_its_json_and_report_only_rebuilds_it(tmp_path, capsys):
    """`mechanisms --report-only` rewrites mechanisms.md from mechanisms.json, measuring
    nothing; the shipped page must be what the current reading makes of the shipped numbers."""
    from ctx.resources import project_root

    shipped = project_root() / "results" / "regimes"
    d = read_json(shipped / "mechanisms.json")["regimes"]
    assert (shipped / "mechanisms.md").read_text() == M.markdown(d) + "\n"
    (tmp_path / "regimes").mkdir()
    (tmp_path / "regimes" / "mechanisms.json").write_text((shipped / "mechanisms.json").read_text())
    cli.main(["mechanisms", "--report-only", "--results-dir", str(tmp_path)])
    assert (tmp_path / "regimes" / "mechanisms.md").read_text() == M.markdown(d) + "\n"
    assert "## What the mechanisms act on" in (tmp_path / "regimes.md").read_text()
    with pytest.raises(SystemExit) as e:
        cli.main(["mechanisms", "--report-only", "--results-dir", str(tmp_path / "none")])
    assert "python -m ctx.experiments mechanisms" in str(e.value) and "\n" not in str(e.value)
