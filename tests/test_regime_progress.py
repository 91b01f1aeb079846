"""`regimes --status`: runs done, started and left per regime and phase, and the CPU hours left,
on hand-made results files and run folders (the sums are worked out in the comments)."""

import math

import pytest

from ctx.experiments import cli
from ctx.experiments import regime_progress as P
from ctx.experiments.regime_study import ALPHAS, WARMUPS, Job
from ctx.io import write_json


def _row(regime, variant, seed, steps, cpu, phase="tune", alpha=None, warmup=None, device="cpu"):
    return {
        "phase": phase,
        "regime": regime,
        "variant": variant,
        "seed": seed,
        "alpha": alpha,
        "warmup": warmup,
        "steps": steps,
        "train_cpu_seconds": cpu,
        "device": device,
        "val_miou": 50.0 + seed,
    }


def _study():
    """`default`'s phase 1 complete (CE 0.1 s/step, PA 0.15 s/step over 2,000 steps); `long`'s
    two CE tuning runs in (0.1 s/step over 6,000 steps); no final run."""
    tuning = [_row("default", "ce", s, 2000, 200.0) for s in (0, 1)]
    tuning += [
        _row("default", "contextrast", s, 2000, 300.0, alpha=a, warmup=w)
        for s in (0, 1)
        for a in ALPHAS
        for w in WARMUPS
    ]
    tuning += [_row("long", "ce", s, 6000, 600.0) for s in (0, 1)]
    return tuning, []


def test_study_jobs_are_the_protocols_runs():
    tuning, _ = _study()
    jobs = P.study_jobs(tuning, "default", default="default")
    assert [sum(j.phase == p for j in jobs) for p in ("tune", "final")] == [14, 20]
    pa = {
        (j.alpha, j.warmup)
        for j in jobs
        if j.variant in ("contextrast", "ccl") and j.phase == "final"
    }
    assert pa == {(0.02, 0.0)}  # every setting ties: Rule 1 takes the smallest alpha, no warm-up
    jobs = P.study_jobs(tuning, "long", default="default")
    assert [sum(j.phase == p for j in jobs) for p in ("tune", "final")] == [14, 10]
    assert {j.variant for j in jobs if j.phase == "final"} == {"ce", "contextrast"}
    jobs = P.study_jobs(tuning, "res128", default="default")  # its post-hoc `ccl` control
    final = [j.variant for j in jobs if j.phase == "final"]
    assert [final.count(v) for v in ("ce", "contextrast", "ccl")] == [5, 5, 5]
    assert len(P.study_jobs(tuning, "res128", default="res128")) == 14 + 20  # the protocol's own


def test_rates_are_medians_and_pa_borrows_the_measured_ratio():
    tuning, _ = _study()
    tuning.append(_row("long", "ce", 2, 100, 1000.0, device="cuda (H200)"))  # not a CPU run
    rates = P.cpu_rates(tuning)
    assert rates == pytest.approx(
        {("default", "ce"): 0.1, ("default", "pa"): 0.15, ("long", "ce"): 0.1}
    )
    assert P.rate(rates, "long", "pa") == pytest.approx(0.1 * 1.5)
    assert math.isnan(P.rate(rates, "scarce", "ce"))
    assert math.isnan(P.rate({("long", "ce"): 0.1}, "long", "pa"))  # no ratio measured anywhere
    # ce_time gets Contextrast's budget: 6,000 steps x 0.15 s
    assert P.cpu_seconds(Job("final", "default", "ce_time", 0), rates) == pytest.approx(900.0)
    assert P.cpu_seconds(Job("tune", "long", "ce", 0), rates) == pytest.approx(600.0)


def test_progress_counts_and_subtracts_what_started_runs_spent(tmp_path):
    tuning, finals = _study()
    for seed, cpu in ((0, 1000.0), (1, 400.0)):  # 1,000 s: past a whole run's estimate (900 s)
        history = [
            {"step": 100, "train_cpu_seconds": cpu / 2},
            {"step": 200, "train_cpu_seconds": cpu},
        ]
        job = Job("tune", "long", "contextrast", seed, 0.02, 0.0)
        write_json({"config": {}, "history": history}, tmp_path / job.name / "history.json")
    write_json({"config": {}, "history": []}, tmp_path / "final/long/ce_seed0/history.json")
    rows = {
        r["regime"]: r for r in P.progress(tuning, finals, ["default", "long", "scarce"], tmp_path)
    }
    # Rule 2 is undecided (scarce has no runs): no regime gets ccl / ce_time
    assert rows["default"]["tune"] == {"done": 14, "started": 0, "planned": 14}
    assert rows["default"]["final"] == {"done": 0, "started": 0, "planned": 10}
    assert rows["long"]["tune"] == {"done": 2, "started": 2, "planned": 14}
    assert rows["long"]["final"] == {"done": 0, "started": 1, "planned": 10}
    # default: 5 x 6,000 x 0.1 (CE) + 5 x 6,000 x 0.15 (Contextrast)
    assert rows["default"]["cpu_seconds_left"] == pytest.approx(3000 + 4500)
    # long: 12 PA tuning runs of 6,000 x 0.15 = 900 s, less 400 s spent by one, and nothing left
    # of the one past its estimate (never below 0); 5 x 18,000 x 0.1 (CE); 5 x 18,000 x 0.15
    assert rows["long"]["cpu_seconds_left"] == pytest.approx(10 * 900 + 500 + 9000 + 13500)
    assert math.isnan(rows["scarce"]["cpu_seconds_left"])
    text = P.status_text(list(rows.values()), decided=False)
    assert "long            2/14, 2 started         0/10, 1 started     8.9" in text
    assert "at least 11.0 CPU hours (and the runs of scarce)" in text
    assert "not counted" in text
    fresh = P.status_text([rows["scarce"]], decided=False)
    assert "left: unknown until one CPU run of each regime finishes" in fresh


def test_cli_status_reads_the_files_and_writes_nothing(tmp_path, capsys):
    tuning, finals = _study()
    write_json({"runs": tuning}, tmp_path / "results" / "regimes" / "tuning.json")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    argv = ["regimes", "--status", "--regimes", "default", "long"]
    cli.main(
        argv + ["--results-dir", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs")]
    )
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("default         14/14                   0/10")
    assert "left: 11.3 CPU hours" in out  # 7,500 s (default) + 33,300 s (long), as above
    assert f"no runs folder at {tmp_path / 'runs'}" in out  # none made here: says so
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    (tmp_path / "runs").mkdir()
    cli.main(
        argv + ["--results-dir", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs")]
    )
    assert "no runs folder" not in capsys.readouterr().out


def test_status_names_the_post_hoc_control():
    row = {"tune": {"done": 14, "started": 0, "planned": 14}, "cpu_seconds_left": 3600.0}
    rows = [
        {
            **row,
            "regime": "res128",
            "default": False,
            "final": {"done": 0, "started": 1, "planned": 15},
        },
        {
            **row,
            "regime": "long",
            "default": False,
            "final": {"done": 0, "started": 0, "planned": 10},
        },
    ]
    text = P.status_text(rows, decided=True)
    assert "0/15, 1 started" in text.splitlines()[1]
    assert "res128 also trains `ccl`, post hoc (PROTOCOL.md, 2026-12-02)" in text
    assert "long also" not in text


def test_status_belongs_to_the_regimes_task(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["gallery", "--status"])
    assert str(e.value).startswith("error: --status does nothing for `gallery` (it reads --out")


def test_a_damaged_history_is_one_line_naming_the_file(tmp_path):
    job = Job("final", "long", "ce", 0, None, None)
    write_json({"config": {}, "history": {"step": 3}}, tmp_path / job.name / "history.json")
    with pytest.raises(ValueError) as err:
        P.started(job, tmp_path)
    msg = str(err.value)
    assert f"{tmp_path / job.name / 'history.json'} should hold" in msg
    assert "'history' is a dict" in msg and "\n" not in msg
