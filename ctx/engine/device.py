"""Where a run executes: the device a name asks for, and the data-parallel (DDP) set-up.

`Place(rank, world, device)` is all the loop needs to know about processes: `place(name)` reads
torchrun's environment (one process without it), and `wrap`, `barrier` and `any_rank` are the
only DDP calls training makes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def resolve_device(name: str = "auto") -> torch.device:
    """ "auto" picks cuda, then mps, then cpu; an explicit name must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda (or cuda:N) or mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r} asked for but CUDA is not available here: use --device auto or cpu"
        )
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ValueError(
            f"device {name!r} asked for but this machine has {torch.cuda.device_count()} CUDA "
            f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}: use one of them or cuda"
        )
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError(
            "device 'mps' asked for but MPS is not available here: use --device auto or cpu"
        )
    return torch.device(name)


@dataclass(frozen=True)
class Place:
    """This process's rank among `world` processes, and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def ddp(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that saves, prints and calls back."""
        return self.rank == 0


def place(device: str = "auto") -> Place:
    """This process's Place; initialises torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Place(0, 1, resolve_device(device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Place(rank, world, dev)


def wrap(model: torch.nn.Module, where: Place, find_unused: bool) -> torch.nn.Module:
    """The module to train: `model` itself, or under DDP `model` wrapped to average gradients
    (`find_unused`: some parameters get no gradient in some steps, e.g. the heads under CE)."""
    if not where.ddp:
        return model
    return DistributedDataParallel(
        model,
        device_ids=[where.device.index] if where.device.type == "cuda" else None,
        find_unused_parameters=find_unused,
    )


def barrier(where: Place) -> None:
    """Wait for every process (nothing to wait for in one)."""
    if where.ddp:
        dist.barrier()


def any_rank(flag: bool, where: Place) -> bool:
    """Whether `flag` is set on any process (a collective call under DDP)."""
    if not where.ddp:
        return flag
    t = torch.tensor(float(flag), device=where.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
