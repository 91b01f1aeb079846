"""Fakes shared by the tests of ctx.bane_sets, ctx.projection and ctx.lessons: a tiny
`ReferenceRun` like `load_reference`'s, a one-square scene, a tiny untrained model and anchor
similarities worked out entry by entry."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ctx.data import NUM_CLASSES, DigitScenes, SceneConfig
from ctx.engine.config import TrainConfig
from ctx.labels import resize_labels
from ctx.model import ModelConfig, build_model
from ctx.negatives import boundary_negatives
from ctx.reference import ReferenceRun


def fake_ref(seed: int, scenes: int = 4, size: int = 16, epochs: int = 3) -> ReferenceRun:
    """A ReferenceRun like load_reference's: a tiny untrained model, its probe batch on real digit
    scenes, and `epochs` random anchor snapshots (class 5 absent from the first)."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(widths=(4, 4, 8, 8), embed_dim=4), NUM_CLASSES).eval()
    ds = DigitScenes("val", scenes, SceneConfig(image_size=size), 0)
    with torch.no_grad():
        logits, embs = model(ds.images.float() / 255.0, return_embeddings=True)
    pred = logits.argmax(1)
    g = torch.Generator().manual_seed(0)
    stages = []
    for e in embs:
        y, p = resize_labels(ds.labels, e.shape[-2:]), resize_labels(pred, e.shape[-2:])
        bane = boundary_negatives(p, y, NUM_CLASSES, 0.5, generator=g)
        stages.append({"embeddings": e.contiguous(), "labels": y, "pred": p, "bane": bane})
    anchors = F.normalize(torch.randn(epochs, 4, NUM_CLASSES, 4), dim=-1)
    present = torch.ones(epochs, 4, NUM_CLASSES, dtype=torch.bool)
    present[0, :, 5] = False
    anchors[0, :, 5] = 0
    return ReferenceRun(
        model=model,
        history=[],
        config=TrainConfig(image_size=size, data_seed=0, k=0.5, widths=(4, 4, 8, 8), embed_dim=4),
        checkpoint=Path("fake") / "model.pt",
        num_classes=NUM_CLASSES,
        anchors={
            "step": list(range(10, 10 * epochs + 1, 10)),
            "anchors": anchors,
            "present": present,
        },
        probe={"images": ds.images, "labels": ds.labels, "pred": pred, "k": 0.5, "stages": stages},
    )


def square(size: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """One image: a 4x4 square of class 1 (rows/cols 1-4) on background, all predicted 0."""
    labels = torch.zeros(1, size, size, dtype=torch.long)
    labels[0, 1:5, 1:5] = 1
    return torch.zeros_like(labels), labels


def untrained_model() -> torch.nn.Module:
    """A tiny SegmentationNet (widths 4-8, D = 4, 11 classes), seeded, in eval mode."""
    torch.manual_seed(0)
    return build_model(ModelConfig(widths=(4, 4, 8, 8), embed_dim=4), 11).eval()


def by_hand_similarity(a: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of anchors a [C,D], entry by entry; NaN where a class is absent."""
    c = a.shape[0]
    out = torch.full((c, c), math.nan)
    for i in range(c):
        for j in range(c):
            if present[i] and present[j]:
                out[i, j] = float(a[i] @ a[j]) / float(a[i].norm() * a[j].norm())
    return out
