"""The regime study: its selection rules on hand-made rows, the paired interval against scipy,
and the whole resumable pipeline on tiny regimes."""

import json

import pytest
import torch
from scipy import stats

from ctx.experiments import regime_reference, regime_report, regime_study
from ctx.experiments.regime_study import Job, choose_default, chosen_setting, eligible, paired
from ctx.experiments.regimes import REGIMES, Regime, regime_config


def _tuning_rows(regime, ce, grid, device="cpu", seconds=300.0):
    """Rows of a complete tuning: ce {seed: val}, grid {(alpha, warmup): {seed: val}}."""
    rows = [
        {
            "phase": "tune",
            "regime": regime,
            "variant": "ce",
            "seed": s,
            "alpha": None,
            "warmup": None,
            "val_miou": v,
            "device": device,
            "train_cpu_seconds": seconds,
        }
        for s, v in ce.items()
    ]
    for (a, w), vals in grid.items():
        rows += [
            {
                "phase": "tune",
                "regime": regime,
                "variant": "contextrast",
                "seed": s,
                "alpha": a,
                "warmup": w,
                "val_miou": v,
                "device": device,
                "train_cpu_seconds": seconds,
            }
            for s, v in vals.items()
        ]
    return rows


def _full_grid(value=70.0, **best):
    grid = {(a, w): {0: value, 1: value} for a in regime_study.ALPHAS for w in regime_study.WARMUPS}
    for (a, w), v in best.get("at", {}).items():
        grid[(a, w)] = {0: v, 1: v}
    return grid


def test_chosen_setting_takes_best_mean_and_breaks_ties_to_smaller_alpha():
    grid = _full_grid(at={(0.05, 0.5): 75.0, (0.1, 0.0): 75.05})
    rows = _tuning_rows("default", {0: 71.0, 1: 73.0}, grid)
    c = chosen_setting(rows, "default")
    assert (c["alpha"], c["warmup"]) == (0.05, 0.5)  # 0.1 is within TIE of it: smaller alpha wins
    assert c["val_delta"] == pytest.approx(75.0 - 72.0)
    grid[(0.1, 0.0)] = {0: 76.0, 1: 76.0}
    c = chosen_setting(_tuning_rows("default", {0: 71.0, 1: 73.0}, grid), "default")
    assert (c["alpha"], c["warmup"]) == (0.1, 0.0)


def test_chosen_setting_waits_for_every_run():
    rows = _tuning_rows("default", {0: 71.0, 1: 73.0}, _full_grid())
    assert chosen_setting(rows[:-1], "default") is None
    assert chosen_setting(rows, "default") is not None


def _ce_finals(regime, vals):
    return [
        {"phase": "final", "regime": regime, "variant": "ce", "seed": s, "val_miou": v, "miou": v}
        for s, v in enumerate(vals)
    ]


def _steps(rows, steps):
    return [{**r, "steps": steps} for r in rows]


def test_eligibility_needs_a_cheap_ce_run_that_reaches_60_percent():
    tuning = _steps(_tuning_rows("default", {0: 60.0, 1: 60.0}, {}, seconds=200.0), 2000)
    tuning += _steps(_tuning_rows("scarce", {0: 50.0, 1: 50.0}, {}, seconds=260.0), 2000)
    tuning += _steps(_tuning_rows("res128", {0: 50.0, 1: 50.0}, {}, seconds=800.0), 2000)
    finals = _ce_finals("default", [78, 79, 77, 80, 78]) + _ce_finals("scarce", [61, 59] * 2)
    e = eligible(tuning, finals, "default")
    assert e == {"cost_ratio": 1.0, "ce_val_miou": 78.4, "eligible": True, "decided": True}
    e = eligible(tuning, finals, "scarce")  # 4 of 5 CE finals: quality not known yet
    assert e["cost_ratio"] == pytest.approx(1.3) and not e["decided"] and not e["eligible"]
    finals += _ce_finals("scarce", [0] * 5)[4:]
    e = eligible(tuning, finals, "scarce")
    assert e["decided"] and not e["eligible"]  # mean 48 % < 60 %
    e = eligible(tuning, finals, "res128")  # 4x the cost: decided without any final run
    assert e["cost_ratio"] == pytest.approx(4.0) and e["decided"] and not e["eligible"]
    gpu = _steps(_tuning_rows("crowded", {0: 70.0, 1: 70.0}, {}, device="cuda"), 2000)
    assert not eligible(tuning + gpu, finals, "crowded")["decided"]  # no CPU cost measured


def test_choose_default_by_validation_gain_among_eligible(monkeypatch):
    regimes = {k: REGIMES[k] for k in ("default", "scarce", "res128")}
    monkeypatch.setattr(regime_study, "REGIMES", regimes)
    rows = _tuning_rows("default", {0: 70.0, 1: 70.0}, _full_grid(70.5))  # +0.5
    rows += _tuning_rows("scarce", {0: 60.0, 1: 62.0}, _full_grid(63.0))  # +2.0
    rows += _tuning_rows("res128", {0: 70.0, 1: 70.0}, _full_grid(75.0), seconds=1200.0)
    rows = _steps(rows, 2000)  # res128: 4x the default's CPU seconds per step: too costly
    finals = _ce_finals("default", [78] * 5) + _ce_finals("scarce", [65] * 5)
    assert choose_default(rows, finals) == "scarce"
    scarce_rows = [i for i, r in enumerate(rows) if r["regime"] == "scarce"]
    incomplete = rows[: scarce_rows[-1]] + rows[scarce_rows[-1] + 1 :]
    assert choose_default(incomplete, finals) is None  # one regime's tuning incomplete
    assert choose_default(rows, finals[:-1]) is None  # scarce's gate not decided yet
    low = _ce_finals("default", [78] * 5) + _ce_finals("scarce", [55] * 5)
    assert choose_default(rows, low) == "default"  # scarce's CE too weak for a tutorial
    worse = _tuning_rows("default", {0: 70.0, 1: 70.0}, _full_grid(69.0))
    worse += _tuning_rows("scarce", {0: 60.0, 1: 62.0}, _full_grid(60.0))
    worse += _tuning_rows("res128", {0: 70.0, 1: 70.0}, _full_grid(75.0), seconds=1200.0)
    assert choose_default(_steps(worse, 2000), finals) == "default"  # no gain: keep today's


def test_choose_default_leaves_out_gpu_regimes(monkeypatch):
    """res128 and long cost >= 3x a default CE run by construction: Rule 2 never waits for them
    (they need a GPU in the study's time), and never picks them even when they gain most."""
    assert {n for n, r in REGIMES.items() if r.gpu} == {"res128", "long"}
    regimes = {k: REGIMES[k] for k in ("default", "scarce", "res128")}
    monkeypatch.setattr(regime_study, "REGIMES", regimes)
    rows = _tuning_rows("default", {0: 70.0, 1: 70.0}, _full_grid(70.5))
    rows += _tuning_rows("scarce", {0: 60.0, 1: 62.0}, _full_grid(63.0))
    rows = _steps(rows, 2000)
    finals = _ce_finals("default", [78] * 5) + _ce_finals("scarce", [65] * 5)
    assert choose_default(rows, finals) == "scarce"  # res128 has no runs at all
    assert choose_default(rows, finals, ["default", "scarce", "res128"]) is None


def test_paired_interval_matches_scipy():
    ce = [78.0, 80.5, 79.2, 81.0, 77.7]
    cx = [79.1, 81.0, 80.9, 81.2, 79.0]
    rows = [{"regime": "r", "variant": "ce", "seed": s, "miou": v} for s, v in enumerate(ce)]
    rows += [
        {"regime": "r", "variant": "contextrast", "seed": s, "miou": v} for s, v in enumerate(cx)
    ]
    p = paired(rows, "r", "contextrast")
    d = [b - a for a, b in zip(ce, cx, strict=True)]
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=sum(d) / 5, scale=stats.sem(d))
    assert p["n"] == 5 and p["mean"] == pytest.approx(sum(d) / 5)
    assert (p["lo"], p["hi"]) == (pytest.approx(lo), pytest.approx(hi))
    assert p["error_cut"] == pytest.approx(p["mean"] / (100 - sum(ce) / 5))
    assert paired(rows, "other", "contextrast") is None


def test_job_config_applies_regime_variant_and_warmup(tmp_path):
    job = Job("tune", "scarce", "contextrast", 1, alpha=0.05, warmup=0.5)
    cfg = job.config(tmp_path, threads=1)
    assert cfg.loss == "contextrast" and cfg.alpha == 0.05 and cfg.seed == 1
    assert cfg.max_steps == REGIMES["scarce"].tune_steps and cfg.warmup_steps == cfg.max_steps // 2
    assert cfg.train_digits_per_class == 35 and cfg.threads == 1
    assert Job("final", "long", "ce", 0).config(tmp_path).max_steps == 18000
    assert Job("final", "default", "ce_time", 0, steps=7000).config(tmp_path).loss == "ce"


def test_regime_config_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown regime 'tiny'"):
        regime_config("tiny")


@pytest.mark.slow
def test_study_runs_resumes_and_reports(tmp_path, monkeypatch):
    tiny = {
        "image_size": 32,
        "train_scenes": 32,
        "val_scenes": 8,
        "batch_size": 8,
        "widths": (8, 8, 16, 16),
        "embed_dim": 8,
        "max_steps": 8,
        "device": "cpu",
        "progress": False,
    }
    regimes = {
        "default": Regime("default", "tiny default", tiny, tune_steps=8),
        "crowded": Regime(
            "crowded",
            "tiny crowded",
            {**tiny, "max_digits": 6, "touching": 0.7, "distractors": 2},
            tune_steps=8,
        ),
    }
    for mod in (regime_study, regime_report):
        monkeypatch.setattr(mod, "REGIMES", regimes)
    monkeypatch.setattr(regime_study, "ALPHAS", (0.1,))
    monkeypatch.setattr(regime_report, "ALPHAS", (0.1,))
    monkeypatch.setattr(regime_study, "FINAL_SEEDS", (0, 1))
    monkeypatch.setattr(regime_report, "FINAL_SEEDS", (0, 1))
    monkeypatch.setattr(regime_study, "MAX_COST_RATIO", 1e9)
    monkeypatch.setattr(regime_study, "MIN_CE_VAL_MIOU", 0.0)
    monkeypatch.setattr(regime_study, "TEST_SCENES", 8)
    runs, results = tmp_path / "runs", tmp_path / "results"

    regime_study.study(list(regimes), results, runs, "CMD", max_jobs=3)
    tuning = json.loads((results / "regimes" / "tuning.json").read_text())
    # breadth first: CE's tuning runs of every regime come before any PA run
    assert [(r["regime"], r["variant"]) for r in tuning["runs"]] == [
        ("default", "ce"),
        ("default", "ce"),
        ("crowded", "ce"),
    ]
    assert tuning["command"] == "CMD" and "config" in tuning["runs"][0]
    assert all("miou" not in r for r in tuning["runs"]), "phase 1 never scores the test scenes"
    assert not (results / "regimes.json").exists()

    regime_study.study(list(regimes), results, runs, "CMD")  # resumes: the rest of the plan
    regime_report.write_report(results, "CMD")
    data = json.loads((results / "regimes.json").read_text())
    tuning = json.loads((results / "regimes" / "tuning.json").read_text())["runs"]
    assert len(tuning) == 2 * (2 + 1 * 2 * 2)  # per regime: 2 CE + 1 alpha x 2 warm-ups x 2 seeds
    keys = [(r["regime"], r["variant"], r["seed"]) for r in data["runs"]]
    assert len(keys) == len(set(keys)), "no run is trained twice"
    default = data["default_regime"]
    assert default in regimes
    want = {(g, v, s) for g in regimes for v in ("ce", "contextrast") for s in (0, 1)}
    want |= {(default, v, s) for v in ("ccl", "ce_time") for s in (0, 1)}
    assert set(keys) == want
    ce_time = [r for r in data["runs"] if r["variant"] == "ce_time"]
    assert all(r["steps"] == ce_time[0]["steps"] for r in ce_time)
    # Rule 1 by hand from the tuning rows: best mean over the two seeds, ties within 0.1 points
    # to no warm-up (one alpha here); its validation gain is paired against CE's mean
    pa = [r for r in tuning if r["regime"] == "default" and r["variant"] == "contextrast"]
    means = {
        w: sum(r["val_miou"] for r in pa if r["warmup"] == w) / 2 for w in {r["warmup"] for r in pa}
    }
    want_w = min(w for w, m in means.items() if m >= max(means.values()) - 0.1)
    ce_mean = (
        sum(r["val_miou"] for r in tuning if r["regime"] == "default" and r["variant"] == "ce") / 2
    )
    chosen = data["chosen"]["default"]
    assert (chosen["alpha"], chosen["warmup"]) == (0.1, want_w)
    assert chosen["val_delta"] == pytest.approx(means[want_w] - ce_mean)
    md = (results / "regimes.md").read_text()
    assert "Phase 1" in md and "Phase 2" in md and f"**{default}**" in md
    assert (results / "regimes.png").stat().st_size > 0
    n_before = len(data["runs"])
    regime_study.study(list(regimes), results, runs, "CMD")  # nothing left: trains nothing
    assert len(json.loads((results / "regimes.json").read_text())["runs"]) == n_before

    # the reference runs of the chosen regime are the study's seed-0 final runs, which recorded
    # their anchors: exported without training; elsewhere trained again to the same weights
    ref = tmp_path / "reference"
    finished = {p: p.stat().st_mtime_ns for p in runs.rglob("checkpoint.pt")}
    manifest = regime_reference.build_reference(
        regime_reference.resolve_regime("chosen", results), results, runs, ref, "REF", 8
    )
    assert finished == {p: p.stat().st_mtime_ns for p in runs.rglob("checkpoint.pt")}
    again = regime_reference.build_reference(default, results, tmp_path / "r2", ref, "REF", 8)
    assert again["runs"]["contextrast"]["test"] == manifest["runs"]["contextrast"]["test"]
    assert not (runs / "final" / default / "ce_seed1" / "anchors.pt").exists()  # seed 0 only
    assert manifest["regime"] == default
    assert manifest["setting"] == {"alpha": 0.1, "warmup": data["chosen"][default]["warmup"]}
    assert set(manifest["study_test_miou"]) == {"ce", "contextrast"}
    for variant in ("ce", "contextrast"):
        shipped = torch.load(ref / variant / "model.pt", weights_only=True)
        pa = "" if variant == "ce" else f"_a0.1_w{data['chosen'][default]['warmup']:g}"
        study_run = runs / "final" / default / f"{variant}{pa}_seed0" / "checkpoint.pt"
        trained = torch.load(study_run, weights_only=True)["model"]
        assert all(torch.equal(shipped["model"][k], trained[k]) for k in trained)
        assert torch.load(ref / variant / "anchors.pt", weights_only=True)["anchors"]


def test_report_lists_every_regime_even_without_runs(tmp_path):
    data = regime_report.write_report(tmp_path, "CMD")
    md = (tmp_path / "regimes.md").read_text()
    for name in REGIMES:
        assert f"| {name} |" in md
    assert data["default_regime"] is None and "not decided yet" in md
    assert set(data["regimes"]) == set(REGIMES)  # every definition recorded, run or not
    assert data["chosen"] == dict.fromkeys(REGIMES)  # no tuning run: no setting chosen


def test_post_hoc_section_pairs_contextrast_with_its_control_once_all_seeds_are_in():
    def rows(variant, mious):
        return [
            {
                "regime": "res128",
                "variant": variant,
                "seed": s,
                "miou": m,
                "steps": 6000,
                "train_cpu_seconds": 60.0,
            }
            for s, m in enumerate(mious)
        ]

    finals = rows("ce", [50, 51, 52, 53, 54]) + rows("contextrast", [52, 53, 53, 55, 56])
    finals += rows("ccl", [51, 52, 53, 54, 55][:4])
    md = "\n".join(regime_report.post_hoc_section(finals, default="scarce"))
    assert "Post-hoc control in res128" in md and "| `ccl` | 4 |" in md
    assert "waits for its runs: 5 of 5 Contextrast and 4 of 5 `ccl`" in md
    finals += rows("ccl", [0, 0, 0, 0, 55])[4:]
    md = "\n".join(regime_report.post_hoc_section(finals, default="scarce"))
    # differences 1, 1, 0, 1, 1: mean 0.8, sd 0.447, t(0.975, 4) = 2.776 -> ±0.555
    assert "Contextrast − `ccl`, paired by seed: +0.80 [+0.24, +1.36] (n=5)" in md
    assert regime_report.post_hoc_section(finals, default="res128") == []  # the protocol's own


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["regimes", "--threads", "0"], "--threads must be an integer >= 1"),
        (["ablation", "--steps", "0"], "--steps must be an integer >= 1"),
        (["regimes", "--max-jobs", "0"], "--max-jobs must be >= 1"),
        (["ablation", "--seeds", "-1"], "--seeds must be integers >= 0"),
        (["ablation", "--seeds", "0", "99999999999999999999"], "--seeds must be integers >= 0 and < 87960"),
        (["regimes", "--threads", "99999999999999999999"], "--threads must be an integer >= 1 and <= 1024"),
        (["regimes", "--seeds", "3"], "--seeds does nothing for `regimes`"),
    ],
)  # fmt: skip
def test_experiments_cli_bad_input_is_one_line(args, words, tmp_path):
    from ctx.experiments import cli

    runs = ["--runs-dir", str(tmp_path / "runs")]  # were it to run, not into the study's runs
    with pytest.raises(SystemExit) as e:
        cli.main([*args, "--results-dir", str(tmp_path), *runs])
    assert str(e.value).startswith("error: ") and words in str(e.value)
    assert not (tmp_path / "regimes.json").exists(), "nothing runs or is written first"
    assert not (tmp_path / "ablation.json").exists()
    assert not (tmp_path / "runs").exists()


def test_reference_jobs_need_a_chosen_setting(tmp_path):
    rows = _tuning_rows("default", {0: 71.0, 1: 73.0}, _full_grid(75.0))
    ce, cx = regime_reference.reference_jobs(rows, "default")
    assert (ce.variant, ce.seed, ce.phase, ce.alpha, ce.warmup) == ("ce", 0, "final", None, None)
    # every setting ties at 75.0: Rule 1 takes the smallest alpha, then no warm-up
    assert (cx.variant, cx.seed, cx.alpha, cx.warmup) == ("contextrast", 0, 0.02, 0.0)
    with pytest.raises(ValueError, match="regimes --regimes default"):
        regime_reference.reference_jobs(rows[:-1], "default")
    with pytest.raises(ValueError, match="unknown regime 'tiny'"):
        regime_reference.reference_jobs(rows, "tiny")
    (tmp_path / "run").mkdir()
    with pytest.raises(ValueError, match="0 of its 2 evaluations"):
        regime_reference.check_snapshots(tmp_path / "run", [{"step": 4}, {"step": 8}])
    with pytest.raises(ValueError, match="--regime"):  # no results file: nothing chosen yet
        regime_reference.resolve_regime("chosen", tmp_path)
    assert regime_reference.resolve_regime("scarce", tmp_path) == "scarce"


def test_crowded_has_about_8x_the_digit_digit_edges_of_default():
    """The figure its `why` states: label edges between two different digits, 4-neighbours,
    on 100 validation scenes of each regime (7.6x on 200 when the text was checked)."""
    from ctx.data import generate_scenes

    def digit_digit_edges(name: str) -> int:
        _, lab = generate_scenes("val", 100, regime_config(name).scene_config())
        pairs = ((lab[:, 1:], lab[:, :-1]), (lab[:, :, 1:], lab[:, :, :-1]))
        return sum(int(((a != b) & (a > 0) & (b > 0)).sum()) for a, b in pairs)

    ratio = digit_digit_edges("crowded") / digit_digit_edges("default")
    assert 6 < ratio < 10, ratio
    assert "about 8x the digit-digit label edges" in REGIMES["crowded"].why
