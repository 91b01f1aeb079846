"""The ablation pipeline end to end at toy size (`--quick`), through its command line."""

import json
import shlex
import threading

import pytest
import torch

from ctx.experiments import ablation, cli
from ctx.experiments.variants import VARIANTS
from ctx.io import locked, read_json, write_json


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Two workers (one per seed) filling one results file, as on a 2-core machine."""
    root = tmp_path_factory.mktemp("quick")
    argv = [
        "ablation",
        "--quick",
        "--results-dir",
        str(root / "results"),
        "--runs-dir",
        str(root / "runs"),
        "--device",
        "cpu",
    ]
    for seed in ("0", "1"):
        cli.main([*argv, "--seeds", seed])
    return root, argv


def test_results_file_has_every_run(quick):
    root, argv = quick
    results = json.loads((root / "results" / "ablation.json").read_text())
    # one command for the whole file: the settings plus the seeds both workers ran
    assert results["command"] == "python -m ctx.experiments " + shlex.join(
        [*argv, "--seeds", "0", "1"]
    )
    assert results["config"]["max_steps"] == ablation.QUICK["max_steps"]
    got = {(r["variant"], r["seed"]) for r in results["runs"]}
    want = {(v, s) for v in [*VARIANTS, "ce_time"] for s in (0, 1)}
    assert got == want
    for r in results["runs"]:
        assert 0 <= r["miou"] <= 100 and len(r["per_class_iou"]) == 11 and r["train_seconds"] > 0
    table = (root / "results" / "ablation.md").read_text()
    assert "| `contextrast` |" in table and (root / "results" / "ablation.png").exists()


def test_recorded_command_reruns_nothing_new(quick):
    root, _ = quick
    path = root / "results" / "ablation.json"
    before = path.read_text()
    command = shlex.split(json.loads(before)["command"])
    assert command[:3] == ["python", "-m", "ctx.experiments"]
    cli.main(command[3:])
    assert path.read_text() == before


def test_file_command_names_only_what_differs_from_the_defaults():
    runs = [{"variant": v, "seed": s} for v in [*VARIANTS, "ce_time"] for s in (0, 1, 2)]
    assert ablation.file_command("P", runs) == "P"
    assert ablation.file_command("P", runs[:2]) == "P --variants ce --seeds 0 1"


def test_locked_makes_concurrent_updates_take_turns(tmp_path):
    path = tmp_path / "counter.json"
    write_json({"n": 0}, path)

    def bump():
        for _ in range(25):
            with locked(path):
                n = read_json(path)["n"]
                write_json({"n": n + 1}, path)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert read_json(path)["n"] == 100


def test_other_settings_are_refused(quick):
    root, argv = quick
    with pytest.raises(SystemExit, match="^error: .*other settings"):
        cli.main([*argv, "--warmup-steps", "3"])


def test_anchor_snapshots_every_evaluation(quick):
    root, _ = quick
    snaps = torch.load(root / "runs" / "contextrast_seed0" / "anchors.pt", weights_only=True)
    hist = json.loads((root / "runs" / "contextrast_seed0" / "history.json").read_text())["history"]
    assert snaps["step"] == [h["step"] for h in hist]
    assert snaps["anchors"][0].shape == (4, 11, ablation.QUICK["embed_dim"])


def test_ce_time_steps_uses_the_fastest_run_of_each_variant():
    runs = [
        {"variant": "ce", "steps": 100, "train_seconds": 10.0},
        {"variant": "ce", "steps": 100, "train_seconds": 14.0},  # slowed by another job
        {"variant": "contextrast", "steps": 100, "train_seconds": 15.0},
        {"variant": "contextrast", "steps": 50, "train_seconds": 9.0},
    ]
    assert ablation.ce_time_steps(runs, 600) == 900  # 600 * 0.15 / 0.10
    assert ablation.ce_time_steps(runs[:2], 600) is None
