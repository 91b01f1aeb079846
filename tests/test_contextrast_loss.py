"""ContextrastLoss (CE + alpha * sum_i lambda_i PA_i) against a hand computation, its miner,
seeding, statistics, input checks and sync-free training path; the CE losses with its call.
pixel_anchor_loss: tests/test_losses.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sync_helpers import HostSyncCounter

from ctx.anchors import class_anchors, fuse_anchors
from ctx.labels import resize_labels
from ctx.losses import ContextrastLoss, CrossEntropyLoss, pixel_anchor_loss, safe_cross_entropy
from ctx.negatives import BoundaryMiner

DTYPES = [torch.float32, torch.float64]
BIG = 10_000  # caps no test input reaches: no sampling, exactly the formula


# ---------------------------------------------------------------- ContextrastLoss


def pa_loop(emb, y, anchors, present, negatives_of, tau=0.1):
    """One stage's PA term written out: for each class n present here, the mean over its pixels
    p of -log(e^{a.z_p/tau} / (e^{a.z_p/tau} + sum_{q in Q_n} e^{a.z_q/tau})), averaged over n.
    negatives_of(n) -> bool [B,h,w], the pixels in Q_n."""
    z = emb.permute(0, 2, 3, 1)  # [B,h,w,D]
    terms = []
    for n in range(anchors.shape[0]):
        pos = y == n
        if not present[n] or not pos.any():
            continue
        s_pos = z[pos] @ anchors[n] / tau
        s_neg = z[negatives_of(n)] @ anchors[n] / tau
        denom = [torch.logaddexp(sp, torch.logsumexp(s_neg, 0)) for sp in s_pos]
        terms.append(torch.stack([d - sp for d, sp in zip(denom, s_pos, strict=True)]).mean())
    return torch.stack(terms).mean()


def batch(b=2, c=4, size=16, d=6, dtype=torch.float64, seed=0, sizes=(8, 4, 2, 1)):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, c, (b, size, size), generator=g)
    labels[:, -2:] = 255  # nearest downsampling keeps rows 0, h/s, ...: every stage sees labels
    logits = torch.randn(b, c, size, size, generator=g, dtype=dtype, requires_grad=True)
    embs = [
        F.normalize(torch.randn(b, d, s, s, generator=g, dtype=dtype), dim=1).requires_grad_()
        for s in sizes
    ]
    return logits, embs, labels


def by_hand(
    logits, embs, labels, c, weights, stages, fusion, tau=0.1, alpha=0.1, norm=True, renorm=True
):
    ys = [resize_labels(labels, e.shape[-2:]) for e in embs]
    raw = [class_anchors(e, y, c, normalize=norm) for e, y in zip(embs, ys, strict=True)]
    pa = 0.0
    for i in stages:
        a, p = raw[i]
        if fusion and i != len(embs) - 1:
            a = fuse_anchors(a, raw[-1][0], p, raw[-1][1], renormalize=renorm)
        pa = pa + weights[i] * pixel_anchor_loss(
            embs[i], ys[i], a, p, tau=tau, max_positives=BIG, max_negatives=BIG
        )
    return safe_cross_entropy(logits, labels) + alpha * pa


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "stages, fusion", [(None, True), (None, False), ((3,), True), ((0, 2), True)]
)
def test_total_equals_hand_computation(dtype, stages, fusion):
    logits, embs, labels = batch(dtype=dtype)
    weights = (0.1, 0.3, 0.7, 1.0)
    loss = ContextrastLoss(
        4, negatives="random", stages=stages, fusion=fusion, max_positives=BIG, max_negatives=BIG
    )
    total, parts = loss(logits, embs, labels)
    expected = by_hand(logits, embs, labels, 4, weights, stages or range(4), fusion)
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(total.detach(), parts["ce"] + 0.1 * parts["pa"])
    assert {k for k in parts if k.startswith("pa/")} == {f"pa/stage{i}" for i in stages or range(4)}
    total.backward()
    assert all(torch.isfinite(e.grad).all() for e in embs if e.grad is not None)


@pytest.mark.parametrize("norm, renorm", [(False, True), (True, False), (False, False)])
def test_the_normalisation_choices_are_parameters(norm, renorm):
    logits, embs, labels = batch()
    kw = dict(negatives="random", max_positives=BIG, max_negatives=BIG)
    loss = ContextrastLoss(4, normalize_anchors=norm, renormalize_fused=renorm, **kw)
    total, _ = loss(logits, embs, labels)
    weights = (0.1, 0.3, 0.7, 1.0)
    expected = by_hand(logits, embs, labels, 4, weights, range(4), True, norm=norm, renorm=renorm)
    torch.testing.assert_close(total, expected)
    assert total.item() != ContextrastLoss(4, **kw)(logits, embs, labels)[0].item()


def test_fusion_changes_lower_stages_only():
    logits, embs, labels = batch()
    kw = dict(negatives="random", max_positives=BIG, max_negatives=BIG)
    _, fused = ContextrastLoss(4, **kw)(logits, embs, labels)
    _, raw = ContextrastLoss(4, fusion=False, **kw)(logits, embs, labels)
    assert fused["pa/stage3"] == raw["pa/stage3"]
    assert fused["pa/stage0"] != raw["pa/stage0"]


def test_stats_are_reported():
    logits, embs, labels = batch(dtype=torch.float32)
    _, parts = ContextrastLoss(4, negatives="random", max_negatives=3)(logits, embs, labels)
    for i in range(4):
        for name in ("pos_count", "neg_count", "pos_sim", "neg_sim", "hard_count", "classes"):
            assert f"stage{i}/{name}" in parts
        assert parts[f"stage{i}/neg_per_class_max"] <= 3
    assert parts["stage0/neg_count"] > 0


def test_same_seed_same_total():
    logits, embs, labels = batch(size=32, sizes=(16, 8, 4, 2))
    kw = dict(negatives="random", max_positives=5, max_negatives=5)
    a = ContextrastLoss(4, seed=3, **kw)(logits, embs, labels)[0]
    b = ContextrastLoss(4, seed=3, **kw)(logits, embs, labels)[0]
    c = ContextrastLoss(4, seed=4, **kw)(logits, embs, labels)[0]
    assert a.item() == b.item() and a.item() != c.item()


@pytest.mark.parametrize("negatives", ["random", "bane"])
def test_all_ignore_batch_is_finite(negatives):
    if negatives == "bane":
        pytest.importorskip("ctx.negatives")
    logits, embs, labels = batch(dtype=torch.float32)
    labels.fill_(255)
    total, parts = ContextrastLoss(4, negatives=negatives)(logits, embs, labels)
    assert total.item() == 0.0 and parts["pa"].item() == 0.0
    total.backward()
    assert torch.isfinite(logits.grad).all()
    assert all(torch.isfinite(e.grad).all() for e in embs)


def test_one_class_batch_has_zero_pa():
    logits, embs, labels = batch()
    labels.fill_(2)
    total, parts = ContextrastLoss(4, negatives="random")(logits, embs, labels)
    assert parts["pa"].item() == 0.0
    torch.testing.assert_close(total, F.cross_entropy(logits, labels))


def test_bane_matches_hand_computation():
    negatives = pytest.importorskip("ctx.negatives")
    logits, embs, labels = batch(size=32, sizes=(16, 8, 4, 2))
    loss = ContextrastLoss(4, fill=False, seed=5)
    total, parts = loss(logits, embs, labels)
    g = torch.Generator().manual_seed(5)
    pred = logits.detach().argmax(1)
    ys = [resize_labels(labels, e.shape[-2:]) for e in embs]
    raw = [class_anchors(e, y, 4) for e, y in zip(embs, ys, strict=True)]
    pa = 0.0
    for i, (e, y) in enumerate(zip(embs, ys, strict=True)):
        hard = negatives.boundary_negatives(
            resize_labels(pred, y.shape[-2:]), y, 4, 0.5, generator=g
        ).any(1)
        assert parts[f"stage{i}/hard_count"] == (hard & (y != 255)).sum()
        a, p = raw[i]
        if i < 3:
            a = fuse_anchors(a, raw[3][0], p, raw[3][1])
        pa = pa + loss.stage_weights[i] * pixel_anchor_loss(
            e, y, a, p, hard, fill=False, generator=g
        )
    torch.testing.assert_close(total, safe_cross_entropy(logits, labels) + 0.1 * pa)
    total.backward()
    assert all(torch.isfinite(e.grad).all() for e in embs)


@pytest.mark.parametrize("hard_for", ["others", "predicted"])
def test_bane_readings_against_a_loop(hard_for):
    """fill=False, k=1 (every error pixel selected, no random tie) and no cap: anchor n's
    negatives are the wrong pixels labelled != n ("others") or those predicted as n
    ("predicted"); the total is CE + alpha * sum_i lambda_i PA_i computed by loops."""
    logits, embs, labels = batch(size=32, sizes=(16, 8, 4, 2))
    loss = ContextrastLoss(
        4, k=1.0, fill=False, hard_for=hard_for, max_positives=BIG, max_negatives=BIG
    )
    total, parts = loss(logits, embs, labels)
    ys = [resize_labels(labels, e.shape[-2:]) for e in embs]
    raw = [class_anchors(e, y, 4) for e, y in zip(embs, ys, strict=True)]
    pa = 0.0
    for i, (w, e, y) in enumerate(zip((0.1, 0.3, 0.7, 1.0), embs, ys, strict=True)):
        pred = F.interpolate(logits.detach(), size=y.shape[-2:], mode="nearest").argmax(1)
        wrong = (pred != y) & (y != 255)
        a, p = (
            raw[i]
            if i == 3
            else (fuse_anchors(raw[i][0], raw[3][0], raw[i][1], raw[3][1]), raw[i][1])
        )

        def negatives_of(n, y=y, pred=pred, wrong=wrong):
            return wrong & (y != n) & ((pred == n) if hard_for == "predicted" else True)

        term = pa_loop(e, y, a, p, negatives_of)
        torch.testing.assert_close(parts[f"pa/stage{i}"], term.detach())
        pa = pa + w * term
    torch.testing.assert_close(total, safe_cross_entropy(logits, labels) + 0.1 * pa)
    if hard_for == "predicted":  # each wrong pixel is a negative of one anchor at most
        assert all(parts[f"stage{i}/neg_count"] <= parts[f"stage{i}/hard_count"] for i in range(4))
    total.backward()
    assert all(torch.isfinite(e.grad).all() for e in embs)


def test_bane_runs_with_defaults():
    pytest.importorskip("ctx.negatives")
    logits, embs, labels = batch(dtype=torch.float32, size=32, sizes=(16, 8, 4, 2))
    total, parts = ContextrastLoss(4)(logits, embs, labels)
    assert torch.isfinite(total) and parts["stage0/hard_count"] > 0
    total.backward()


def test_the_miner_is_an_argument():
    """negatives="bane" is BoundaryMiner(C, k); any callable with the Miner signature works,
    is called once per stage with that stage's labels, and its stats land in parts."""
    logits, embs, labels = batch(size=32, sizes=(16, 8, 4, 2))
    kw = dict(fill=False, max_positives=9, max_negatives=7, seed=5)
    total, parts = ContextrastLoss(4, negatives="bane", k=0.3, **kw)(logits, embs, labels)
    total2, parts2 = ContextrastLoss(4, negatives=BoundaryMiner(4, 0.3), **kw)(logits, embs, labels)
    assert total.item() == total2.item() and parts.keys() == parts2.keys()
    assert all(torch.equal(parts[k], parts2[k]) for k in parts)
    seen = []

    def corners(logits, labels, generator):
        seen.append(tuple(labels.shape))
        hard = torch.zeros_like(labels, dtype=torch.bool)
        hard[:, 0, 0] = True
        return hard, {"corners": hard.sum()}

    total, parts = ContextrastLoss(4, negatives=corners, **kw)(logits, embs, labels)
    assert seen == [(2, s, s) for s in (16, 8, 4, 2)]
    assert [parts[f"stage{i}/corners"].item() for i in range(4)] == [2] * 4
    assert all(parts[f"stage{i}/neg_per_class_max"] <= 2 for i in range(4))  # hard only
    assert torch.isfinite(total)


def scene_for(kind, size=36, sizes=(18, 9, 5, 3)):
    """A float32 batch; 36 -> 5 and 3 take resize_labels' gather path (no integer factor)."""
    logits, embs, labels = batch(dtype=torch.float32, size=size, sizes=sizes)
    if kind == "all_wrong":  # one class fills every image, predicted as another: all +inf
        labels.fill_(1)
        with torch.no_grad():
            logits[:, 0] += 100
    elif kind == "all_ignore":
        labels.fill_(255)
    elif kind == "perfect":  # no error pixel at all
        with torch.no_grad():
            logits += 100 * F.one_hot(labels.clamp(max=3), 4).permute(0, 3, 1, 2)
    return logits, embs, labels


@pytest.mark.parametrize("kind", ["random", "all_wrong", "all_ignore", "perfect"])
@pytest.mark.parametrize(
    "kw",
    [
        dict(negatives="bane"),
        dict(negatives="bane", fill=False, max_positives=7, max_negatives=5, fusion=False),
        dict(negatives="random", max_positives=7, max_negatives=5),
    ],
)
def test_training_step_makes_no_host_sync(kind, kw):
    """check_inputs=False: forward and backward run no op that would make the host wait for a
    GPU (counted on the CPU, see tests/sync_helpers.py)."""
    logits, embs, labels = scene_for(kind)
    loss = ContextrastLoss(4, check_inputs=False, **kw)
    with HostSyncCounter() as counter:
        total, parts = loss(logits, embs, labels)
        total.backward()
    assert dict(counter.counts) == {}
    assert torch.isfinite(total) and all(torch.isfinite(v).all() for v in parts.values())


def test_host_sync_counter_sees_syncs():
    """The counter catches what it is meant to: the input checks (two syncs) and each kind."""
    logits, embs, labels = scene_for("random")
    with HostSyncCounter() as counter:
        ContextrastLoss(4)(logits, embs, labels)
    # label range, finite logits and embeddings, finite total
    assert dict(counter.counts) == {"_local_scalar_dense": 3}
    x = torch.arange(-3, 4)
    with HostSyncCounter() as counter:
        x.nonzero(), bool(x.any()), x[x > 0], x.tolist(), torch.bincount(x + 3), x.unique()
        x[x > 0] = 0
    with HostSyncCounter() as scalar_write:
        x[0] = 5  # a host scalar copied in: one synchronous host-to-device copy on a GPU
    assert dict(scalar_write.counts) == {"lift_fresh": 1}
    assert set(counter.counts) == {
        "lift_fresh",
        "nonzero",
        "_local_scalar_dense",
        "index[bool mask]",
        "Tensor.tolist",
        "bincount",
        "_unique2",
        "index_put_[bool mask]",
    }


@pytest.mark.parametrize("negatives", ["bane", "random"])
def test_check_inputs_changes_no_number_and_same_seed_same_bits(negatives):
    """The checks consume no randomness: with or without them, one seed gives the same bits;
    another seed gives other selections."""
    logits, embs, labels = scene_for("random", size=64, sizes=(32, 16, 8, 4))
    kw = dict(negatives=negatives, max_positives=50, max_negatives=20)
    runs = [
        ContextrastLoss(4, seed=seed, check_inputs=check, **kw)(logits, embs, labels)
        for seed, check in ((3, True), (3, False), (4, False))
    ]
    (t0, p0), (t1, p1), (t2, p2) = runs
    assert t0.item() == t1.item() and t0.item() != t2.item()
    assert all(torch.equal(p0[k], p1[k]) for k in p0)


def test_check_inputs_false_keeps_the_free_checks():
    """Shape, dtype and device checks cost no sync and stay; value checks are skipped."""
    logits, embs, labels = scene_for("random")
    loss = ContextrastLoss(4, negatives="random", check_inputs=False)
    with pytest.raises(ValueError, match="integer"):
        loss(logits, embs, labels.float())
    with pytest.raises(ValueError, match="channels"):
        loss(logits[:, :3], embs, labels)
    with pytest.raises(ValueError, match="list of 4"):
        loss(logits, embs[:3], labels)
    bad = [e.detach().clone() for e in embs]
    bad[2][0, 0, 0, 0] = float("nan")
    total, _ = loss(logits, bad, labels)  # not checked: the caller asked for speed
    assert not torch.isfinite(total)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tau=0.0), "tau"),
        (dict(tau=-1.0), "tau"),
        (dict(alpha=-0.1), "alpha"),
        (dict(negatives="hardest"), "negatives"),
        (dict(k=0.0), "k"),
        (dict(k=1.5), "k"),
        (dict(w_l=0.5, w_h=0.6), "w_l"),
        (dict(stage_weights=()), "stage_weights"),
        (dict(stages=(4,)), "stages"),
        (dict(max_positives=0), "max_positives"),
        # wrong types: a clear ValueError, never a TypeError from a comparison
        (dict(tau="0.1"), "tau must be a finite number"),
        (dict(alpha=None), "alpha must be a finite number"),
        (dict(k=None), "k must be a finite number"),
        (dict(w_l=None), "w_l must be a finite number"),
        (dict(stage_weights=None), "stage_weights must be a non-empty list"),
        (dict(stage_weights="0.1"), "stage_weights must be a non-empty list"),
        (dict(stage_weights=(0.1, float("nan"))), r"stage_weights\[1\]"),
        (dict(fusion="no"), "fusion must be True or False"),  # "no" is truthy
        (dict(fill=1), "fill must be True or False"),
        (dict(ignore_index="255"), "ignore_index must be an int"),
        (dict(hard_for="nearest"), "hard_for must be 'others'"),
        (dict(hard_for=None), "hard_for must be 'others'"),
        (dict(hard_for="predicted", negatives="random"), "only acts with negatives='bane'"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ContextrastLoss(4, **kwargs)


@pytest.mark.parametrize("num_classes", [0, True, 4.0, "4"])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        ContextrastLoss(num_classes)


def test_bad_call_inputs():
    logits, embs, labels = batch(dtype=torch.float32)
    loss = ContextrastLoss(4, negatives="random")
    with pytest.raises(ValueError, match="integer"):
        loss(logits, embs, labels.float())
    with pytest.raises(ValueError, match="outside"):
        loss(logits, embs, labels.clamp(max=4) + 1)
    with pytest.raises(ValueError, match="channels"):
        loss(logits[:, :3], embs, labels)
    with pytest.raises(ValueError, match="spatial"):
        loss(logits[..., :8], embs, labels)
    with pytest.raises(ValueError, match="list of 4"):
        loss(logits, embs[:3], labels)
    with pytest.raises(ValueError, match="list of 4"):
        loss(logits, [], labels)
    with pytest.raises(ValueError, match="batch"):
        loss(logits, [e[:1] for e in embs], labels)
    bad = [e.detach().clone() for e in embs]
    bad[2][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf"):
        loss(logits, bad, labels)
    bad[2][0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"embeddings \[2\] contain NaN or inf"):
        loss(logits, bad, labels)
    bad_logits = logits.detach().clone()
    bad_logits[1, 2, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="logits contain NaN or inf"):
        loss(bad_logits, embs, labels)
    big = [e.detach() * 3e38 for e in embs]  # finite, but their sums overflow float32
    with pytest.raises(ValueError, match=r"not finite although.*L2-normalised"):
        loss(logits, big, labels)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 2),
    size=st.integers(2, 12),
    c=st.integers(1, 4),
    kind=st.sampled_from(["random", "one_class", "all_ignore", "some_ignore", "all_wrong"]),
    negatives=st.sampled_from(["bane", "random"]),
    logit_scale=st.sampled_from([0.0, 1.0, 1e4, 1e30]),
    emb_scale=st.sampled_from([1e-30, 1.0, 1e30]),
    seed=st.integers(0, 2**16),
)
def test_property_contextrast_finite_or_clear_error(
    b, size, c, kind, negatives, logit_scale, emb_scale, seed
):
    """ContextrastLoss on any batch: a finite total with finite gradients when the embeddings
    are L2-normalised (as the heads make them), else finite or a ValueError naming the cause."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, c, (b, size, size), generator=g)
    if kind == "one_class":
        labels.fill_(c - 1)
    elif kind == "all_ignore":
        labels.fill_(255)
    elif kind == "some_ignore":
        labels[torch.rand(b, size, size, generator=g) < 0.5] = 255
    logits = torch.randn(b, c, size, size, generator=g) * logit_scale
    if kind == "all_wrong" and c > 1:
        labels.fill_(1)
        logits[:, 0] = logit_scale + 1
    logits.requires_grad_()
    sizes = [max(1, size // s) for s in (1, 2, 4)]
    raw = [torch.randn(b, 3, s, s, generator=g) * emb_scale for s in sizes]
    normalised = emb_scale == 1.0
    embs = [(F.normalize(e, dim=1) if normalised else e).requires_grad_() for e in raw]
    loss = ContextrastLoss(c, stage_weights=(0.3, 0.7, 1.0), negatives=negatives, k=0.5)
    try:
        total, parts = loss(logits, embs, labels)
    except ValueError as err:
        assert not normalised and "L2-normalised" in str(err)
        return
    assert torch.isfinite(total) and total.item() >= 0
    total.backward()
    if normalised and logit_scale < 1e30:
        assert torch.isfinite(logits.grad).all()
        assert all(torch.isfinite(e.grad).all() for e in embs)


# ---------------------------------------------------------------- cross-entropy


def test_safe_cross_entropy_matches_and_handles_all_ignore():
    logits, _, labels = batch()
    torch.testing.assert_close(
        safe_cross_entropy(logits, labels), F.cross_entropy(logits, labels, ignore_index=255)
    )
    labels.fill_(255)
    ce = safe_cross_entropy(logits, labels)
    assert ce.item() == 0.0 and ce.requires_grad
    ce.backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad == 0).all()


def test_cross_entropy_loss_has_the_same_call():
    logits, embs, labels = batch()
    total, parts = CrossEntropyLoss(4)(logits, embs, labels)
    torch.testing.assert_close(total, safe_cross_entropy(logits, labels))
    assert set(parts) >= {"ce", "pa"} and parts["pa"].item() == 0.0
    total2, _ = CrossEntropyLoss(4)(logits, None, labels)
    assert total2.item() == total.item()
    with pytest.raises(ValueError, match="channels"):
        CrossEntropyLoss(5)(logits, None, labels)


def test_cross_entropy_loss_refuses_bad_inputs_as_contextrast_does():
    logits, _, labels = batch()
    bad = logits.detach().clone()
    bad[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="logits contains 1 NaN or inf"):
        CrossEntropyLoss(4)(bad, None, labels)
    with pytest.raises(ValueError, match="outside"):
        CrossEntropyLoss(4)(logits, None, torch.full_like(labels, 4))
    total, _ = CrossEntropyLoss(4, check_inputs=False)(bad, None, labels)  # the caller's choice
    assert not torch.isfinite(total)
    for num_classes in (0, True, "4"):
        with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
            CrossEntropyLoss(num_classes)
    with pytest.raises(ValueError, match="check_inputs must be True or False"):
        CrossEntropyLoss(4, check_inputs="no")


# ---------------------------------------------------------------- dtypes and degenerate inputs


@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8])
def test_integer_labels_of_any_width_give_the_int64_losses(dtype):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    embs = [F.normalize(torch.randn(2, 4, s, s), dim=1) for s in (8, 4)]
    y = torch.randint(0, 3, (2, 8, 8))
    y[0, 0, 0] = 255  # ignore, representable in uint8
    ce = CrossEntropyLoss(3)
    assert ce(logits, None, y.to(dtype))[0] == ce(logits, None, y)[0]
    assert safe_cross_entropy(logits, y.to(dtype)) == safe_cross_entropy(logits, y)
    loss = ContextrastLoss(3, stage_weights=(0.5, 1.0))
    assert loss(logits, embs, y.to(dtype))[0] == loss(logits, embs, y)[0]


def test_half_logits_give_a_finite_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 128, 128) * 3  # 32,768 terms: their float16 sum overflows
    y = torch.randint(0, 3, (2, 128, 128))
    exact = safe_cross_entropy(logits, y)
    half = safe_cross_entropy(logits.half(), y)
    assert torch.isfinite(half) and half.item() == pytest.approx(exact.item(), rel=1e-2)
    embs = [F.normalize(torch.randn(2, 4, s, s), dim=1).half() for s in (32, 16)]
    total, parts = ContextrastLoss(3, stage_weights=(0.5, 1.0))(logits.half(), embs, y)
    assert torch.isfinite(total) and parts["ce"].item() == pytest.approx(exact.item(), rel=1e-2)


@pytest.mark.parametrize("seed", ["a", 1.5, True, -1, 2**63])
def test_seed_is_checked_when_the_loss_is_built(seed):
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*63\)"):
        ContextrastLoss(3, seed=seed)
    with pytest.raises(ValueError, match="seed must be"):
        ContextrastLoss(3).reseed(seed)


def test_distributed_must_be_a_flag():
    with pytest.raises(ValueError, match="distributed must be True or False, got 'no'"):
        ContextrastLoss(3, distributed="no")


def test_empty_maps_are_refused_before_any_work():
    loss = ContextrastLoss(3, stage_weights=(1.0,))
    with pytest.raises(ValueError, match="no pixels"):
        loss(torch.zeros(1, 3, 0, 4), [torch.zeros(1, 4, 0, 2)], torch.zeros(1, 0, 4).long())
    y = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"embeddings\[0\] \(1, 0, 2, 2\) is empty"):
        loss(torch.zeros(1, 3, 4, 4), [torch.zeros(1, 0, 2, 2)], y)
    with pytest.raises(ValueError, match="is empty"):
        loss(torch.zeros(1, 3, 4, 4), [torch.zeros(1, 4, 0, 2)], y)


def test_a_miner_that_returns_the_wrong_thing_is_named():
    logits, y = torch.randn(1, 3, 4, 4), torch.randint(0, 3, (1, 4, 4))
    embs = [F.normalize(torch.randn(1, 4, 4, 4), dim=1)]
    loss = ContextrastLoss(3, stage_weights=(1.0,), negatives=lambda *a: None)
    with pytest.raises(ValueError, match=r"must return \(hard, stats\).*got NoneType"):
        loss(logits, embs, y)
    with pytest.raises(ValueError, match="stages must be distinct stage indices"):
        ContextrastLoss(3, stage_weights=(1.0, 1.0), stages=(True,))


def test_meta_tensors_trace_shapes_through_the_public_api():
    # a meta tensor has shapes and no values: the checks that read values let it pass
    from ctx.negatives import boundary_negatives, error_maps

    m = "meta"
    y = torch.randint(0, 3, (2, 16, 16), device=m)
    logits = torch.randn(2, 3, 16, 16, device=m, requires_grad=True)
    embs = [torch.randn(2, 8, s, s, device=m, requires_grad=True) for s in (16, 8, 4, 2)]
    anchors, present = class_anchors(embs[0], y, 3)
    assert anchors.shape == (3, 8) and present.shape == (3,)
    assert fuse_anchors(anchors, anchors, present, present).shape == (3, 8)
    assert pixel_anchor_loss(embs[0], y, anchors, present).shape == ()
    assert error_maps(y, y, 3).shape == boundary_negatives(y, y, 3).shape == (2, 3, 16, 16)
    total, parts = ContextrastLoss(3)(logits, embs, y)
    total.backward()
    assert total.shape == () and logits.grad.shape == logits.shape
    assert embs[0].grad.shape == embs[0].shape and parts["ce"].device.type == m
