"""ctx.engine.device: where a run executes (one process here; tests/test_torchrun.py runs DDP)."""

import pytest
import torch

from ctx.engine.device import Place, any_rank, barrier, place, resolve_device, wrap


def test_one_process_place(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    where = place("cpu")
    assert where == Place(0, 1, torch.device("cpu")) and where.main and not where.ddp
    model = torch.nn.Linear(2, 2)
    assert wrap(model, where, find_unused=True) is model  # DDP only with several processes
    assert any_rank(True, where) and not any_rank(False, where)
    barrier(where)  # nothing to wait for


def test_resolve_device_names_what_is_missing():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="unknown device 'cuda:x'"):
        resolve_device("cuda:x")


def test_resolve_device_names_the_cuda_index_asked_for(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device 'cuda:3' asked for but CUDA is not available"):
        resolve_device("cuda:3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"has 2 CUDA device\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:2")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
