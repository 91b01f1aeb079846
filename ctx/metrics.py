"""Segmentation metrics: a confusion matrix accumulated on the device, mIoU, per-class IoU,
pixel accuracy, and boundary mIoU (IoU counted only near ground-truth boundaries)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ctx.labels import (
    IGNORE_INDEX,
    check_ignore_index,
    check_int,
    check_labels,
    check_num_classes,
    check_pred,
)


def boundary_band(
    labels: torch.Tensor, width: int = 2, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Pixels within `width` pixels (Chebyshev) of a change of ground-truth label: [B,H,W] bool.
    Ignore pixels are never in the band."""
    lab = labels[:, None]  # compared as integers: a float copy would merge ids above 2**24
    edge = torch.zeros_like(lab, dtype=torch.bool)
    edge[..., 1:, :] |= lab[..., 1:, :] != lab[..., :-1, :]
    edge[..., :-1, :] |= lab[..., 1:, :] != lab[..., :-1, :]
    edge[..., :, 1:] |= lab[..., :, 1:] != lab[..., :, :-1]
    edge[..., :, :-1] |= lab[..., :, 1:] != lab[..., :, :-1]
    if width > 1:
        k = 2 * (width - 1) + 1
        edge = F.max_pool2d(edge.float(), k, stride=1, padding=width - 1) > 0
    return edge[:, 0] & (labels != ignore_index)


class ConfusionMatrix:
    """Accumulates a [C,C] confusion matrix (rows = truth, columns = prediction) on the device
    of the first update, plus a second one restricted to the ground-truth boundary band."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, boundary_width: int = 2):
        check_num_classes(num_classes)
        check_ignore_index(ignore_index)
        check_int("boundary_width", boundary_width, ge=1)
        self.num_classes, self.ignore_index, self.boundary_width = (
            num_classes,
            ignore_index,
            boundary_width,
        )
        self.mat: torch.Tensor | None = None
        self.boundary: torch.Tensor | None = None

    def _count(self, pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        c = self.num_classes
        return torch.bincount(labels * c + pred, minlength=c * c).reshape(c, c)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, labels: torch.Tensor) -> None:
        """pred int [B,H,W] (argmax), labels int64 [B,H,W] with ignore values.

        pred must hold class ids in [0, C) wherever labels are not ignore **[choice: values at
        ignore pixels are never read, so they are not checked]**; a float or out-of-range pred
        raises ValueError instead of being truncated or counted as another class.
        """
        check_labels(labels, self.num_classes, self.ignore_index)
        check_pred(pred, labels, self.num_classes, self.ignore_index)
        if self.mat is not None and self.mat.device != labels.device:
            raise ValueError(
                f"this matrix lives on {self.mat.device} (its first update) but the labels "
                f"are on {labels.device}"
            )
        valid = labels != self.ignore_index
        pred = pred.long()
        if self.mat is None:
            z = torch.zeros(
                self.num_classes, self.num_classes, dtype=torch.long, device=labels.device
            )
            self.mat, self.boundary = z, z.clone()
        self.mat += self._count(pred[valid], labels[valid])
        band = boundary_band(labels, self.boundary_width, self.ignore_index)
        self.boundary += self._count(pred[band], labels[band])

    def all_reduce(self) -> None:
        """Sum the matrices over processes (call on every rank under torch.distributed)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and self.mat is not None:
            dist.all_reduce(self.mat)
            dist.all_reduce(self.boundary)

    def _matrix(self, boundary: bool) -> torch.Tensor:
        if self.mat is None:
            raise ValueError("no predictions accumulated yet: call update() first")
        return (self.boundary if boundary else self.mat).double()

    def per_class_iou(self, boundary: bool = False) -> torch.Tensor:
        """[C] IoU per class; NaN for a class absent from both truth and prediction."""
        m = self._matrix(boundary)
        tp = m.diag()
        union = m.sum(0) + m.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))

    def miou(self, boundary: bool = False) -> float:
        """Mean IoU over the classes that occur (in truth or prediction), as a fraction;
        NaN when no pixel was counted (e.g. an empty boundary band: one class per image)."""
        iou = self.per_class_iou(boundary)
        return float(iou[~iou.isnan()].mean()) if (~iou.isnan()).any() else float("nan")

    def pixel_accuracy(self) -> float:
        """Fraction of labelled pixels predicted right; **[choice]** NaN when none was counted
        (as `miou`), not 0.0, which would read as an accuracy that was measured."""
        m = self._matrix(False)
        total = m.sum()
        return float(m.diag().sum() / total) if total > 0 else float("nan")

    def summary(self) -> dict:
        """Percentages: miou, boundary_miou, pixel_acc, per_class_iou (list, NaN -> None)."""
        per = self.per_class_iou()
        return {
            "miou": 100 * self.miou(),
            "boundary_miou": 100 * self.miou(boundary=True),
            "pixel_acc": 100 * self.pixel_accuracy(),
            "per_class_iou": [None if v != v else 100 * v for v in per.tolist()],
        }
