import os

import pytest
import torch

os.environ.setdefault("CTX_FAST", "1")
# Share the cores between xdist workers (and the notebook kernels they start): oversubscribed
# OpenMP threads spin against each other and run many times slower on a 2-core machine.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_threads = max(1, (os.cpu_count() or 1) // _workers)
os.environ.setdefault("OMP_NUM_THREADS", str(_threads))
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def tiny_train_config(tmp_path):
    """A training config small enough for a unit test (seconds on a CPU)."""
    from ctx.train import TrainConfig

    return TrainConfig(
        image_size=32,
        train_scenes=32,
        val_scenes=8,
        batch_size=8,
        max_steps=6,
        widths=(8, 8, 16, 16),
        embed_dim=8,
        out=str(tmp_path / "run"),
        device="cpu",
        progress=False,
    )
