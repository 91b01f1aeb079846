"""class_anchors and fuse_anchors against hand-computed values and a slow loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ctx.anchors import class_anchors, fuse_anchors

DTYPES = [torch.float32, torch.float64]


def tiny(dtype):
    """2x2 map, 2-D embeddings: class 0 at (0,0), (0,1); class 1 at (1,0); ignore at (1,1)."""
    emb = torch.tensor([[[1.0, 0.0], [3.0, 10.0]], [[0.0, 1.0], [4.0, 10.0]]], dtype=dtype)
    labels = torch.tensor([[[0, 0], [1, 255]]])
    return emb[None].requires_grad_(), labels


def loop_anchors(emb, labels, c, ignore=255):
    b, d, h, w = emb.shape
    out, present = torch.zeros(c, d, dtype=emb.dtype), torch.zeros(c, dtype=torch.bool)
    for n in range(c):
        zs = [
            emb[i, :, y, x]
            for i in range(b)
            for y in range(h)
            for x in range(w)
            if labels[i, y, x] == n and n != ignore
        ]
        if zs:
            out[n] = F.normalize(torch.stack(zs).mean(0), dim=0)
            present[n] = True
    return out, present


@pytest.mark.parametrize("dtype", DTYPES)
def test_hand_computed(dtype):
    emb, labels = tiny(dtype)
    anchors, present = class_anchors(emb, labels, 3)
    r = 1 / math.sqrt(2)
    expected = torch.tensor([[r, r], [0.6, 0.8], [0.0, 0.0]], dtype=dtype)
    torch.testing.assert_close(anchors, expected)
    assert anchors.dtype == dtype
    assert present.tolist() == [True, True, False]


def test_normalize_false_gives_the_plain_means():
    """METHOD.md's [choice] to L2-normalise the class means is a parameter."""
    emb, labels = tiny(torch.float64)
    plain, present = class_anchors(emb, labels, 3, normalize=False)
    b, d, h, w = emb.shape
    rows, y = emb.detach().permute(0, 2, 3, 1).reshape(-1, d), labels.reshape(-1)
    for n in range(3):
        mask = y == n
        expected = rows[mask].mean(0) if mask.any() else torch.zeros(d, dtype=emb.dtype)
        torch.testing.assert_close(plain[n], expected)
    torch.testing.assert_close(F.normalize(plain, dim=1), class_anchors(emb, labels, 3)[0])
    assert present.tolist() == [True, True, False]
    with pytest.raises(ValueError, match="normalize must be True or False"):
        class_anchors(emb, labels, 3, normalize="no")


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_loop_with_ignore(dtype):
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(2, 5, 4, 3, generator=g, dtype=dtype)
    labels = torch.randint(0, 4, (2, 4, 3), generator=g)
    labels[0, 0] = 255
    labels[labels == 2] = 255  # class 2 absent
    anchors, present = class_anchors(emb, labels, 5)
    ref, ref_present = loop_anchors(emb, labels, 5)
    torch.testing.assert_close(anchors, ref)
    assert present.tolist() == ref_present.tolist()
    assert not present[2] and not present[4] and (anchors[[2, 4]] == 0).all()


def test_custom_ignore_index():
    emb, labels = tiny(torch.float64)
    labels = labels.clone()
    labels[labels == 255] = -1
    a, _ = class_anchors(emb, labels, 3, ignore_index=-1)
    b, _ = class_anchors(*tiny(torch.float64), 3)
    torch.testing.assert_close(a, b)


def test_gradient_flows_and_detach():
    emb, labels = tiny(torch.float64)
    anchors, _ = class_anchors(emb, labels, 3)
    (
        anchors * torch.tensor([[1.0, 2.0], [3.0, -1.0], [5.0, 5.0]], dtype=emb.dtype)
    ).sum().backward()
    grad = emb.grad[0]
    assert grad[:, 0, 0].abs().sum() > 0 and grad[:, 1, 0].abs().sum() > 0
    assert (grad[:, 1, 1] == 0).all()  # the ignore pixel gets no gradient
    assert torch.isfinite(grad).all()
    detached, _ = class_anchors(emb, labels, 3, detach=True)
    assert not detached.requires_grad


def test_all_ignore_gives_zero_rows_and_finite_grads():
    emb = torch.randn(2, 4, 3, 3, requires_grad=True)
    labels = torch.full((2, 3, 3), 255)
    anchors, present = class_anchors(emb, labels, 3)
    assert (anchors == 0).all() and not present.any()
    anchors.sum().backward()
    assert torch.isfinite(emb.grad).all()


def test_shape_mismatch_names_resize_labels():
    emb = torch.randn(1, 4, 4, 4)
    with pytest.raises(ValueError, match="resize_labels"):
        class_anchors(emb, torch.zeros(1, 8, 8, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="resize_labels"):
        class_anchors(emb, torch.zeros(2, 4, 4, dtype=torch.long), 3)


def test_bad_inputs():
    emb = torch.randn(1, 4, 2, 2)
    with pytest.raises(ValueError, match="integer"):
        class_anchors(emb, torch.zeros(1, 2, 2), 3)
    with pytest.raises(ValueError, match="outside"):
        class_anchors(emb, torch.full((1, 2, 2), 7), 3)
    with pytest.raises(ValueError, match=r"\[B,D,H,W\]"):
        class_anchors(emb[0], torch.zeros(1, 2, 2, dtype=torch.long), 3)
    labels = torch.zeros(1, 2, 2, dtype=torch.long)
    for num_classes in (0, True, 3.0):  # True would count one class; 3.0 is not a count
        with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
            class_anchors(emb, labels, num_classes)
    with pytest.raises(ValueError, match="ignore_index must be an int"):
        class_anchors(emb, labels, 3, ignore_index=None)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fuse_hand_computed(dtype):
    low = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.0, 0.0]], dtype=dtype)
    high = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]], dtype=dtype)
    low_p = torch.tensor([True, True, True, False])
    high_p = torch.tensor([True, True, False, True])
    out = fuse_anchors(low, high, low_p, high_p)
    n = math.hypot(0.3, 0.7)
    expected = torch.tensor([[0.3 / n, 0.7 / n], [0.0, 1.0], [0.6, 0.8], [0.0, 0.0]], dtype=dtype)
    torch.testing.assert_close(out, expected)  # rows 2, 3: absent in one stage -> low unchanged
    out = fuse_anchors(low, high, low_p, high_p, w_l=0.5, w_h=0.5)
    torch.testing.assert_close(out[0], torch.tensor([1.0, 1.0], dtype=dtype) / math.sqrt(2))


def test_fuse_renormalize_false_gives_the_plain_blend():
    low, high = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    p = torch.tensor([True, True, False])
    out = fuse_anchors(low, high, p, torch.tensor([True, False, True]), renormalize=False)
    torch.testing.assert_close(out[0], 0.3 * low[0] + 0.7 * high[0])
    torch.testing.assert_close(out[1:], low[1:])  # not present in both: unchanged
    with pytest.raises(ValueError, match="renormalize must be True or False"):
        fuse_anchors(low, high, p, p, renormalize=1)


def test_fuse_last_stage_with_itself_is_unchanged():
    a = F.normalize(torch.randn(5, 3), dim=1)
    p = torch.tensor([True, False, True, True, False])
    torch.testing.assert_close(fuse_anchors(a, a, p, p), a)
    torch.testing.assert_close(fuse_anchors(a, torch.randn(5, 3), p, p, w_l=1.0, w_h=0.0), a)


def test_fuse_gradients_reach_both_stages():
    low = torch.randn(3, 4, requires_grad=True)
    high = torch.randn(3, 4, requires_grad=True)
    p = torch.ones(3, dtype=torch.bool)
    fuse_anchors(low, high, p, p).pow(2).mul(torch.randn(3, 4)).sum().backward()
    assert low.grad.abs().sum() > 0 and high.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "w_l, w_h",
    [(0.3, 0.6), (0.5, 0.6), (1.2, -0.2), (-0.1, 1.1), ("0.3", 0.7), (None, 0.7), (math.nan, 0.7)],
)
def test_fuse_bad_weights(w_l, w_h):
    a, p = torch.zeros(2, 3), torch.ones(2, dtype=torch.bool)
    with pytest.raises(ValueError, match="w_[lh]"):
        fuse_anchors(a, a, p, p, w_l=w_l, w_h=w_h)


def test_fuse_bad_shapes():
    p = torch.ones(2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"\[C,D\]"):
        fuse_anchors(torch.zeros(2, 3), torch.zeros(2, 4), p, p)
    with pytest.raises(ValueError, match="present"):
        fuse_anchors(torch.zeros(2, 3), torch.zeros(2, 3), p.long(), p)
    with pytest.raises(ValueError, match="present must be a bool tensor"):
        fuse_anchors(torch.zeros(2, 3), torch.zeros(2, 3), [True, True], p)
    with pytest.raises(ValueError, match="low must be a floating tensor"):
        fuse_anchors([[0.0]], torch.zeros(1, 1), p[:1], p[:1])
    with pytest.raises(ValueError, match="high must be a floating tensor"):
        fuse_anchors(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), p, p)


def test_fuse_refuses_non_finite_anchors_unless_told_not_to_check():
    p = torch.ones(2, dtype=torch.bool)
    bad = torch.zeros(2, 3)
    bad[1, 2] = math.nan
    with pytest.raises(ValueError, match="high contains 1 NaN or inf"):
        fuse_anchors(torch.ones(2, 3), bad, p, p)
    out = fuse_anchors(torch.ones(2, 3), bad, p, p, check_inputs=False)  # the caller's choice
    assert not torch.isfinite(out[1]).all()


@pytest.mark.parametrize("at_ignore", [False, True])
def test_one_nan_pixel_is_a_clear_error(at_ignore):
    """A single NaN would turn every anchor into NaN (0 * NaN in the one-hot matmul), even at
    an ignore pixel: it raises, naming the argument; check_inputs=False skips the check."""
    emb, labels = tiny(torch.float64)
    emb = emb.detach().clone()
    emb[0, 1, 1, 1 if at_ignore else 0] = float("nan")  # (1, 1) is the ignore pixel
    with pytest.raises(ValueError, match=r"emb contains 1 NaN or inf"):
        class_anchors(emb, labels, 3)
    anchors, _ = class_anchors(emb, labels, 3, check_inputs=False)  # the caller's choice
    assert torch.isnan(anchors).all()


def test_overflow_is_a_clear_error():
    emb = torch.full((1, 2, 2, 2), 3e38)  # finite; the class sum is not
    with pytest.raises(ValueError, match="overflowed.*L2-normalised"):
        class_anchors(emb, torch.zeros(1, 2, 2, dtype=torch.long), 1)


@pytest.mark.parametrize("scale", [1e-42, 1e-30, 1e-10, 1e30])
def test_tiny_and_huge_embeddings_give_unit_anchors(scale):
    """F.normalize's eps alone would shrink a tiny mean to a vector of norm ~mean/eps."""
    emb, labels = tiny(torch.float32)
    got, present = class_anchors(emb.detach() * scale, labels, 3)
    ref, _ = class_anchors(emb.detach(), labels, 3)
    torch.testing.assert_close(got, ref, rtol=1e-3 if scale < 1e-38 else 1e-6, atol=1e-3)
    assert present.tolist() == [True, True, False]
