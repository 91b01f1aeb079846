"""pixel_anchor_loss against the formula and by hand (ContextrastLoss and the CE losses:
tests/test_contextrast_loss.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ctx.anchors import class_anchors
from ctx.losses import pixel_anchor_loss
from ctx.negatives import sample_pixels

DTYPES = [torch.float32, torch.float64]
BIG = 10_000  # caps no test input reaches: no sampling, exactly the formula


def ref_loss(emb, labels, anchors, present, tau=0.1, hard=None, ignore=255):
    """METHOD.md's PA formula with Python loops in float64; Q = hard pixels only if `hard`."""
    d = emb.shape[1]
    z = emb.detach().double().permute(0, 2, 3, 1).reshape(-1, d).tolist()
    y = labels.reshape(-1).tolist()
    hard = [True] * len(y) if hard is None else hard.reshape(-1).tolist()
    a = anchors.detach().double().tolist()
    terms = []
    for n in range(len(a)):
        pos = [m for m in range(len(y)) if y[m] == n]
        if not present[n] or not pos:
            continue
        neg = [m for m in range(len(y)) if y[m] not in (n, ignore) and hard[m]]

        def s(m, n=n):
            return sum(ai * zi for ai, zi in zip(a[n], z[m], strict=True)) / tau

        total = 0.0
        for p in pos:
            denom = math.exp(s(p)) + sum(math.exp(s(q)) for q in neg)
            total += -math.log(math.exp(s(p)) / denom)
        terms.append(total / len(pos))
    return sum(terms) / len(terms) if terms else 0.0


def make(b=2, d=4, h=4, w=5, c=3, dtype=torch.float64, seed=0, ignore_frac=0.2):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(b, d, h, w, generator=g, dtype=dtype), dim=1)
    labels = torch.randint(0, c, (b, h, w), generator=g)
    labels[torch.rand(b, h, w, generator=g) < ignore_frac] = 255
    return emb.requires_grad_(), labels


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_formula_random_negatives(dtype):
    emb, labels = make(dtype=dtype)
    anchors, present = class_anchors(emb, labels, 3)
    loss = pixel_anchor_loss(emb, labels, anchors, present, max_positives=BIG, max_negatives=BIG)
    assert loss.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert loss.item() == pytest.approx(ref_loss(emb, labels, anchors, present), rel=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_formula_with_hard_mask(dtype):
    emb, labels = make(dtype=dtype, seed=1, c=4)
    hard = torch.rand(labels.shape, generator=torch.Generator().manual_seed(5)) < 0.4
    anchors, present = class_anchors(emb, labels, 4)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    only_hard = pixel_anchor_loss(
        emb, labels, anchors, present, hard, max_negatives=BIG, fill=False
    )
    expected = ref_loss(emb, labels, anchors, present, hard=hard)
    assert only_hard.item() == pytest.approx(expected, rel=tol)
    filled = pixel_anchor_loss(emb, labels, anchors, present, hard, max_negatives=BIG, fill=True)
    expected = ref_loss(emb, labels, anchors, present)  # filled up to every other pixel
    assert filled.item() == pytest.approx(expected, rel=tol)


def test_hard_pixels_come_first():
    """A cap equal to each class's number of hard negatives picks exactly the hard ones."""
    emb, labels = make(b=1, h=6, w=6, c=2, ignore_frac=0.0, seed=3)
    labels[0, :3], labels[0, 3:] = 0, 1
    hard = torch.zeros_like(labels, dtype=torch.bool)
    hard[0, 0, :4] = True  # 4 hard pixels of class 0 (negatives of anchor 1)
    hard[0, 5, :4] = True  # 4 hard pixels of class 1 (negatives of anchor 0)
    anchors, present = class_anchors(emb, labels, 2)
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        loss = pixel_anchor_loss(emb, labels, anchors, present, hard, max_negatives=4, generator=g)
        expected = ref_loss(emb, labels, anchors, present, hard=hard)
        assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_fill_only_matters_below_the_cap():
    """With more hard negatives than the cap, fill=True and fill=False pick the same pixels."""
    emb, labels = make(b=2, h=8, w=8, c=3, seed=4)
    hard = torch.rand(labels.shape, generator=torch.Generator().manual_seed(1)) < 0.7
    anchors, present = class_anchors(emb, labels, 3)
    values = [
        pixel_anchor_loss(
            emb,
            labels,
            anchors,
            present,
            hard,
            max_negatives=5,
            fill=fill,
            generator=torch.Generator().manual_seed(7),
        )
        for fill in (True, False)
    ]
    torch.testing.assert_close(values[0], values[1], rtol=1e-12, atol=0)


def test_gradcheck_through_anchors():
    emb, labels = make(b=1, d=3, h=3, w=3, c=3, seed=2)
    emb = emb.detach().requires_grad_()

    def f(e):
        anchors, present = class_anchors(e, labels, 3)
        return pixel_anchor_loss(e, labels, anchors, present, tau=0.5)

    assert torch.autograd.gradcheck(f, (emb,))


def test_gradcheck_wrt_anchors_and_hard():
    emb, labels = make(b=1, d=3, h=3, w=4, c=3, seed=6)
    hard = torch.rand(labels.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    anchors = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    present = torch.tensor([True, True, False])

    def f(e, a):
        return pixel_anchor_loss(e, labels, a, present, hard, tau=0.3, fill=False)

    assert torch.autograd.gradcheck(f, (emb.detach().requires_grad_(), anchors))


@settings(max_examples=25, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 5), st.integers(1, 4)),
    kind=st.sampled_from(["random", "one_class", "all_ignore", "some_ignore"]),
    hard_kind=st.sampled_from([None, "random", "none_hard"]),
    fill=st.booleans(),
    caps=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    seed=st.integers(0, 2**16),
)
def test_property_finite_nonnegative(shape, kind, hard_kind, fill, caps, seed):
    b, h, w, c = shape
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(b, 3, h, w, generator=g), dim=1).requires_grad_()
    labels = torch.randint(0, c, (b, h, w), generator=g)
    if kind == "one_class":
        labels.fill_(c - 1)
    elif kind == "all_ignore":
        labels.fill_(255)
    elif kind == "some_ignore":
        labels[torch.rand(b, h, w, generator=g) < 0.5] = 255
    hard = None
    if hard_kind == "random":
        hard = torch.rand(b, h, w, generator=g) < 0.5
    elif hard_kind == "none_hard":
        hard = torch.zeros(b, h, w, dtype=torch.bool)
    anchors, present = class_anchors(emb, labels, c)
    loss, stats = pixel_anchor_loss(
        emb,
        labels,
        anchors,
        present,
        hard,
        max_positives=caps[0],
        max_negatives=caps[1],
        fill=fill,
        generator=g,
        return_stats=True,
    )
    assert torch.isfinite(loss) and loss.item() >= 0
    if kind in ("one_class", "all_ignore"):
        assert loss.item() == 0.0
    assert stats["pos_per_class_max"] <= caps[0] and stats["neg_per_class_max"] <= caps[1]
    loss.backward()
    assert torch.isfinite(emb.grad).all()


def test_gradient_step_lowers_loss_and_pulls_positives():
    emb, labels = make(b=2, d=8, h=6, w=6, c=4, seed=9)
    anchors, present = class_anchors(emb, labels, 4)
    anchors = anchors.detach()
    loss = pixel_anchor_loss(emb, labels, anchors, present, max_positives=BIG, max_negatives=BIG)
    loss.backward()
    stepped = (emb - 0.05 * emb.grad).detach()
    after = pixel_anchor_loss(
        stepped, labels, anchors, present, max_positives=BIG, max_negatives=BIG
    )
    assert after < loss

    def sims(e):
        _, stats = pixel_anchor_loss(
            e, labels, anchors, present, max_positives=BIG, max_negatives=BIG, return_stats=True
        )
        return stats["pos_sim"], stats["neg_sim"]

    (pos0, neg0), (pos1, neg1) = sims(emb.detach()), sims(stepped)
    assert pos1 > pos0 and neg1 < neg0


@pytest.mark.parametrize("hard_frac", [None, 0.1, 0.9])
def test_caps_respected(hard_frac):
    emb, labels = make(b=2, d=4, h=16, w=16, c=3, seed=11, dtype=torch.float32)
    hard = None if hard_frac is None else torch.rand(labels.shape) < hard_frac
    anchors, present = class_anchors(emb, labels, 3)
    _, stats = pixel_anchor_loss(
        emb, labels, anchors, present, hard, max_positives=20, max_negatives=7, return_stats=True
    )
    assert stats["pos_per_class_max"].item() == 20 and stats["neg_per_class_max"].item() == 7
    assert stats["pos_count"].item() == 60 and stats["neg_count"].item() == 21
    assert stats["classes"].item() == 3


def test_same_seed_same_value():
    emb, labels = make(b=2, h=16, w=16, c=3, seed=12)
    anchors, present = class_anchors(emb, labels, 3)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return pixel_anchor_loss(
            emb, labels, anchors, present, max_positives=10, max_negatives=10, generator=g
        ).item()

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_no_negatives_class_contributes_zero():
    emb, labels = make(b=1, h=4, w=4, c=2, seed=13, ignore_frac=0.0)
    labels[0, :2], labels[0, 2:] = 0, 1
    anchors, present = class_anchors(emb, labels, 2)
    no_hard = torch.zeros_like(labels, dtype=torch.bool)
    loss = pixel_anchor_loss(emb, labels, anchors, present, no_hard, fill=False)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(emb.grad).all()
    # only class 1 has a (hard) negative: the mean runs over both present classes
    hard = no_hard.clone()
    hard[0, 0, 0] = True
    loss = pixel_anchor_loss(emb, labels, anchors, present, hard, fill=False)
    assert loss.item() == pytest.approx(ref_loss(emb, labels, anchors, present, hard=hard))


def test_pixel_anchor_loss_bad_inputs():
    emb, labels = make()
    anchors, present = class_anchors(emb, labels, 3)
    with pytest.raises(ValueError, match="tau"):
        pixel_anchor_loss(emb, labels, anchors, present, tau=0.0)
    with pytest.raises(ValueError, match="max_negatives"):
        pixel_anchor_loss(emb, labels, anchors, present, max_negatives=0)
    with pytest.raises(ValueError, match="resize_labels"):
        pixel_anchor_loss(emb, labels[:, :2], anchors, present)
    with pytest.raises(ValueError, match="D="):
        pixel_anchor_loss(emb, labels, anchors[:, :2], present)
    with pytest.raises(ValueError, match="present"):
        pixel_anchor_loss(emb, labels, anchors, present[:2])
    with pytest.raises(ValueError, match="hard"):
        pixel_anchor_loss(emb, labels, anchors, present, hard=labels[:, :1] == 0)  # wrong shape
    with pytest.raises(ValueError, match="hard must be None or a bool tensor"):
        pixel_anchor_loss(emb, labels, anchors, present, hard=(labels == 0).tolist())
    with pytest.raises(ValueError, match="hard"):
        pixel_anchor_loss(emb, labels, anchors, present, hard=(labels == 0).long())


@pytest.mark.parametrize("where", ["emb", "anchors"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_pixel_anchor_loss_rejects_non_finite_inputs(where, value):
    emb, labels = make()
    anchors, present = class_anchors(emb, labels, 3)
    emb, anchors = emb.detach().clone(), anchors.detach().clone()
    if where == "emb":
        emb[1, 2, 3, 4] = value  # an ignore pixel would do as well
    else:
        anchors[2, 0] = value
    with pytest.raises(ValueError, match=rf"{where} contains 1 NaN or inf"):
        pixel_anchor_loss(emb, labels, anchors, present)
    # the training step's setting: no check and no sync (the caller checks the total)
    pixel_anchor_loss(emb, labels, anchors, present, check_inputs=False)


def test_pixel_anchor_loss_overflow_is_a_clear_error():
    emb, labels = make(dtype=torch.float32)
    anchors, present = class_anchors(emb, labels, 3)
    huge = emb.detach() * 3e38  # finite, unnormalised: similarities / tau overflow
    with pytest.raises(ValueError, match="overflowed.*float32's range.*L2-normalised"):
        pixel_anchor_loss(huge, labels, anchors, present)
    # normalised embeddings, but a tau so small that similarities / tau pass float64's range
    with pytest.raises(ValueError, match=r"float64's range \(tau=1e-320.*tau near"):
        pixel_anchor_loss(emb.double(), labels, -anchors.double(), present, tau=1e-320)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 5), st.integers(1, 4)),
    d=st.integers(1, 4),
    kind=st.sampled_from(["random", "one_class", "all_ignore", "some_ignore", "absent"]),
    scale=st.sampled_from([0.0, 1e-30, 1e-3, 1.0, 1e3, 1e30, 3e38]),
    normalise=st.booleans(),
    tau=st.sampled_from([1e-4, 0.1, 10.0]),
    dtype=st.sampled_from(DTYPES),
    use_hard=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_anchors_and_loss_finite_or_clear_error(
    shape, d, kind, scale, normalise, tau, dtype, use_hard, seed
):
    """Any shape, classes present or absent, ignore pixels, tiny to huge embeddings (normalised
    as the heads do, or not): the anchors and the loss are finite with finite gradients, or a
    ValueError says what overflowed."""
    b, h, w, c = shape
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(b, d, h, w, generator=g, dtype=dtype) * scale
    emb = (F.normalize(raw, dim=1) if normalise else raw).requires_grad_()
    labels = torch.randint(0, c, (b, h, w), generator=g)
    if kind == "one_class":
        labels.fill_(c - 1)
    elif kind == "all_ignore":
        labels.fill_(255)
    elif kind == "some_ignore":
        labels[torch.rand(b, h, w, generator=g) < 0.5] = 255
    elif kind == "absent":  # class 0 never occurs
        labels = labels.clamp(min=1) if c > 1 else labels
    hard = torch.rand(b, h, w, generator=g) < 0.5 if use_hard else None
    try:
        anchors, present = class_anchors(emb, labels, c)
        loss = pixel_anchor_loss(emb, labels, anchors, present, hard, tau=tau, generator=g)
    except ValueError as err:
        if torch.isfinite(emb).all():
            assert "overflowed" in str(err) and not normalise
        else:  # randn * 3e38 itself overflows
            assert "emb contains" in str(err) and "NaN or inf" in str(err)
        return
    assert torch.isfinite(anchors).all() and torch.isfinite(loss) and loss.item() >= 0
    norms = anchors.detach().double().norm(dim=1)
    assert torch.all(((norms - 1).abs() < 1e-3) | (norms == 0))  # 0: absent or zero embeddings
    assert not norms[~present].any()
    loss.backward()
    if scale <= 1e3:
        assert torch.isfinite(emb.grad).all()


def test_pa_is_the_formula_on_what_was_sampled():
    emb, labels = make(b=2, h=6, w=6, c=3, seed=4)
    anchors, present = class_anchors(emb, labels, 3)
    hard = torch.rand(labels.shape, generator=torch.Generator().manual_seed(1)) < 0.3
    caps = dict(max_positives=4, max_negatives=5)
    loss = pixel_anchor_loss(
        emb, labels, anchors, present, hard, generator=torch.Generator().manual_seed(7), **caps
    )
    sample = sample_pixels(labels, 3, hard, generator=torch.Generator().manual_seed(7), **caps)
    sims = (emb.detach().permute(0, 2, 3, 1).reshape(-1, 4) @ anchors.detach().T).T.tolist()
    terms = []
    for n in range(3):
        pos = [sims[n][m] / 0.1 for m in picked(sample.pos_idx, sample.pos_ok, n)]
        neg = [sims[n][m] / 0.1 for m in picked(sample.neg_idx, sample.neg_ok, n)]
        if present[n] and pos:
            lse = [math.log(math.exp(p) + sum(math.exp(q) for q in neg)) - p for p in pos]
            terms.append(sum(lse) / len(pos))
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-10)


def picked(idx, ok, n):
    row = torch.arange(ok.shape[1]) if idx is None else idx[n]
    return row[ok[n]].tolist()


def test_similarity_stats_are_the_mean_cosines_over_pairs():
    """pos_sim / neg_sim: the mean of anchor · z over every (present class, positive) pair and
    every (present class, negative) pair, by a loop (no cap hit, hard=None: all other classes)."""
    emb, labels = make(dtype=torch.float64, seed=3)
    anchors, present = class_anchors(emb, labels, 3)
    _, stats = pixel_anchor_loss(
        emb, labels, anchors, present, max_positives=BIG, max_negatives=BIG, return_stats=True
    )
    z = emb.detach().permute(0, 2, 3, 1).reshape(-1, emb.shape[1]).tolist()
    y, a = labels.reshape(-1).tolist(), anchors.detach().tolist()
    pos, neg = [], []
    for n in range(3):
        if not present[n] or n not in y:
            continue
        for m, label in enumerate(y):
            dot = sum(ai * zi for ai, zi in zip(a[n], z[m], strict=True))
            if label == n:
                pos.append(dot)
            elif label != 255:
                neg.append(dot)
    assert stats["pos_sim"].item() == pytest.approx(sum(pos) / len(pos))
    assert stats["neg_sim"].item() == pytest.approx(sum(neg) / len(neg))
    assert stats["pos_count"].item() == len(pos) and stats["neg_count"].item() == len(neg)


def test_half_precision_reduces_in_float32_where_float16_would_overflow():
    # 1,024 positives with terms near 90 sum past float16's 65504 (the float64 loss is 89.5)
    torch.manual_seed(0)
    e = F.normalize(torch.randn(2, 8, 32, 32), dim=1)
    y = torch.randint(0, 2, (2, 32, 32))
    anchors, present = class_anchors(e, y, 2)

    def loss(dtype):
        g = torch.Generator().manual_seed(0)  # the same sample at every precision
        return pixel_anchor_loss(e.to(dtype), y, -anchors.to(dtype), present, tau=0.01, generator=g)

    exact, half = loss(torch.float64), loss(torch.float16)
    assert half.dtype == torch.float32 and torch.isfinite(half)
    assert half.item() == pytest.approx(exact.item(), rel=1e-2)
    assert loss(torch.bfloat16).item() == pytest.approx(exact.item(), rel=2e-2)
    assert loss(torch.float64).dtype == torch.float64  # float64 stays float64 (gradcheck)


def test_label_range_error_names_the_anchors_as_the_class_count():
    e = F.normalize(torch.randn(1, 4, 3, 3), dim=1)
    y = torch.full((1, 3, 3), 2)
    anchors, present = torch.randn(2, 4), torch.ones(2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"outside \[0, 2\).*anchors \(one row per class\)"):
        pixel_anchor_loss(e, y, anchors, present)


def test_boundary_negatives_maps_as_hard_get_a_hint():
    from ctx.negatives import boundary_negatives

    e = F.normalize(torch.randn(2, 4, 5, 5), dim=1)
    y = torch.randint(0, 3, (2, 5, 5))
    anchors, present = class_anchors(e, y, 3)
    maps = boundary_negatives(torch.zeros_like(y), y, 3)  # [B,C,H,W]
    with pytest.raises(ValueError, match=r"pass its \.any\(1\)"):
        pixel_anchor_loss(e, y, anchors, present, hard=maps)
    pixel_anchor_loss(e, y, anchors, present, hard=maps.any(1))  # the fix works


def test_embeddings_without_channels_are_refused():
    y = torch.zeros(1, 3, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="no channels"):
        pixel_anchor_loss(
            torch.zeros(1, 0, 3, 3), y, torch.zeros(1, 0), torch.ones(1, dtype=torch.bool)
        )
    with pytest.raises(ValueError, match="no channels"):
        class_anchors(torch.zeros(1, 0, 3, 3), y, 1)
