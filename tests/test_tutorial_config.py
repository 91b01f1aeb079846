"""The notebooks train the shipped reference runs' setting: `ctx.reference.tutorial_config`."""

import dataclasses
import json

import pytest

from ctx.engine.config import TrainConfig
from ctx.experiments.regimes import REGIMES
from ctx.reference import reference_manifest, tutorial_config


def test_runs_exported_before_the_study_mean_the_default_regime_and_method_defaults(
    tmp_path, monkeypatch
):
    (tmp_path / "manifest.json").write_text(json.dumps({"command": "x"}))
    monkeypatch.setenv("CTX_REFERENCE_DIR", str(tmp_path))
    cfg = tutorial_config(loss="contextrast", max_steps=300, train_scenes=512)
    assert cfg == dataclasses.replace(
        TrainConfig(), loss="contextrast", max_steps=300, train_scenes=512
    )


def test_a_study_reference_sets_the_regime_and_its_pa_setting(tmp_path, monkeypatch):
    manifest = {"regime": "scarce", "setting": {"alpha": 0.05, "warmup": 0.5}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("CTX_REFERENCE_DIR", str(tmp_path))
    assert reference_manifest() == manifest
    full = tutorial_config(loss="contextrast")
    assert (full.train_scenes, full.train_digits_per_class) == (500, 35)
    assert (full.alpha, full.warmup_steps) == (0.05, REGIMES["scarce"].config().max_steps // 2)
    short = tutorial_config(loss="contextrast", max_steps=300)
    assert (short.alpha, short.warmup_steps, short.max_steps) == (0.05, 150, 300)
    ce = tutorial_config(loss="ce", max_steps=300)
    assert (ce.alpha, ce.warmup_steps) == (TrainConfig().alpha, 0)  # CE takes no PA setting
    assert ce.train_scenes == 500
    assert tutorial_config(loss="contextrast", alpha=0.1).alpha == 0.1  # explicit wins


def test_an_unknown_regime_in_the_manifest_is_named(tmp_path, monkeypatch):
    (tmp_path / "manifest.json").write_text(json.dumps({"regime": "tiny"}))
    monkeypatch.setenv("CTX_REFERENCE_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="unknown regime 'tiny'"):
        tutorial_config(loss="ce")
