"""Data-parallel training with PyTorch's own launcher: torchrun, gloo on the CPU."""

import subprocess
import sys

import pytest
import torch

TINY = [
    "--image-size",
    "32",
    "--train-scenes",
    "32",
    "--val-scenes",
    "8",
    "--batch-size",
    "8",
    "--widths",
    "8",
    "8",
    "16",
    "16",
    "--embed-dim",
    "8",
    "--no-progress",
]


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "ctx.train",
        "--device",
        "cpu",
        "--max-steps",
        "3",
        "--out",
        str(out),
        "--loss",
        "contextrast",
        *TINY,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        assert f"[rank {rank}/2] cpu, 4 images per step" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "history.json"]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and ckpt["step"] == 3
    assert proc.stdout.count('"checkpoint"') == 1, "only rank 0 reports"
