import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


@pytest.fixture
def tiny_train_config(tmp_path):
    """A training config small enough for a unit test (seconds on a CPU)."""
    from ctx.engine.config import TrainConfig

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
