"""Rule 2 decides as soon as its outcome cannot change, and the study's plan trains the runs
that decide it first. The answer must equal the exhaustive rule's, checked on random inputs."""

import itertools
import random

import pytest
from test_regime_study import _ce_finals, _full_grid, _steps, _tuning_rows

from ctx.experiments import regime_study
from ctx.experiments.regime_study import FINAL_SEEDS, TIE, choose_default, eligible, plan
from ctx.experiments.regimes import REGIMES

NAMES = ("default", "scarce", "crowded", "crowded_scarce")


def _exhaustive(tuning, finals, names):
    """Rule 2 as PROTOCOL.md words it, with every gate decided first."""
    gates = {r: eligible(tuning, finals, r) for r in names}
    if not all(g["decided"] for g in gates.values()):
        return None
    gain = {r: regime_study.chosen_setting(tuning, r)["val_delta"] for r in names}
    cands = {r: gain[r] for r in names if gates[r]["eligible"]}
    if not cands or max(cands.values()) <= 0:
        return "default"
    best = max(cands, key=cands.get)
    if "default" in cands and cands[best] - cands["default"] < TIE:
        return "default"
    return best


def _study(rng):
    """Random complete tunings (gains in [-2, 2], some ties) and per-regime CE final means."""
    tuning, ce_final = [], {}
    for r in NAMES:
        ce = 60.0
        gain = rng.choice([-1.0, 0.0, 0.05, 0.5, 0.55, 1.0, 2.0])
        seconds = rng.choice([300.0, 300.0, 500.0])  # 500 s: 1.67x the default's cost
        if r == "default":
            seconds = 300.0
        tuning += _tuning_rows(r, {0: ce, 1: ce}, _full_grid(ce + gain), seconds=seconds)
        ce_final[r] = rng.choice([55.0, 65.0])
    return _steps(tuning, 2000), ce_final


@pytest.mark.parametrize("seed", range(60))
def test_rule_2_decides_early_only_when_every_completion_agrees(seed):
    rng = random.Random(seed)
    tuning, ce_final = _study(rng)
    full = [row for r in NAMES for row in _ce_finals(r, [ce_final[r]] * 5)]
    assert choose_default(tuning, full, list(NAMES)) == _exhaustive(tuning, full, list(NAMES))
    for known in itertools.product([False, True], repeat=len(NAMES)):
        part = [
            row
            for r, k in zip(NAMES, known, strict=True)
            if k
            for row in _ce_finals(r, [ce_final[r]] * 5)
        ]
        early = choose_default(tuning, part, list(NAMES))
        if early is None:
            continue
        unknown = [r for r, k in zip(NAMES, known, strict=True) if not k]
        for means in itertools.product([55.0, 65.0], repeat=len(unknown)):
            rest = [
                row for r, m in zip(unknown, means, strict=True) for row in _ce_finals(r, [m] * 5)
            ]
            assert _exhaustive(tuning, part + rest, list(NAMES)) == early


def test_rule_2_waits_for_the_best_candidates_gate():
    tuning = _tuning_rows("default", {0: 70.0, 1: 70.0}, _full_grid(70.0))
    tuning += _tuning_rows("scarce", {0: 60.0, 1: 60.0}, _full_grid(62.0))  # +2: read first
    tuning = _steps(tuning, 2000)
    names = ["default", "scarce"]
    assert choose_default(tuning, [], names) is None
    assert choose_default(tuning, _ce_finals("scarce", [65] * 5), names) == "scarce"
    assert choose_default(tuning, _ce_finals("scarce", [55] * 5), names) == "default"


def _complete(monkeypatch):
    regimes = {k: REGIMES[k] for k in ("default", "scarce", "crowded")}
    monkeypatch.setattr(regime_study, "REGIMES", regimes)
    tuning = _tuning_rows("default", {0: 70.0, 1: 70.0}, _full_grid(69.0))  # -1
    tuning += _tuning_rows("scarce", {0: 60.0, 1: 60.0}, _full_grid(62.0))  # +2
    tuning += _tuning_rows("crowded", {0: 50.0, 1: 50.0}, _full_grid(50.5))  # +0.5
    return _steps(tuning, 2000), list(regimes)


def test_plan_trains_the_gates_ce_runs_first_in_gain_order(monkeypatch):
    tuning, names = _complete(monkeypatch)
    jobs = [j for j in plan(tuning, [], names) if j.phase == "final"]
    ce = [(j.regime, j.seed) for j in jobs[: 3 * len(FINAL_SEEDS)]]
    assert ce == [(r, s) for r in ("scarce", "crowded", "default") for s in FINAL_SEEDS]
    assert all(j.variant == "ce" for j in jobs[: len(ce)])
    assert len({j.key for j in jobs}) == len(jobs)  # nothing twice
    assert not any(j.variant in ("ccl", "ce_time") for j in jobs)  # no default yet


def test_plan_puts_the_chosen_regimes_runs_first(monkeypatch):
    tuning, names = _complete(monkeypatch)
    finals = [{**r, "train_cpu_seconds": 1.0, "steps": 1} for r in _ce_finals("scarce", [65] * 5)]
    jobs = [j for j in plan(tuning, finals, names) if j.phase == "final"]
    head = [(j.regime, j.variant) for j in jobs[: 3 * len(FINAL_SEEDS)]]
    assert head == [("scarce", v) for v in ("ce", "contextrast", "ccl") for _ in FINAL_SEEDS]
    assert len({j.key for j in jobs}) == len(jobs)
    finals += [{**r, "variant": "contextrast", "train_cpu_seconds": 2.0} for r in finals]
    jobs = [j for j in plan(tuning, finals, names) if j.phase == "final"]
    ce_time = [j for j in jobs if j.variant == "ce_time"]
    assert len(ce_time) == len(FINAL_SEEDS) and jobs.index(ce_time[0]) == 3 * len(FINAL_SEEDS)
    assert ce_time[0].steps == 2 * REGIMES["scarce"].config().max_steps


def test_rule_2_waits_for_defaults_gate_when_the_best_is_within_a_tie():
    tuning = _tuning_rows("default", {0: 70.0, 1: 70.0}, _full_grid(70.5))  # +0.5
    tuning += _tuning_rows("scarce", {0: 60.0, 1: 60.0}, _full_grid(60.55))  # +0.55: a tie
    tuning = _steps(tuning, 2000)
    names = ["default", "scarce"]
    scarce = _ce_finals("scarce", [65] * 5)
    assert choose_default(tuning, scarce, names) is None
    assert regime_study.rule_2(tuning, scarce, names) == (None, "default")  # default's gate next
    assert choose_default(tuning, scarce + _ce_finals("default", [65] * 5), names) == "default"
    assert choose_default(tuning, scarce + _ce_finals("default", [55] * 5), names) == "scarce"


def test_post_hoc_controls_train_last_at_rule_1s_setting(monkeypatch):
    regimes = {k: REGIMES[k] for k in ("default", "scarce", "res128")}
    monkeypatch.setattr(regime_study, "REGIMES", regimes)
    tuning = _tuning_rows("default", {0: 70.0, 1: 70.0}, _full_grid(69.0))  # -1
    tuning += _tuning_rows("scarce", {0: 60.0, 1: 60.0}, _full_grid(62.0))  # +2
    tuning += _tuning_rows("res128", {0: 50.0, 1: 50.0}, _full_grid(50.5, at={(0.05, 0.5): 51.0}))
    tuning, names = _steps(tuning, 2000), list(regimes)
    finals = [{**r, "train_cpu_seconds": 1.0, "steps": 1} for r in _ce_finals("scarce", [65] * 5)]
    jobs = [j for j in plan(tuning, finals, names) if j.phase == "final"]
    post = [j for j in jobs if (j.regime, j.variant) == ("res128", "ccl")]
    assert [j.seed for j in post] == list(FINAL_SEEDS)
    assert {(j.alpha, j.warmup) for j in post} == {(0.05, 0.5)}  # Rule 1's setting in res128
    assert jobs[-len(post) :] == post  # after every run the protocol asks for
    assert len({j.key for j in jobs}) == len(jobs)
    assert {j.regime for j in jobs if j.variant == "ccl"} == {"scarce", "res128"}
    # were res128 the default, its protocol `ccl` runs would be the only ones
    monkeypatch.setattr(regime_study, "choose_default", lambda *a, **k: "res128")
    jobs = [j for j in plan(tuning, finals, names) if j.variant == "ccl"]
    assert [(j.regime, j.seed) for j in jobs] == [("res128", s) for s in FINAL_SEEDS]


def test_a_worker_without_the_default_trains_each_regime_in_turn_once_rule_2_has_chosen(
    monkeypatch,
):
    tuning, names = _complete(monkeypatch)
    finals = [{**r, "train_cpu_seconds": 1.0, "steps": 1} for r in _ce_finals("scarce", [65] * 5)]
    assert choose_default(tuning, finals) == "scarce"
    jobs = [j for j in plan(tuning, finals, ["default", "crowded"]) if j.phase == "final"]
    head = [(j.regime, j.variant) for j in jobs]
    n = len(FINAL_SEEDS)
    want = [("default", "ce")] * n + [("default", "contextrast")] * n
    assert head == want + [("crowded", "ce")] * n + [("crowded", "contextrast")] * n
