"""How far the regime study is: per regime, the runs done, started and left in each phase, and
the CPU hours left, estimated from the study's own rows.

    python -m ctx.experiments regimes --status

Read-only: it trains nothing and takes no run's lock, so it can run beside the workers. A run is
*started* when its folder holds a history (a worker trains it, or it was stopped and resumes).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from ctx.experiments.regime_study import (
    FINAL_SEEDS,
    POST_HOC,
    Job,
    _row_key,
    choose_default,
    chosen_setting,
    load_results,
    tune_jobs,
)
from ctx.experiments.regimes import REGIMES
from ctx.io import read_results

FAMILY = {"ce": "ce", "ce_time": "ce", "contextrast": "pa", "ccl": "pa"}  # same cost per step


def study_jobs(tuning: list[dict], regime: str, default: str | None) -> list[Job]:
    """Every run the protocol asks of `regime`: its phase-1 grid, then CE and Contextrast over
    the final seeds (plus `ccl` and `ce_time` if it is the `default` regime, and its POST_HOC
    controls if it is not). PA finals carry the Rule-1 setting once phase 1 has chosen it (none
    can have started before)."""
    setting = chosen_setting(tuning, regime) or {"alpha": None, "warmup": None}
    a, w = setting["alpha"], setting["warmup"]
    pa = ["contextrast", "ccl"] if regime == default else ["contextrast", *POST_HOC.get(regime, ())]
    jobs = tune_jobs(regime) + [Job("final", regime, "ce", s) for s in FINAL_SEEDS]
    jobs += [Job("final", regime, v, s, a, w) for v in pa for s in FINAL_SEEDS]
    if regime == default:
        jobs += [Job("final", regime, "ce_time", s) for s in FINAL_SEEDS]
    return jobs


def cpu_rates(rows: list[dict]) -> dict[tuple[str, str], float]:
    """Median CPU seconds per training step of finished CPU runs, per (regime, family): "ce"
    (ce, ce_time) or "pa" (contextrast, ccl); warm-up steps are averaged in, as they ran."""
    per: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r["device"] == "cpu" and r["steps"] > 0:
            key = (r["regime"], FAMILY[r["variant"]])
            per.setdefault(key, []).append(r["train_cpu_seconds"] / r["steps"])
    return {k: statistics.median(v) for k, v in per.items()}


def rate(rates: dict[tuple[str, str], float], regime: str, family: str) -> float:
    """CPU seconds per step of `family` in `regime`: measured, else (PA only) the regime's CE
    rate times the median PA/CE ratio of the regimes that have both; NaN when unknown."""
    if (regime, family) in rates:
        return rates[(regime, family)]
    ratios = [
        rates[(r, "pa")] / rates[(r, f)] for r, f in rates if f == "ce" and (r, "pa") in rates
    ]
    if family == "pa" and (regime, "ce") in rates and ratios:
        return rates[(regime, "ce")] * statistics.median(ratios)
    return math.nan


def cpu_seconds(job: Job, rates: dict[tuple[str, str], float]) -> float:
    """Estimated CPU seconds of a whole run of `job`; `ce_time` gets Contextrast's budget, by
    its definition."""
    regime = REGIMES[job.regime]
    steps = regime.tune_steps if job.phase == "tune" else regime.config().max_steps
    family = "pa" if job.variant == "ce_time" else FAMILY[job.variant]
    return steps * rate(rates, job.regime, family)


def started(job: Job, runs_dir: Path) -> float | None:
    """CPU seconds a run not yet in the results has trained so far (None: not started)."""
    path = runs_dir / job.name / "history.json"
    if not path.exists():
        return None
    remake = "python -m ctx.experiments regimes"  # a resumed run rewrites its history.json
    history = read_results(path, {"history": [dict]}, remake)["history"]
    return history[-1]["train_cpu_seconds"] if history else 0.0


def progress(
    tuning: list[dict], finals: list[dict], regimes: list[str], runs_dir: Path
) -> list[dict]:
    """Per regime: runs done / started / planned per phase, and the CPU seconds left (NaN when
    a run's rate is unknown: the regime has no finished CPU run of its kind yet)."""
    default = choose_default(tuning, finals)
    rates = cpu_rates(tuning + finals)
    done = {_row_key(r) for r in tuning + finals}
    out = []
    for regime in regimes:
        row = {"regime": regime, "cpu_seconds_left": 0.0, "default": regime == default}
        for job in study_jobs(tuning, regime, default):
            counts = row.setdefault(job.phase, {"done": 0, "started": 0, "planned": 0})
            counts["planned"] += 1
            if job.key in done:
                counts["done"] += 1
                continue
            spent = started(job, runs_dir)
            counts["started"] += spent is not None
            row["cpu_seconds_left"] += max(cpu_seconds(job, rates) - (spent or 0.0), 0.0)
        out.append(row)
    return out


def status_text(rows: list[dict], decided: bool) -> str:
    """The table `regimes --status` prints: per regime, runs done/planned (and started) per
    phase and CPU hours left; then the total (a lower bound while some cost is unknown)."""

    def phase(c: dict) -> str:
        return f"{c['done']}/{c['planned']}" + (f", {c['started']} started" if c["started"] else "")

    def hours(s: float) -> str:
        return "unknown until one of its CPU runs finishes" if math.isnan(s) else f"{s / 3600:.1f}"

    lines = [f"{'regime':<16}{'phase 1 (validation)':<24}{'phase 2 (test)':<20}CPU hours left"]
    for r in rows:
        name = r["regime"] + (" *" if r["default"] else "")
        cells = (phase(r["tune"]), phase(r["final"]), hours(r["cpu_seconds_left"]))
        lines.append(f"{name:<16}{cells[0]:<24}{cells[1]:<20}{cells[2]}")
    known = sum(r["cpu_seconds_left"] for r in rows if not math.isnan(r["cpu_seconds_left"]))
    unknown = [r["regime"] for r in rows if math.isnan(r["cpu_seconds_left"])]
    total = f"{known / 3600:.1f} CPU hours"
    if unknown and len(unknown) == len(rows):
        total = "unknown until one CPU run of each regime finishes"
    elif unknown:
        total = f"at least {total} (and the runs of {', '.join(unknown)})"
    lines.append(f"left: {total}; one worker per core shares them")
    post = [r["regime"] for r in rows if r["regime"] in POST_HOC and not r["default"]]
    lines += [
        f"{r} also trains {', '.join(f'`{v}`' for v in POST_HOC[r])}, post hoc (PROTOCOL.md, "
        "2026-12-02): counted above"
        for r in post
    ]
    if any(r["default"] for r in rows):
        lines.append("* the tutorials' regime (Rule 2): it also trains `ccl` and `ce_time`")
    elif not decided:
        lines.append(
            "Rule 2 has not chosen the tutorials' regime yet: its `ccl` and `ce_time` runs "
            f"({2 * len(FINAL_SEEDS)} more) are not counted"
        )
    return "\n".join(lines)


def status(results_dir: Path, runs_dir: Path, regimes: list[str]) -> str:
    """`status_text` of the study whose results files are in `results_dir` (regimes.json,
    regimes/tuning.json) and whose run folders are under `runs_dir`."""
    tuning = load_results(results_dir / "regimes" / "tuning.json")["runs"]
    finals = load_results(results_dir / "regimes.json")["runs"]
    rows = progress(tuning, finals, regimes, runs_dir)
    text = status_text(rows, choose_default(tuning, finals) is not None)
    if not runs_dir.is_dir():  # a mistyped --runs-dir would otherwise read as "nothing started"
        text += f"\n(no runs folder at {runs_dir}: no run counts as started; check --runs-dir)"
    return text
