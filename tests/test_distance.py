"""The exact distance transform `ctx.negatives.distance_transform` and its two algorithms in
`ctx.distance` (sparse on the CPU, dense elsewhere and in training) against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from edt_helpers import blobs, scipy_edt
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ctx import distance
from ctx.negatives import distance_transform


def assert_matches_scipy(mask: torch.Tensor) -> None:
    """Both algorithms: the sparse one (`distance_transform` on the CPU) and the dense one
    (on other devices, and BANE's in training)."""
    expected = scipy_edt(mask)
    for got in (distance_transform(mask), dense_distance(mask)):
        assert got.dtype == torch.float32 and got.shape == mask.shape
        np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-6, atol=1e-5)


def dense_distance(mask: torch.Tensor) -> torch.Tensor:
    if mask.numel() == 0:
        return torch.zeros(mask.shape)
    return distance.dense_distance_transform(mask)


# ------------------------------------------------------------------- distance_transform


def test_hand_computed_row():
    mask = torch.tensor([[False, True, True, True, False]])
    assert distance_transform(mask).tolist() == [[0.0, 1.0, 2.0, 1.0, 0.0]]


def test_hand_computed_square():
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[0, 0] = False
    expected = torch.tensor([[0, 1, 2], [1, 2**0.5, 5**0.5], [2, 5**0.5, 8**0.5]])
    torch.testing.assert_close(distance_transform(mask), expected.float())


@pytest.mark.parametrize("density", [0.05, 0.5, 0.95])
@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (4, 32, 32), (9, 40), (40, 9)])
def test_random_masks_match_scipy(density, shape):
    g = torch.Generator().manual_seed(int(density * 100) + shape[-1])
    assert_matches_scipy(torch.rand(shape, generator=g) < density)


def test_blobs_and_bands_match_scipy():
    assert_matches_scipy(blobs((3, 4, 48, 40), seeds=5, radius=4))
    assert_matches_scipy(blobs((2, 64, 64), seeds=2, radius=20, seed=1))  # distances > 16
    mask = torch.zeros(2, 30, 30, dtype=torch.bool)
    mask[0, 10:14, :] = True  # a horizontal band across the map
    mask[1, :, 5:25] = True  # a wide vertical band
    assert_matches_scipy(mask)


def test_empty_single_pixel_and_thin_lines():
    empty = torch.zeros(2, 7, 9, dtype=torch.bool)
    assert torch.equal(distance_transform(empty), torch.zeros(2, 7, 9))
    one = torch.zeros(7, 9, dtype=torch.bool)
    one[3, 4] = True
    assert distance_transform(one)[3, 4] == 1.0 and distance_transform(one).sum() == 1.0
    lines = torch.zeros(4, 16, 20, dtype=torch.bool)
    lines[0, 5, :] = True  # horizontal line touching both borders
    lines[1, :, 7] = True  # vertical line
    lines[2, torch.arange(16), torch.arange(16)] = True  # diagonal
    lines[3, 0, :] = True  # along the border
    assert_matches_scipy(lines)


def test_single_false_pixel_is_far_for_everyone():
    mask = torch.ones(3, 64, 50, dtype=torch.bool)
    mask[0, 0, 0] = False
    mask[1, 63, 49] = False
    mask[2, 30, 20] = False
    assert_matches_scipy(mask)


def test_full_map_is_inf_and_leaves_others_alone():
    mask = torch.rand(3, 12, 10, generator=torch.Generator().manual_seed(0)) < 0.6
    mask[1] = True
    out = distance_transform(mask)
    assert torch.isinf(out[1]).all()
    np.testing.assert_allclose(out[[0, 2]].numpy(), scipy_edt(mask[[0, 2]]), atol=1e-5)
    assert torch.isinf(distance_transform(torch.ones(4, 5, dtype=torch.bool))).all()
    # the +inf convention is METHOD.md's [choice], a parameter: only full maps take the value
    for value in (0.0, 7.5, 1e9):
        other = distance_transform(mask, all_true_value=value)
        assert (other[1] == value).all() and torch.equal(other[[0, 2]], out[[0, 2]])
    for bad in (-1.0, float("nan"), None, "inf", 1e40, torch.tensor([1.0, 2.0]), np.array([1, 2])):
        with pytest.raises(ValueError, match="all_true_value must be"):
            distance_transform(mask, all_true_value=bad)


def test_shapes_degenerate_and_non_contiguous():
    for shape in [(0, 5, 5), (3, 0, 4), (3, 4, 0), (2, 2, 0, 0)]:
        out = distance_transform(torch.zeros(shape, dtype=torch.bool))
        assert out.shape == shape and out.dtype == torch.float32
    g = torch.Generator().manual_seed(3)
    assert_matches_scipy(torch.rand(2, 2, 2, 11, 13, generator=g) < 0.7)  # 3 leading dims
    assert_matches_scipy(torch.rand(1, 25, generator=g) < 0.8)  # one row
    assert_matches_scipy(torch.rand(25, 1, generator=g) < 0.8)  # one column
    base = torch.rand(3, 14, 21, generator=g) < 0.7
    assert_matches_scipy(base.transpose(-1, -2))  # non-contiguous view
    assert_matches_scipy(base[1, 3:])  # a view at an odd storage offset


def test_small_chunks_give_the_same_result(monkeypatch):
    monkeypatch.setattr(distance, "_CHUNK", 7)  # many chunks per round
    monkeypatch.setattr(distance, "_DENSE_CHUNK", 50)  # one row per chunk
    assert_matches_scipy(blobs((2, 3, 40, 40), seeds=3, radius=9, seed=2))


def test_float64_path_for_long_maps():
    mask = torch.ones(1, 4300, dtype=torch.bool)  # (W-1)^2 >= 2^24: exact in float64 inside
    mask[0, 0] = mask[0, -1] = False
    out = distance_transform(mask)
    assert out[0, 2150].item() == 2149.0
    assert_matches_scipy(mask)


def test_distance_transform_rejects_bad_masks():
    with pytest.raises(ValueError, match=r"mask\.bool\(\)"):
        distance_transform(torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"\[\.\.\., H, W\]"):
        distance_transform(torch.zeros(4, dtype=torch.bool))


@settings(max_examples=30, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_property_matches_scipy(mask):
    assert_matches_scipy(torch.from_numpy(mask))


@settings(max_examples=15, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9))))
def test_property_batched_equals_one_by_one(masks):
    batch = distance_transform(torch.from_numpy(masks))
    for i, one in enumerate(masks):
        assert torch.equal(batch[i], distance_transform(torch.from_numpy(one)))
    torch.testing.assert_close(dense_distance(torch.from_numpy(masks)), batch, rtol=0, atol=0)


@settings(max_examples=30, deadline=None)
@given(
    st.tuples(st.integers(1, 3), st.integers(1, 11), st.integers(1, 11)),
    st.integers(1, 5),
    st.integers(0, 2**16),
)
def test_property_dense_transform_of_label_maps(shape, num_ids, seed):
    """BANE's transform of an id map: for every id, scipy's EDT of that id's mask."""
    ids = torch.randint(-1, num_ids, shape, generator=torch.Generator().manual_seed(seed))
    sq, inf = distance.squared_distance_dense(ids)
    got = torch.where(sq >= inf, math.inf, sq.double().sqrt())
    for i in range(-1, num_ids):
        mask = ids == i
        np.testing.assert_allclose(got.numpy()[mask.numpy()], scipy_edt(mask)[mask.numpy()])
