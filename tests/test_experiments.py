"""The ablation pipeline end to end at toy size (`--quick`), and the reference export."""

import json

import pytest
import torch

from ctx import experiments


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("quick")
    argv = [
        "ablation",
        "--quick",
        "--seeds",
        "0",
        "1",
        "--results-dir",
        str(root / "results"),
        "--runs-dir",
        str(root / "runs"),
        "--device",
        "cpu",
    ]
    experiments.main(argv)
    return root, argv


def test_results_file_has_every_run(quick):
    root, argv = quick
    results = json.loads((root / "results" / "ablation.json").read_text())
    assert results["command"] == "python -m ctx.experiments " + " ".join(argv)
    assert results["config"]["max_steps"] == experiments.QUICK["max_steps"]
    got = {(r["variant"], r["seed"]) for r in results["runs"]}
    want = {(v, s) for v in [*experiments.VARIANTS, "ce_time"] for s in (0, 1)}
    assert got == want
    for r in results["runs"]:
        assert 0 <= r["miou"] <= 100 and len(r["per_class_iou"]) == 11 and r["train_seconds"] > 0
    table = (root / "results" / "ablation.md").read_text()
    assert "| `contextrast` |" in table and (root / "results" / "ablation.png").exists()


def test_resume_runs_nothing_new(quick):
    root, argv = quick
    before = (root / "results" / "ablation.json").read_text()
    experiments.main(argv)
    assert (root / "results" / "ablation.json").read_text() == before


def test_other_settings_are_refused(quick):
    root, argv = quick
    with pytest.raises(ValueError, match="other settings"):
        experiments.main([*argv, "--warmup-steps", "3"])


def test_anchor_snapshots_every_evaluation(quick):
    root, _ = quick
    snaps = torch.load(root / "runs" / "contextrast_seed0" / "anchors.pt", weights_only=True)
    hist = json.loads((root / "runs" / "contextrast_seed0" / "history.json").read_text())["history"]
    assert snaps["step"] == [h["step"] for h in hist]
    assert snaps["anchors"][0].shape == (4, 11, experiments.QUICK["embed_dim"])


def test_reference_export_and_load(quick, tmp_path, monkeypatch):
    root, _ = quick
    experiments.main(
        ["reference", "--runs-dir", str(root / "runs"), "--reference-dir", str(tmp_path)]
    )
    monkeypatch.setenv("CTX_REFERENCE_DIR", str(tmp_path))
    ref = experiments.load_reference("contextrast")
    probe = ref["probe"]
    assert probe["images"].shape[0] == experiments.ATLAS_SCENES
    for st in probe["stages"]:
        assert st["bane"].shape[:2] == (experiments.ATLAS_SCENES, 11)
        # BANE picks are wrongly predicted pixels of their own class
        wrong = (st["pred"] != st["labels"])[:, None]
        assert not (st["bane"] & ~wrong).any()
    assert ref["anchors"]["anchors"].dim() == 4
    monkeypatch.setenv("CTX_REFERENCE_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="ctx.experiments reference"):
        experiments.load_reference("ce")
