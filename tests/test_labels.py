import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ctx.labels import (
    check_flag,
    check_generator,
    check_ignore_index,
    check_int,
    check_labels,
    check_num_classes,
    check_scalar,
    check_seed,
    resize_labels,
    stage_prediction,
)


@pytest.mark.parametrize(
    "shape",
    [
        (64, 64, 32, 32),  # integer factors take the strided-slice path
        (64, 64, 4, 4),
        (48, 64, 16, 8),  # different integer factors per axis
        (64, 53, 32, 7),  # integer on one axis only: the gather path
        (37, 53, 10, 7),
        (360, 480, 45, 60),
        (7, 9, 20, 30),  # upsampling
    ],
)
def test_resize_labels_equals_interpolate_nearest(shape):
    h_in, w_in, h, w = shape
    lab = torch.randint(0, 250, (2, h_in, w_in))
    ref = F.interpolate(lab[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
    assert torch.equal(resize_labels(lab, (h, w)), ref)


def test_resize_labels_keeps_leading_dims_and_dtype():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float64).view(2, 3, 4, 4)
    out = resize_labels(x, (2, 2))
    assert out.shape == (2, 3, 2, 2) and out.dtype == torch.float64
    assert out[0, 0].tolist() == [[0, 2], [8, 10]]


def test_check_labels_messages():
    with pytest.raises(ValueError, match="integer"):
        check_labels(torch.zeros(1, 2, 2), 3)
    with pytest.raises(ValueError, match=r"\[B,H,W\]"):
        check_labels(torch.zeros(2, 2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="outside"):
        check_labels(torch.full((1, 2, 2), 3), 3)
    check_labels(torch.full((1, 2, 2), 255), 3)  # the ignore value is fine


@pytest.mark.parametrize("size", [(8, 8), (5, 7), (16, 16)])
def test_stage_prediction_is_the_resized_argmax(size):
    logits = torch.randn(2, 5, 16, 16, generator=torch.Generator().manual_seed(0))
    pred = stage_prediction(logits, size)
    assert pred.dtype == torch.int64
    assert torch.equal(pred, resize_labels(logits.argmax(1), size))


def test_check_scalar_accepts_numbers_and_refuses_the_rest():
    for ok in (0.1, 1, np.float32(0.5), torch.tensor(0.1)):
        check_scalar("tau", ok, gt=0)
    for bad in ("0.1", None, True, float("nan"), float("inf"), torch.ones(2), 1j):
        with pytest.raises(ValueError, match="tau must be a finite number > 0"):
            check_scalar("tau", bad, gt=0)
    with pytest.raises(
        ValueError, match=r"k must be a finite number > 0 and <= 1, got 1.5 \(hint\)"
    ):
        check_scalar("k", 1.5, gt=0, le=1, hint="(hint)")
    check_scalar("alpha", 0, ge=0)
    with pytest.raises(ValueError, match=">= 0"):
        check_scalar("alpha", -0.01, ge=0)


def test_integer_flag_and_generator_checks():
    check_int("cap", np.int32(3), ge=1)
    check_int("seed", -5)  # no bound asked for
    for bad in (True, 2.0, "3", None, 0):  # True would count as 1
        with pytest.raises(ValueError, match="cap must be an int >= 1, got"):
            check_int("cap", bad, ge=1)
    check_num_classes(np.int64(3))
    for bad in (0, True, 2.0, "3", None):
        with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
            check_num_classes(bad)
    for bad in (255.0, None, "255", False):
        with pytest.raises(ValueError, match="ignore_index must be an int"):
            check_ignore_index(bad)
    check_flag("fill", False)
    for bad in ("no", 0, None):  # "no" is truthy: it would switch the setting on
        with pytest.raises(ValueError, match="fill must be True or False"):
            check_flag("fill", bad)
    check_generator(None, torch.device("cpu"))
    check_generator(torch.Generator(), torch.device("cpu"))
    with pytest.raises(ValueError, match="torch.Generator, got int"):
        check_generator(3, torch.device("cpu"))
    with pytest.raises(ValueError, match="lives on cpu but the labels on meta"):
        check_generator(torch.Generator(), torch.device("meta"))


def test_check_seed_takes_64_bit_ints_only():
    for ok in (0, 1, 2**63 - 1):
        check_seed(ok)
        torch.Generator().manual_seed(ok)  # torch takes them all
    for bad in (-1, 2**63, 2**70, True, 1.0, "1", None):
        with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*63\)"):
            check_seed(bad)


def test_resize_labels_refuses_empty_maps():
    with pytest.raises(ValueError, match="at least 1x1"):
        resize_labels(torch.zeros(1, 0, 4, dtype=torch.long), (2, 2))
    with pytest.raises(ValueError, match="at least 1x1"):
        resize_labels(torch.zeros(1, 4, 4, dtype=torch.long), (0, 2))
