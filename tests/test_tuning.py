"""`python -m ctx.experiments tune`: the grid flag, the resumable tuning file, and a bad setting
refused before the first run trains."""

import dataclasses

import pytest

from ctx.experiments.tuning import parse_grid, tune
from ctx.io import read_json


def test_parse_grid_reads_each_field_as_its_type():
    grid = parse_grid(["alpha=0.1,1", "warmup_steps=0,1000", "fusion=true,False"])
    assert grid == {"alpha": [0.1, 1.0], "warmup_steps": [0, 1000], "fusion": [True, False]}
    assert isinstance(grid["alpha"][1], float) and isinstance(grid["warmup_steps"][1], int)


@pytest.mark.parametrize(
    "item, match",
    [
        ("alpha", "must read FIELD=V1,V2"),
        ("alpha=", "must read FIELD=V1,V2"),
        ("alpah=0.1", "did you mean 'alpha'"),
        ("alpha=x", "alpha takes numbers"),
        ("warmup_steps=0.5", "warmup_steps takes integers"),
        ("fusion=maybe", "fusion takes true or false"),
        ("widths=8", "only number and true/false fields"),
    ],
)
def test_parse_grid_names_the_bad_item(item, match):
    with pytest.raises(ValueError, match=match):
        parse_grid([item])


def test_tune_appends_each_setting_once_and_resumes(tiny_train_config, tmp_path):
    base = dataclasses.replace(tiny_train_config, max_steps=2, eval_every=2)
    results, runs = tmp_path / "results", tmp_path / "runs"
    results.mkdir()
    out = tune({"alpha": [0.1, 0.02]}, base, results, runs, "python -m ctx.experiments tune")
    got = read_json(results / "tuning.json")
    assert got == out and got["command"] == "python -m ctx.experiments tune"
    assert [(r["variant"], r["overrides"]) for r in got["runs"]] == [
        ("ce", {}),
        ("contextrast", {"alpha": 0.1}),
        ("contextrast", {"alpha": 0.02}),
    ]
    assert all(r["steps"] == 2 for r in got["runs"])
    for row, folder in zip(
        got["runs"], ["ce_default", "contextrast_alpha0.1", "contextrast_alpha0.02"], strict=True
    ):
        history = read_json(runs / f"tune_{folder}_steps2" / "history.json")["history"]
        assert row["val_miou"] == history[-1]["val"]["miou"]  # the run's own record
    again = tune({"alpha": [0.1, 0.02, 0.05]}, base, results, runs, "unused")
    assert len(again["runs"]) == 4 and again["runs"][:3] == got["runs"]  # only the new one trains


def test_tune_refuses_a_bad_setting_before_any_run(tiny_train_config, tmp_path):
    with pytest.raises(ValueError, match="alpha .*must be a finite number >= 0, got -1"):
        tune({"alpha": [0.1, -1.0]}, tiny_train_config, tmp_path, tmp_path / "runs", "cmd")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "tuning.json").exists()
