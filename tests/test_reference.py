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


def test_shipped_reference_scores_what_its_manifest_says():
    """The test metrics data/reference/manifest.json records for each shipped run are what its
    model.pt scores (`python -m ctx.evaluate data/reference/<variant> --split test`), and the
    regime study's own score of the same run agrees."""
    manifest = reference.reference_manifest()
    runs = manifest.get("runs", {})
    if not runs:
        pytest.skip("this manifest records no test metrics (exported before the regime study)")
    for variant, run in runs.items():
        want = run["test"]
        got = evaluate_run(reference.reference_dir() / variant, "test", want["scenes"], "cpu")
        for key in ("miou", "boundary_miou", "pixel_acc"):
            assert got[key] == pytest.approx(want[key], abs=0.01), (variant, key)
        study = manifest.get("study_test_miou", {}).get(variant)
        if study is not None:
            assert study == pytest.approx(want["miou"], abs=0.01), variant
