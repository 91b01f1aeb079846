"""scripts/gpu_check.py, the GPU cost check, runs end to end in its tiny --dry-run mode (any device)."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.mark.slow
def test_gpu_check_dry_run(capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    summary = gpu_check.main(["--dry-run", "--device", "cpu"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # strict JSON
    assert last == json.loads(json.dumps(summary))
    assert [(r["case"], r["precision"]) for r in last["cases"]] == [
        ("tutorial", "fp32"),
        ("tutorial", "bf16"),
        ("paper", "fp32"),
        ("paper", "bf16"),
    ]
    for row in last["cases"]:
        assert row["ce_steps_per_s"] > 0 and row["contextrast_steps_per_s"] > 0
        assert row["step_time_ratio"] > 0 and row["inference_time_ratio"] > 0
        assert row["peak_memory_ratio"] is None  # CUDA only
        assert row["sync"]["checked"] is False  # CUDA only
    assert last["sync_free"] is None
