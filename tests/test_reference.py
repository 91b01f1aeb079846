"""The reference runs: exported from an ablation's seed-0 runs (at toy size), loaded back."""

import json
from pathlib import Path

import pytest
import torch

from ctx import reference
from ctx.engine.config import TrainConfig, config_from_dict
from ctx.engine.loop import RunResult
from ctx.evaluate import evaluate_run
from ctx.experiments import cli
from ctx.experiments.ablation import QUICK


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The seed-0 ce and contextrast runs of a quick ablation."""
    root = tmp_path_factory.mktemp("quick")
    cli.main(
        [
            "ablation",
            "--quick",
            "--variants",
            "ce",
            "contextrast",
            "--seeds",
            "0",
            "--results-dir",
            str(root / "results"),
            "--runs-dir",
            str(root / "runs"),
            "--device",
            "cpu",
        ]
    )
    return root / "runs"


def test_reference_export_and_load(runs, tmp_path, monkeypatch):
    cli.main(["reference", "--quick", "--runs-dir", str(runs), "--reference-dir", str(tmp_path)])
    monkeypatch.setenv("CTX_REFERENCE_DIR", str(tmp_path))
    assert reference.reference_dir() == tmp_path
    ref = reference.load_reference("contextrast")
    assert isinstance(ref, reference.ReferenceRun) and isinstance(ref, RunResult)
    saved = torch.load(tmp_path / "contextrast" / "model.pt", weights_only=True)
    assert isinstance(ref.config, TrainConfig) and ref.config == config_from_dict(saved["config"])
    assert ref.config.loss == "contextrast" and Path(ref.config.out).name == "contextrast_seed0"
    assert ref.checkpoint == tmp_path / "contextrast" / "model.pt"
    assert ref.history == saved["history"] and ref.num_classes == saved["num_classes"] == 11
    assert not ref.model.training
    probe = ref.probe
    assert probe["images"].shape[0] == reference.ATLAS_SCENES
    for st in probe["stages"]:
        assert st["bane"].shape[:2] == (reference.ATLAS_SCENES, 11)
        # BANE picks are wrongly predicted pixels of their own class
        wrong = (st["pred"] != st["labels"])[:, None]
        assert not (st["bane"] & ~wrong).any()
    assert ref.anchors["anchors"].dim() == 4
    # the manifest: the command, each run's config, and test metrics of the shipped weights
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["command"].startswith("python -m ctx.experiments reference --quick")
    assert manifest["runs"]["contextrast"]["config"] == saved["config"]
    for variant in ("ce", "contextrast"):
        run = manifest["runs"][variant]
        assert run["config"]["loss"] == variant and run["steps"] == QUICK["max_steps"]
        got = evaluate_run(tmp_path / variant, "test", 16, device="cpu")
        assert run["test"]["miou"] == pytest.approx(got["miou"]) and run["test"]["scenes"] == 16
        assert run["check"].endswith(f"{variant} --split test")
    monkeypatch.setenv("CTX_REFERENCE_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="ctx.experiments reference"):
        reference.load_reference("ce")


def test_probe_scenes_are_the_first_validation_scenes(tiny_train_config):
    images, labels = reference.probe_scenes(tiny_train_config, 3)
    ds = tiny_train_config.digit_scenes("val", 3)
    assert images.shape == (3, 3, 32, 32) and images.max() <= 1.0
    assert (labels == ds.labels).all()
