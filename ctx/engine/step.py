"""One training step and one evaluation, the two things a run repeats (torchvision's segmentation
reference calls them train_one_epoch and evaluate).

`train_step` is the step `ctx.engine.loop.train` takes, and the one the benchmarks
(benchmarks/overhead.py, benchmarks/bane.py) and scripts/gpu_check.py time: the loss reseeded,
forward under autocast, the loss on float32 logits and embeddings, backward, optimizer and
scheduler. It returns the losses as a tensor on the device, so it never waits for the device.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ctx.engine.config import TrainConfig
from ctx.labels import IGNORE_INDEX
from ctx.metrics import ConfusionMatrix


def make_loss(cfg: TrainConfig, num_classes: int):
    """The loss a config names, callable as loss(logits, embeddings, labels) -> (total, parts)."""
    from ctx.losses import ContextrastLoss, CrossEntropyLoss

    if cfg.loss == "ce":
        # As for Contextrast below: no value check that reads tensors back every step.
        return CrossEntropyLoss(num_classes, ignore_index=IGNORE_INDEX, check_inputs=False)
    if cfg.loss == "contextrast":
        return ContextrastLoss(
            num_classes,
            tau=cfg.tau,
            alpha=cfg.alpha,
            stage_weights=tuple(cfg.stage_weights),
            w_l=cfg.w_l,
            w_h=cfg.w_h,
            fusion=cfg.fusion,
            negatives=cfg.negatives,
            k=cfg.k,
            fill=cfg.fill,
            # inert without BANE: the CLI warns, and the loss refuses it, so it is not passed
            hard_for=cfg.hard_for if cfg.negatives == "bane" else "others",
            stages=None if cfg.stages is None else tuple(cfg.stages),
            ignore_index=IGNORE_INDEX,
            max_positives=cfg.max_positives,
            max_negatives=cfg.max_negatives,
            detach_anchors=cfg.detach_anchors,
            seed=cfg.seed,
            # Training's setting: no value check that reads tensors back to the host (a sync on
            # a GPU); the loop checks the losses it reads back every few steps instead.
            check_inputs=False,
            embed_pixels=cfg.embed_pixels,
        )
    raise ValueError(f"unknown loss {cfg.loss!r}: use ce or contextrast")


def backward(
    model: torch.nn.Module,
    loss_fn,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    contrast: bool,
    bf16: bool = False,
    seed: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The first half of `train_step`: reseed the loss (if it samples and `seed` is given),
    forward (embeddings only when `contrast`) under bf16 autocast if asked, the loss on float32
    logits and embeddings, fresh gradients. Returns the loss's (total, parts)."""
    if seed is not None and hasattr(loss_fn, "reseed"):
        loss_fn.reseed(seed)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
        lazy = contrast and getattr(loss_fn, "embed_pixels", "all") == "sampled"
        out = model(images, return_embeddings="lazy" if lazy else contrast)
        total, parts = loss_fn(out.logits.float(), [e.float() for e in out.embeddings], labels)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    return total, parts


def train_step(
    model: torch.nn.Module,
    loss_fn,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    *,
    contrast: bool,
    bf16: bool = False,
    seed: int | None = None,
) -> torch.Tensor:
    """One training step (`backward`, then the optimizer and scheduler steps). Returns
    [total, ce, pa] detached on the device: reading it is the caller's choice (a host sync)."""
    total, parts = backward(
        model, loss_fn, images, labels, optimizer, contrast=contrast, bf16=bf16, seed=seed
    )
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return torch.stack([total.detach(), parts["ce"], parts["pa"]])


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset: Dataset,
    device: torch.device,
    num_classes: int,
    batch_size: int = 64,
    rank: int = 0,
    world: int = 1,
) -> dict:
    """Metrics (percent) of `model` on `dataset`; under DDP each rank takes every world-th item
    and the confusion matrices are summed."""
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes)
    indices = list(range(rank, len(dataset), world))
    for start in range(0, len(indices), batch_size):
        items = [dataset[i] for i in indices[start : start + batch_size]]
        images = torch.stack([im for im, _ in items]).to(device)
        labels = torch.stack([lab for _, lab in items]).to(device)
        cm.update(model(images).logits.argmax(1), labels)
    cm.all_reduce()
    model.train(was_training)
    return cm.summary()
