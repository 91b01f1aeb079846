import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

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


def test_summary_in_percent_by_hand():
    """The band of width 1 is every labelled pixel next to a label change: all but (0, 3)."""
    labels = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 0, 2, 1]]])
    cm = ConfusionMatrix(3, boundary_width=1)
    cm.update(pred, labels)
    assert cm.boundary.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    s = cm.summary()
    assert s["miou"] == pytest.approx(100 * (1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert s["boundary_miou"] == pytest.approx(100 * (1 / 3 + 2 / 3 + 1 / 2) / 3)  # 50 %
    assert s["pixel_acc"] == pytest.approx(100 * 5 / 7)
    assert s["per_class_iou"] == pytest.approx([100 / 3, 75.0, 50.0])


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


@pytest.mark.parametrize(
    "pred, match",
    [
        (torch.full((1, 2, 2), 3), "outside"),  # == C: would count as the next row's class
        (torch.full((1, 2, 2), -1), "outside"),
        (torch.full((1, 2, 2), 1.7), "integer"),  # would be truncated to 1
        (torch.ones(1, 2, 2, dtype=torch.bool), "integer"),
        ([[[0, 1], [2, 0]]], "torch.Tensor"),
    ],
)
def test_bad_pred_is_a_clear_error(pred, match):
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=match):
        cm.update(pred, torch.zeros(1, 2, 2, dtype=torch.long))
    assert cm.mat is None  # nothing was counted


def test_pred_at_ignore_pixels_is_not_read():
    labels = torch.tensor([[[0, 255], [1, 1]]])
    pred = torch.tensor([[[0, 99], [1, 0]]])
    cm = ConfusionMatrix(2)
    cm.update(pred, labels)
    assert cm.mat.tolist() == [[1, 0], [1, 1]]


@pytest.mark.parametrize(
    "kwargs", [dict(num_classes=0), dict(num_classes=2.0), dict(boundary_width=0)]
)
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ConfusionMatrix(**{"num_classes": 3, **kwargs})


def test_nothing_counted_is_nan_not_zero():
    cm = ConfusionMatrix(3)
    cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 255))
    assert math.isnan(cm.miou()) and math.isnan(cm.pixel_accuracy())


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 8), st.integers(1, 8)),
    num_classes=st.integers(1, 5),
    ignore_frac=st.sampled_from([0.0, 0.3, 1.0]),
    width=st.integers(1, 3),
    updates=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_property_metrics_are_consistent(shape, num_classes, ignore_frac, width, updates, seed):
    """Counts add up to the labelled pixels; IoUs are in [0, 1] or NaN exactly for classes
    absent from truth and prediction; mIoU and accuracy are NaN only when nothing was counted."""
    g = torch.Generator().manual_seed(seed)
    cm = ConfusionMatrix(num_classes, boundary_width=width)
    labelled = 0
    for _ in range(updates):
        labels = torch.randint(0, num_classes, shape, generator=g)
        labels[torch.rand(shape, generator=g) < ignore_frac] = 255
        pred = torch.randint(0, num_classes, shape, generator=g)
        cm.update(pred, labels)
        labelled += int((labels != 255).sum())
    assert cm.mat.sum() == labelled and cm.boundary.sum() <= labelled
    for boundary in (False, True):
        m = cm.boundary if boundary else cm.mat
        iou = cm.per_class_iou(boundary)
        occurs = (m.sum(0) + m.sum(1)) > 0
        assert torch.equal(torch.isnan(iou), ~occurs)
        assert ((iou[occurs] >= 0) & (iou[occurs] <= 1)).all()
        assert math.isnan(cm.miou(boundary)) == (m.sum() == 0)
    assert math.isnan(cm.pixel_accuracy()) == (labelled == 0)


def _numpy_confusion(pred: np.ndarray, labels: np.ndarray, c: int, keep: np.ndarray) -> np.ndarray:
    m = np.zeros((c, c), np.int64)
    np.add.at(m, (labels[keep], pred[keep]), 1)
    return m


def _scipy_band(labels: np.ndarray, width: int, ignore: int) -> np.ndarray:
    out = np.zeros(labels.shape, bool)
    for i, lab in enumerate(labels):
        edge = np.zeros(lab.shape, bool)
        dy, dx = lab[1:] != lab[:-1], lab[:, 1:] != lab[:, :-1]
        edge[1:] |= dy
        edge[:-1] |= dy
        edge[:, 1:] |= dx
        edge[:, :-1] |= dx
        size = 2 * (width - 1) + 1
        out[i] = ndimage.maximum_filter(edge, size=size, mode="constant", cval=False)
    return out & (labels != ignore)


@pytest.mark.parametrize("seed", range(6))
def test_metrics_match_numpy_and_scipy_oracles(seed):
    """Confusion counts (np.add.at), IoU/mIoU/accuracy from them, and the boundary band
    (scipy.ndimage.maximum_filter of the 4-neighbour label changes) on random maps."""
    rng = np.random.default_rng(seed)
    c, width = int(rng.integers(2, 7)), int(rng.integers(1, 5))
    shape = (int(rng.integers(1, 4)), int(rng.integers(3, 30)), int(rng.integers(3, 30)))
    labels = rng.integers(0, c, shape)
    labels[rng.random(shape) < 0.1] = 255
    pred = rng.integers(0, c, shape)
    cm = ConfusionMatrix(c, boundary_width=width)
    cm.update(torch.from_numpy(pred), torch.from_numpy(labels))
    band = _scipy_band(labels, width, 255)
    assert np.array_equal(boundary_band(torch.from_numpy(labels), width).numpy(), band)
    for mask, boundary in ((labels != 255, False), (band, True)):
        m = _numpy_confusion(pred, labels, c, mask)
        assert np.array_equal(cm._matrix(boundary).long().numpy(), m)
        tp, union = np.diag(m), m.sum(0) + m.sum(1) - np.diag(m)
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
        got = cm.per_class_iou(boundary).numpy()
        np.testing.assert_allclose(got, iou, equal_nan=True)
        want = np.nanmean(iou) if np.isfinite(iou).any() else np.nan
        assert cm.miou(boundary) == pytest.approx(want, nan_ok=True)
    m = _numpy_confusion(pred, labels, c, labels != 255)
    assert cm.pixel_accuracy() == pytest.approx(np.trace(m) / m.sum())
