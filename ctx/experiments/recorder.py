"""The anchor recorder: at every evaluation of an ablation run, the per-stage class anchors of a
fixed probe set of validation scenes, appended to the run's anchors.pt (notebook 05 plays them)."""

from __future__ import annotations

from pathlib import Path

import torch

from ctx.anchors import class_anchors
from ctx.engine.config import TrainConfig
from ctx.io import save_checkpoint
from ctx.labels import resize_labels
from ctx.reference import probe_scenes

PROBE_SCENES = 64  # validation scenes whose anchors are snapshotted each epoch


@torch.no_grad()
def stage_anchors(
    model, images: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-stage anchors of `model` (eval mode) on a probe set: ([S,C,D], present [S,C])."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    _, embs = model(images.to(device), return_embeddings=True)
    model.train(was)
    out = [
        class_anchors(
            e, resize_labels(labels.to(device), e.shape[-2:]), model.num_classes, distributed=False
        )
        for e in embs
    ]
    return torch.stack([a for a, _ in out]).cpu(), torch.stack([p for _, p in out]).cpu()


class AnchorRecorder:
    """on_epoch_end hook: appends the probe set's per-stage anchors after every evaluation."""

    def __init__(self, cfg: TrainConfig, path: Path) -> None:
        self.images, self.labels = probe_scenes(cfg, PROBE_SCENES)
        self.path = path
        self.snapshots = (
            torch.load(path, weights_only=True)
            if path.exists()
            else {"step": [], "anchors": [], "present": []}
        )

    def __call__(self, model, entry: dict) -> None:
        if entry["step"] in self.snapshots["step"]:
            return
        anchors, present = stage_anchors(model, self.images, self.labels)
        self.snapshots["step"].append(entry["step"])
        self.snapshots["anchors"].append(anchors.half())
        self.snapshots["present"].append(present)
        save_checkpoint(self.snapshots, self.path)
