"""The regime gallery export (ctx.experiments.gallery) on tiny fake study runs: which runs it
picks (tuning runs at Rule 1's setting, final runs once both are in), the fp16 weights and their
measured mIoU, the recorded training command, retraining a run whose folder is gone, and the CLI."""

import json
import shutil
from dataclasses import asdict

import pytest
import torch

from ctx.engine.checkpoint import load_model
from ctx.engine.config import config_from_dict
from ctx.evaluate import evaluate_run
from ctx.experiments import cli, gallery, regime_study
from ctx.experiments.regimes import Regime
from ctx.train import parse_args

TINY = {
    "image_size": 16,
    "train_scenes": 16,
    "val_scenes": 4,
    "batch_size": 8,
    "widths": (4, 4, 8, 8),
    "embed_dim": 4,
    "device": "cpu",
    "progress": False,
}


def _tiny_study(mp: pytest.MonkeyPatch) -> None:
    """Regimes default and crowded at 16 px, one alpha, final seeds (0,)."""
    regimes = {
        "default": Regime("default", "tiny", {**TINY, "max_steps": 8}, tune_steps=8),
        "crowded": Regime("crowded", "tiny", {**TINY, "max_digits": 6}, tune_steps=8),
    }
    mp.setattr(regime_study, "REGIMES", regimes)
    mp.setattr(gallery, "REGIMES", regimes)
    mp.setattr(regime_study, "ALPHAS", (0.1,))
    mp.setattr(regime_study, "FINAL_SEEDS", (0,))
    mp.setattr(regime_study, "TEST_SCENES", 4)


@pytest.fixture(scope="module")
def phase1(tmp_path_factory):
    """Phase 1 of the tiny `default` done (runs and rows), `crowded` not started."""
    base = tmp_path_factory.mktemp("study")
    with pytest.MonkeyPatch.context() as mp:
        _tiny_study(mp)
        regime_study.study(["default"], base / "results", base / "runs", "CMD", max_jobs=6)
    return base


@pytest.fixture
def study(phase1, tmp_path, monkeypatch):
    """A fresh copy of the tiny study: (runs dir, results dir)."""
    _tiny_study(monkeypatch)
    for name in ("runs", "results"):
        shutil.copytree(phase1 / name, tmp_path / name)
    return tmp_path / "runs", tmp_path / "results"


def _rows(results):
    return json.loads((results / "regimes" / "tuning.json").read_text())["runs"]


def test_exports_the_tuning_runs_at_rule_1s_setting(study, tmp_path):
    runs, results = study
    out = tmp_path / "gallery"
    m = gallery.export_gallery(results, runs, out, "CMD")
    setting = regime_study.chosen_setting(_rows(results), "default")
    assert m["skipped"] == {
        "crowded": "phase-1 tuning incomplete when the gallery was made (0 of 6 runs)"
    }
    assert [(e["variant"], e["phase"], e["split"]) for e in m["runs"]] == [
        ("ce", "tune", "val"),
        ("contextrast", "tune", "val"),
    ]
    cx = m["runs"][1]
    assert cx["setting"] == {"alpha": setting["alpha"], "warmup": setting["warmup"]}
    assert cx["source_run"] == f"tune/default/contextrast_a0.1_w{setting['warmup']:g}_seed0"
    assert not cx["remade"] and cx["steps"] == 8
    shipped = torch.load(out / "default_contextrast.pt", weights_only=True)
    assert set(shipped) == {"model", "config", "num_classes", "step", "max_steps"}
    row = next(
        r
        for r in _rows(results)
        if r["variant"] == "contextrast"
        and r["seed"] == 0
        and (r["alpha"], r["warmup"]) == (setting["alpha"], setting["warmup"])
    )
    assert shipped["config"] == row["config"]  # as the study recorded it (its folder relative)
    assert all(v.dtype == torch.float16 for v in shipped["model"].values() if v.is_floating_point())
    model, _ = load_model(out / "default_contextrast.pt")
    assert next(model.parameters()).dtype == torch.float32
    source, _ = load_model(runs / cx["source_run"])
    for a, b in zip(model.state_dict().values(), source.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-3)  # fp16 rounding only
    assert cx["miou"] == evaluate_run(out / "default_contextrast.pt", "val", device="cpu")["miou"]
    assert json.loads((out / "manifest.json").read_text()) == m


def test_training_command_reproduces_the_runs_config(study, tmp_path):
    runs, results = study
    m = gallery.export_gallery(results, runs, tmp_path / "g", "CMD")
    rows = {(r["variant"], r["seed"], r["alpha"], r["warmup"]): r for r in _rows(results)}
    for e in m["runs"]:
        row = rows[(e["variant"], 0, *(e["setting"] or {"a": None, "w": None}).values())]
        got = asdict(parse_args(e["command"].split()[3:]))
        want = asdict(config_from_dict(row["config"]))
        assert {**got, "progress": None} == {**want, "progress": None}
        assert e["study_miou"] == row["val_miou"]


def test_final_runs_replace_the_tuning_runs_once_both_are_in(study, tmp_path):
    runs, results = study
    regime_study.study(["default"], results, runs, "CMD", max_jobs=2)  # final ce + contextrast
    m = gallery.export_gallery(results, runs, tmp_path / "g", "CMD", regimes=["default"])
    assert [(e["phase"], e["split"], e["source_run"].split("/")[0]) for e in m["runs"]] == [
        ("final", "test", "final"),
        ("final", "test", "final"),
    ]
    finals = json.loads((results / "regimes.json").read_text())["runs"]
    assert [e["study_miou"] for e in m["runs"]] == [r["miou"] for r in finals]
    assert m["runs"][0]["scenes"] == 500  # the frozen test scenes


def test_a_missing_run_is_skipped_or_retrained_and_checked(study, tmp_path):
    runs, results = study
    out = tmp_path / "g"
    gallery.export_gallery(results, runs, out, "CMD")
    assert (out / "default_ce.pt").exists()
    shipped = (out / "manifest.json").read_text()
    shutil.rmtree(runs / "tune" / "default" / "ce_seed0")
    m = gallery.export_gallery(results, runs, out, "CMD")
    assert (out / "manifest.json").read_text() == shipped, "the shipped runs are the study's own"
    assert (out / "default_ce.pt").exists() and len(m["runs"]) == 2
    (out / "default_ce.pt").unlink()  # no longer shipped either: now the regime is skipped
    m = gallery.export_gallery(results, runs, out, "CMD")
    assert m["runs"] == [] and "tune/default/ce_seed0" in m["skipped"]["default"]
    assert not list(out.glob("*.pt")), "a regime no longer shipped leaves no files behind"
    m = gallery.export_gallery(results, runs, out, "CMD", tmp_path / "remade")
    ce = m["runs"][0]
    assert ce["remade"] and ce["remade_same_as_study"]  # same config, seed, thread count
    assert (tmp_path / "remade" / "tune" / "default" / "ce_seed0" / "checkpoint.pt").exists()


def test_a_run_folder_that_is_not_the_recorded_run_is_refused(study, tmp_path):
    runs, results = study
    src = runs / "tune" / "default" / "ce_seed0" / "checkpoint.pt"
    ckpt = torch.load(src, weights_only=True)
    ckpt["config"]["lr"] = 1.0
    torch.save(ckpt, src)
    with pytest.raises(ValueError, match="lr"):
        gallery.export_gallery(results, runs, tmp_path / "g", "CMD")


def test_cli_gallery_task(study, tmp_path):
    runs, results = study
    out = tmp_path / "cli"
    argv = ["gallery", "--results-dir", str(results), "--runs-dir", str(runs), "--out", str(out)]
    cli.main(argv)
    m = json.loads((out / "manifest.json").read_text())
    assert m["commands"] == ["python -m ctx.experiments " + " ".join(argv)]
    assert [e["file"] for e in m["runs"]] == [
        str(out / "default_ce.pt"),
        str(out / "default_contextrast.pt"),
    ]  # outside the repository: kept as given; inside it, relative (ctx.resources.portable)


def test_updating_some_regimes_keeps_the_others(study, tmp_path):
    runs, results = study
    out = tmp_path / "g"
    first = gallery.export_gallery(results, runs, out, "DEFAULT", regimes=["default"])
    assert first["skipped"] == {}  # crowded not asked for yet
    m = gallery.export_gallery(results, runs, out, "CROWDED", regimes=["crowded"])
    assert m["runs"] == first["runs"] and list(m["skipped"]) == ["crowded"]
    assert m["commands"] == ["DEFAULT", "CROWDED"]
    m = gallery.export_gallery(results, runs, out, "AGAIN", regimes=["crowded"])
    assert m["commands"] == ["DEFAULT", "CROWDED"]  # it changed nothing: not recorded
    shutil.rmtree(runs / "tune" / "default" / "ce_seed0")
    m = gallery.export_gallery(results, runs, out, "DEFAULT2", regimes=["default"])
    assert m["runs"] == first["runs"] and m["commands"] == ["DEFAULT", "CROWDED"]  # kept
    (out / "default_ce.pt").unlink()
    m = gallery.export_gallery(results, runs, out, "DEFAULT2", regimes=["default"])
    assert m["runs"] == [] and list(m["skipped"]) == ["default", "crowded"]
    assert m["commands"] == ["DEFAULT", "CROWDED", "DEFAULT2"]


def test_a_wrong_runs_folder_loses_nothing_that_ships(study, tmp_path):
    """A mistyped --runs-dir finds no run: the shipped weights and manifest stay byte for byte."""
    runs, results = study
    out = tmp_path / "g"
    gallery.export_gallery(results, runs, out, "ALL")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for regimes in (None, ["default"]):
        m = gallery.export_gallery(results, tmp_path / "typo", out, "TYPO", regimes=regimes)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        assert "TYPO" not in m["commands"]


def test_read_manifest_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="ctx.experiments gallery"):
        gallery.read_manifest(tmp_path)
