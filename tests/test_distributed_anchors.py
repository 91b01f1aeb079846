"""class_anchors under torch.distributed (gloo, 2 CPU processes) equal those of the whole batch."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ctx.anchors import class_anchors

WORLD = 2


def full_batch():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(4, 5, 3, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (4, 3, 4), generator=g)
    labels[0] = 255
    labels[labels == 3] = 255  # class 3 absent everywhere
    labels[2:][labels[2:] == 1] = 2  # class 1 only in rank 0's half
    weights = torch.randn(WORLD, 4, 5, generator=g, dtype=torch.float64)  # one loss per rank
    return emb, labels, weights


def check_rank(rank: int) -> None:
    emb, labels, weights = full_batch()
    half = slice(2 * rank, 2 * rank + 2)
    local = emb[half].clone().requires_grad_()
    anchors, present = class_anchors(local, labels[half], 4)  # distributed auto-detected
    # Expected: the whole batch in one process; the gradient of the sum of both ranks' losses.
    whole = emb.clone().requires_grad_()
    ref, ref_present = class_anchors(whole, labels, 4, distributed=False)
    torch.testing.assert_close(anchors, ref)
    assert present.tolist() == ref_present.tolist() == [True, True, True, False]
    (anchors * weights[rank]).sum().backward()
    (ref * weights.sum(0)).sum().backward()
    torch.testing.assert_close(local.grad, whole.grad[half])
    assert local.grad.abs().sum() > 0


def worker(rank: int, init_file: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=60),
    )
    try:
        check_rank(rank)
        dist.barrier()  # both ranks done communicating before gloo is torn down
    finally:
        dist.destroy_process_group()
    # Skip interpreter finalisation: gloo's worker threads can abort it at random
    # ("terminate called without an active exception"); failures above still raise normally.
    os._exit(0)


@pytest.mark.slow
def test_anchors_are_those_of_the_global_batch(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    mp.start_processes(worker, args=(str(tmp_path / "init"),), nprocs=WORLD, start_method="spawn")


def test_not_distributed_by_default():
    emb, labels, _ = full_batch()
    assert not (dist.is_available() and dist.is_initialized())
    a, _ = class_anchors(emb, labels, 4)
    b, _ = class_anchors(emb, labels, 4, distributed=False)
    torch.testing.assert_close(a, b)
