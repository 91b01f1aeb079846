import math

import pytest
import torch

from ctx.metrics import ConfusionMatrix, boundary_band


def test_confusion_and_iou_by_hand():
    labels = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 0, 2, 1]]])
    cm = ConfusionMatrix(3)
    cm.update(pred, labels)
    assert cm.mat.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    iou = cm.per_class_iou().tolist()
    assert iou == pytest.approx([1 / 3, 3 / 4, 1 / 2])
    assert cm.miou() == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert cm.pixel_accuracy() == pytest.approx(5 / 7)


def test_absent_class_is_nan_and_excluded():
    cm = ConfusionMatrix(4)
    cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    iou = cm.per_class_iou()
    assert iou[0] == 1 and all(math.isnan(v) for v in iou[1:].tolist())
    assert cm.miou() == 1.0
    assert cm.summary()["per_class_iou"][1] is None


def test_boundary_band_by_hand():
    labels = torch.zeros(1, 5, 6, dtype=torch.long)
    labels[0, :, 3:] = 1
    band = boundary_band(labels, width=1)
    assert band[0].nonzero()[:, 1].unique().tolist() == [2, 3]
    band2 = boundary_band(labels, width=2)
    assert band2[0].nonzero()[:, 1].unique().tolist() == [1, 2, 3, 4]
    labels[0, 0, 0] = 255
    assert not boundary_band(labels, 2)[0, 0, 0]


def test_boundary_miou_only_counts_the_band():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :, 4:] = 1
    pred = labels.clone()
    pred[0, :, 0] = 1  # wrong far from the boundary
    cm = ConfusionMatrix(2, boundary_width=1)
    cm.update(pred, labels)
    assert cm.miou(boundary=True) == 1.0 and cm.miou() < 1.0


def test_bad_input():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="outside"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match="differ in shape"):
        cm.update(torch.zeros(1, 2, 3, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="update"):
        ConfusionMatrix(3).miou()
