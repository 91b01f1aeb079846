"""What the wrong pixels are (`ctx.experiments.error_kinds`): the kinds by hand and against a
flood-fill oracle, the paired statistics against scipy, and `error-kinds` on a tiny study's
final runs (measured, checked against the recorded test mIoU, retrained when gone)."""

import json
import math
import shutil

import pytest
import torch
from scipy import stats
from test_gallery import phase1, study  # noqa: F401 (the tiny study's fixtures)

from ctx.analysis import predict
from ctx.engine.checkpoint import load_model
from ctx.experiments import cli, regime_study
from ctx.experiments import error_kinds as E


def test_error_kinds_by_hand():
    labels = torch.tensor([[[0, 3, 3, 0], [0, 3, 3, 0], [7, 7, 0, 255]]])
    pred = torch.tensor([[[0, 5, 5, 0], [0, 5, 3, 1], [0, 7, 0, 2]]])
    # wrong: three pixels of the 3 taken for a 5 (digit for digit), one of the 7 taken for
    # background, one background pixel taken for a 1; 255 is ignored whatever its prediction.
    # The 3 is misread (3 of its 4 pixels are another digit); the 7 is not (half of it is
    # background, none of it another digit).
    k = E.error_kinds(pred, labels)
    assert k["digit_confusion_share"] == pytest.approx(60.0)
    assert k["digit_as_background_share"] == pytest.approx(20.0)
    assert k["background_as_digit_share"] == pytest.approx(20.0)
    assert k["misread_digit_share"] == pytest.approx(60.0)
    assert k["digit_rim_share"] == pytest.approx(100.0)  # every digit pixel touches background
    none = E.error_kinds(labels, labels)
    assert [none[x] for x in E.KINDS] == [0.0] * 4  # no errors: 0, not NaN


def test_digit_rim_share_counts_the_digit_pixels_near_an_edge():
    labels = torch.zeros(1, 9, 9, dtype=torch.long)
    labels[0, 1:8, 1:8] = 4  # a 7x7 digit: rings at distance 1, 2, 3, 4 of 24, 16, 8, 1 px
    assert E.error_kinds(labels, labels)["digit_rim_share"] == pytest.approx(100 * 40 / 49)


def test_misread_digits_are_8_connected_regions_within_one_image():
    labels = torch.zeros(2, 3, 3, dtype=torch.long)
    labels[0, 0, 0] = labels[0, 1, 1] = 2  # one region: the pixels touch at a corner
    labels[1, 0, 0] = 2  # another image: its own region
    pred = labels.clone()
    pred[0, 0, 0] = pred[1, 0, 0] = 4
    want = torch.zeros(2, 3, 3, dtype=torch.bool)
    want[1, 0, 0] = True  # image 0's 2 is half right: not misread
    assert torch.equal(E.misread_digits(pred, labels), want)


def _flood_misread(pred, labels):
    """The oracle: regions by breadth-first search over the 8 neighbours, in plain Python."""
    out = torch.zeros(labels.shape, dtype=torch.bool)
    b_, h, w = labels.shape
    seen = set()
    for b in range(b_):
        for i in range(h):
            for j in range(w):
                c = int(labels[b, i, j])
                if c == 0 or c == 255 or (b, i, j) in seen:
                    continue
                region, todo = [], [(i, j)]
                seen.add((b, i, j))
                while todo:
                    y, x = todo.pop()
                    region.append((y, x))
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            n = (b, y + dy, x + dx)
                            if 0 <= n[1] < h and 0 <= n[2] < w and n not in seen:
                                if int(labels[n]) == c:
                                    seen.add(n)
                                    todo.append(n[1:])
                other = sum(int(pred[b, y, x]) not in (0, c) for y, x in region)
                if 2 * other > len(region):
                    for y, x in region:
                        out[b, y, x] = True
    return out


@pytest.mark.parametrize("seed", range(5))
def test_misread_digits_match_a_flood_fill_and_the_kinds_add_up(seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (3, 7, 7), generator=g)
    labels[torch.rand(labels.shape, generator=g) < 0.05] = 255
    pred = torch.where(torch.rand(labels.shape, generator=g) < 0.5, labels.clamp(max=3), 0)
    pred = torch.where(
        torch.rand(labels.shape, generator=g) < 0.3,
        torch.randint(0, 4, labels.shape, generator=g),
        pred,
    )
    assert torch.equal(E.misread_digits(pred, labels), _flood_misread(pred, labels))
    k = E.error_kinds(pred, labels)
    kinds = ["digit_confusion_share", "digit_as_background_share", "background_as_digit_share"]
    assert sum(k[x] for x in kinds) == pytest.approx(100.0)
    assert (
        k["misread_digit_share"]
        <= k["digit_confusion_share"] + k["digit_as_background_share"] + 1e-9
    )


def _run(variant, seed, n, digit, to_bg, from_bg, misread):
    """A measured run: n error px per image, the kinds in px per image."""
    shares = [100 * x / n for x in (digit, to_bg, from_bg, misread)]
    return {
        "variant": variant,
        "seed": seed,
        "errors_per_image": n,
        **dict(zip(E.KINDS, shares, strict=True)),
    }


def test_paired_kinds_are_px_per_image_differences_with_a_t_interval():
    runs = [
        _run("ce", 0, 100, 60, 25, 15, 40),
        _run("contextrast", 0, 90, 50, 25, 15, 32),
        _run("ce", 1, 110, 70, 25, 15, 50),
        _run("contextrast", 1, 104, 62, 26, 16, 44),
        _run("ce", 2, 120, 80, 25, 15, 60),  # no partner: left out
    ]
    s = E.paired_kinds(runs)
    assert s["n"] == 2
    assert s["errors"]["ce"] == pytest.approx(105) and s["errors"]["contextrast"] == pytest.approx(
        97
    )
    assert s["errors"]["mean"] == pytest.approx(-8)  # -10, -6
    half = stats.t.ppf(0.975, 1) * stats.tstd([-10, -6]) / math.sqrt(2)
    assert (s["errors"]["lo"], s["errors"]["hi"]) == pytest.approx((-8 - half, -8 + half))
    assert s["digit_confusion_share"]["mean"] == pytest.approx(-9)  # -10, -8
    assert s["background_as_digit_share"]["mean"] == pytest.approx(0.5)
    assert s["misread_digit_share"]["mean"] == pytest.approx(-7)


def _stat(mean, lo, hi):
    return {"ce": 100.0, "contextrast": 100.0 + mean, "mean": mean, "lo": lo, "hi": hi}


def _stats(digit, to_bg, from_bg, misread=(-5, -8, -2)):
    return {
        "n": 5,
        "errors": _stat(-6, -9, -3),
        "digit_confusion_share": _stat(*digit),
        "digit_as_background_share": _stat(*to_bg),
        "background_as_digit_share": _stat(*from_bg),
        "misread_digit_share": _stat(*misread),
    }


def test_reading_and_summary_follow_the_intervals():
    recognition = _stats((-6, -9, -3), (0.1, -1, 1.2), (-0.04, -0.5, 0.3))
    line = E.reading({"scarce": recognition})[0]
    assert line == (
        "scarce (5 pairs): 100 → 94 error px per image (-6.0 [-9.0, -3.0]): fewer digits taken "
        "for other digits and errors inside misread digits; no clear change in digit pixels "
        "taken for background or background taken for digits."
    )
    assert E._cell(recognition["background_as_digit_share"]) == "+0.0 [-0.5, +0.3]"  # no -0.0
    text = E.summary({"scarce": recognition})
    assert text.startswith("In every measured regime (scarce)") and "(-6.0 px per image" in text
    assert "100 % of the whole cut" in text and "clear of zero" not in text
    # the digit pixels lost to background fall too, clearly but less than the digit cut
    edges = _stats((-6, -9, -3), (-3, -5, -1), (0, -1, 1))
    line = E.reading({"x": edges})[0]
    assert "fewer digits taken for other digits, digit pixels taken for background and" in line
    text = E.summary({"scarce": recognition, "x": edges})
    assert text.startswith("In every measured regime (scarce/x)")
    assert (
        "on average by at most 0.1/3.0 px per image (clear of zero in x: digit pixels taken for "
        "background -3.0)" in text
    )
    bigger = _stats((-6, -9, -3), (-7, -9, -5), (0, -1, 1))  # the edges move more than the digits
    assert E.summary({"x": bigger}) == (
        "Digit-for-digit errors change by -6.0 px per image (x); the errors between a digit and "
        "the background on average by up to 7.0 (clear of zero in x: digit pixels taken for "
        "background -7.0)."
    )
    across = _stats((-2, -5, 1), (0, -1, 1), (0, -1, 1))  # the digit interval reaches above zero
    assert E.summary({"x": across}).startswith("Digit-for-digit")
    more = _stats((-6, -9, -3), (0, -1, 1), (2, 1, 3))
    assert "more background taken for digits" in E.reading({"x": more})[0]
    assert E.summary({}) is None


@pytest.fixture
def finals(study, monkeypatch):  # noqa: F811
    """The tiny study with its seed-0 final CE and Contextrast runs of `default` trained."""
    runs, results = study
    regime_study.study(["default"], results, runs, "CMD", max_jobs=2)
    monkeypatch.setattr(E, "REGIMES", regime_study.REGIMES)
    monkeypatch.setattr(E, "FINAL_SEEDS", (0,))
    monkeypatch.setattr(E, "TEST_SCENES", 4)  # the tiny study scores 4 test scenes (_test)
    return runs, results


def _cli(runs, results, *extra):
    cli.main(["error-kinds", "--results-dir", str(results), "--runs-dir", str(runs), *extra])
    return json.loads((results / "regimes" / "error_kinds.json").read_text())


def test_cli_measures_the_final_runs_and_checks_their_miou(finals):
    runs, results = finals
    saved = _cli(runs, results)
    rows = json.loads((results / "regimes.json").read_text())["runs"]
    measured = saved["regimes"]["default"]
    assert [(r["variant"], r["seed"]) for r in measured] == [("ce", 0), ("contextrast", 0)]
    scenes = regime_study.REGIMES["default"].config().digit_scenes("test", 4)
    for m, row in zip(measured, rows, strict=True):
        job = regime_study.Job("final", "default", m["variant"], 0, row["alpha"], row["warmup"])
        model, _ = load_model(runs / job.name)
        pred = predict(model, scenes.images)
        want = E.error_kinds(pred, scenes.labels)
        assert {k: m[k] for k in want} == pytest.approx(want)
        assert m["miou"] == pytest.approx(row["miou"]) and m["remade"] is False
    assert saved["paired"]["default"]["n"] == 1
    assert saved["command"].startswith("python -m ctx.experiments error-kinds")
    assert "## Which errors the PA term removes" in (results / "regimes.md").read_text()


def test_the_rows_measured_at_finish_need_no_run_folder(finals):
    """The study records each final run's error kinds as it finishes: `error-kinds` reads them
    from the rows, the same as measured from the checkpoints, with no run folder left."""
    runs, results = finals
    path = results / "regimes.json"
    recorded = path.read_text()
    rows = json.loads(recorded)["runs"]
    assert all(set(E.KINDS) | {"errors_per_image"} <= set(r["error_kinds"]) for r in rows)
    at_finish = _cli(runs, results)["regimes"]["default"]
    assert all(m["at_finish"] and not m["remade"] for m in at_finish)
    path.write_text(json.dumps({"runs": [_before_error_kinds(r) for r in rows]}))
    from_folders = _cli(runs, results)["regimes"]["default"]
    assert not any(m["at_finish"] for m in from_folders)
    keys = (*E.KINDS, "digit_rim_share", "miou", "errors_per_image")
    for a, b in zip(at_finish, from_folders, strict=True):
        assert {k: a[k] for k in keys} == pytest.approx({k: b[k] for k in keys})
    path.write_text(recorded)
    shutil.rmtree(runs / "final")
    assert _cli(runs, results)["regimes"]["default"] == at_finish
    assert "by the study on each final run as it finished" in (results / "regimes.md").read_text()


def _before_error_kinds(row: dict) -> dict:
    """A results row as the study wrote it before it measured error kinds at finish."""
    return {k: v for k, v in row.items() if k != "error_kinds"}


def test_a_run_that_is_not_its_row_or_is_gone_is_refused_or_retrained(finals, tmp_path):
    runs, results = finals
    path = results / "regimes.json"
    data = json.loads(path.read_text())
    data["runs"] = [_before_error_kinds(r) for r in data["runs"]]  # read from the folders
    data["runs"][0]["miou"] += 1.0
    path.write_text(json.dumps(data))
    with pytest.raises(SystemExit) as e:
        _cli(runs, results)
    assert "not the run that row records" in str(e.value) and "\n" not in str(e.value)
    data["runs"][0]["miou"] -= 1.0
    path.write_text(json.dumps(data))
    first = _cli(runs, results)["regimes"]["default"]
    shutil.rmtree(next((runs / "final" / "default").glob("ce_seed0")))
    with pytest.raises(SystemExit) as e:
        _cli(runs, results)
    assert "--remake-dir" in str(e.value)
    again = _cli(runs, results, "--remake-dir", str(tmp_path / "remade"))["regimes"]["default"]
    assert again[0]["remade"] is True
    assert {k: again[0][k] for k in E.KINDS} == pytest.approx({k: first[0][k] for k in E.KINDS})


def test_updating_some_regimes_keeps_the_others(finals):
    runs, results = finals
    saved = _cli(runs, results)
    saved["regimes"]["crowded"] = saved["regimes"]["default"]
    (results / "regimes" / "error_kinds.json").write_text(json.dumps(saved))
    kept = _cli(runs, results, "--regimes", "default")
    assert list(kept["regimes"]) == ["default", "crowded"]
    assert list(_cli(runs, results)["regimes"]) == ["default"]  # no --regimes: all measured anew


def test_provenance_says_whence_the_measured_runs_came():
    finish = {"remade": False, "at_finish": True}
    folder, remade = {"remade": False, "at_finish": False}, {"remade": True, "at_finish": False}
    assert E.provenance({"x": [finish, finish]}).startswith("Measured by the study on each final")
    mixed = E.provenance({"x": [finish, folder], "y": [remade, {"remade": False}]})
    assert mixed == (
        "Measured on the study's final runs, 1 of them as each finished (its row's "
        "`error_kinds`), the others from their checkpoints, 1 of them retrained from their "
        f"recorded configs (`--remake-dir`), each reproducing its row's test mIoU to "
        f"{E.MIOU_CHECK} points."
    )
    assert "as each finished" not in E.provenance({"x": [folder]})


def test_markdown_names_the_regimes_not_measured_yet():
    s = _stats((-6, -9, -3), (0, -1, 1), (0, -1, 1))
    runs = {"default": [{"remade": True}, {"remade": False}]}
    text = E.markdown({"default": s}, runs, "CMD", missing=["scarce"])
    assert "1 of them retrained from their recorded configs" in text and "Reproduce: `CMD`" in text
    assert "Not measured yet, though their five test pairs are in: scarce" in text
    assert "| default | 5 | -6.0 [-9.0, -3.0] |" in text
    assert "No regime has" in E.markdown({}, {}, "CMD")


def test_shipped_error_kinds_are_consistent_with_their_runs_and_the_study():
    """results/regimes/error_kinds.*: the paired stats recomputed from the shipped per-run kinds,
    the page rendered from them, every run's mIoU that of its row in results/regimes.json."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "results"
    saved = json.loads((root / "regimes" / "error_kinds.json").read_text())
    finals = json.loads((root / "regimes.json").read_text())["runs"]
    rows = {(r["regime"], r["variant"], r["seed"]): r["miou"] for r in finals}
    for regime, runs in saved["regimes"].items():
        got, want = E.paired_kinds(runs), saved["paired"][regime]
        assert got["n"] == want["n"]
        assert all(got[q] == pytest.approx(want[q]) for q in E.WORDS)
        assert all(r["miou"] == pytest.approx(rows[regime, r["variant"], r["seed"]]) for r in runs)
    missing = [r for r in E.complete(finals) if r not in saved["regimes"]]
    page = E.markdown(saved["paired"], saved["regimes"], saved["command"], missing) + "\n"
    assert (root / "regimes" / "error_kinds.md").read_text() == page


def test_shipped_page_is_the_rendering_of_its_json_and_report_only_rebuilds_it(tmp_path):
    """`error-kinds --report-only` rewrites error_kinds.md from error_kinds.json, measuring
    nothing, and names a regime whose five test pairs are in but unmeasured."""
    from ctx.resources import project_root

    results = project_root() / "results"
    saved = json.loads((results / "regimes" / "error_kinds.json").read_text())
    finals = regime_study.load_results(results / "regimes.json")["runs"]
    missing = [r for r in E.complete(finals) if r not in saved["regimes"]]
    want = E.markdown(saved["paired"], saved["regimes"], saved["command"], missing) + "\n"
    assert (results / "regimes" / "error_kinds.md").read_text() == want
    (tmp_path / "regimes").mkdir()
    (tmp_path / "regimes" / "error_kinds.json").write_text(json.dumps(saved))
    (tmp_path / "regimes.json").write_text((results / "regimes.json").read_text())
    cli.main(["error-kinds", "--report-only", "--results-dir", str(tmp_path)])
    assert (tmp_path / "regimes" / "error_kinds.md").read_text() == want
    one = {**saved, "regimes": {"scarce": saved["regimes"]["scarce"]}}
    one["paired"] = {"scarce": saved["paired"]["scarce"]}
    (tmp_path / "regimes" / "error_kinds.json").write_text(json.dumps(one))
    cli.main(["error-kinds", "--report-only", "--results-dir", str(tmp_path)])
    page = (tmp_path / "regimes" / "error_kinds.md").read_text()
    assert "Not measured yet, though their five test pairs are in: default," in page
    assert "## Which errors the PA term removes" in (tmp_path / "regimes.md").read_text()
    with pytest.raises(SystemExit) as e:
        cli.main(["error-kinds", "--report-only", "--results-dir", str(tmp_path / "none")])
    assert "python -m ctx.experiments error-kinds" in str(e.value) and "\n" not in str(e.value)
