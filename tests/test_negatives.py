"""BANE: error maps, the boundary selection, its miner and the sampling of positives and negatives
(the distance transform is tested in test_distance.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from edt_helpers import blobs, scipy_edt
from hypothesis import given, settings
from hypothesis import strategies as st
from sync_helpers import HostSyncCounter

from ctx import negatives
from ctx.labels import stage_prediction
from ctx.negatives import (
    BoundaryMiner,
    boundary_negatives,
    distance_transform,
    error_maps,
    no_hard_pixels,
    sample_pixels,
    select_boundary_pixels,
    selection_stats,
)

# ----------------------------------------------------------------------------- helpers


def scene(batch: int, size: int, num_classes: int, seed: int = 0):
    """Blocky label maps and predictions that are wrong in bands and blobs."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, num_classes, (batch, 1, 4, 4), generator=g).float()
    labels = torch.nn.functional.interpolate(coarse, size=(size, size), mode="nearest")[:, 0]
    labels = labels.long()
    pred = labels.roll(shifts=(1, 2), dims=(1, 2)).clone()  # bands along region boundaries
    pred[:, 2:6, 3:9] = (labels[:, 2:6, 3:9] + 1) % num_classes  # a wrong blob
    labels[:, 0, :3] = 255  # some ignore pixels
    return pred, labels


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu():
    mask = blobs((4, 3, 64, 64), seeds=4, radius=6)
    mask[1, 2] = True  # a map with no False pixel: +inf
    got = distance_transform(mask.cuda())  # the dense algorithm, against the CPU's sparse one
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), distance_transform(mask), rtol=0, atol=0)
    pred, labels = scene(4, 40, 5, seed=3)
    gen = torch.Generator("cuda").manual_seed(0)
    sel = boundary_negatives(pred.cuda(), labels.cuda(), 5, generator=gen)
    assert sel.device.type == "cuda"
    assert_nearest_ceil_k(sel.cpu(), pred, labels, 5, 0.5)


# -------------------------------------------------------------------------- error_maps


def test_error_maps_hand_computed():
    labels = torch.tensor([[[0, 1, 2], [255, 1, 1]]])
    pred = torch.tensor([[[0, 2, 2], [0, 1, 0]]])
    out = error_maps(pred, labels, num_classes=3)
    assert out.shape == (1, 3, 2, 3) and out.dtype == torch.bool
    expected = torch.zeros(1, 3, 2, 3, dtype=torch.bool)
    expected[0, 1, 0, 1] = True  # a 1 predicted as 2
    expected[0, 1, 1, 2] = True  # a 1 predicted as 0; the ignore pixel is never set
    assert torch.equal(out, expected)


@pytest.mark.parametrize(
    ("pred", "labels", "match"),
    [
        (torch.zeros(1, 2, 3, dtype=torch.long), torch.zeros(1, 3, 2, dtype=torch.long), "shape"),
        (torch.zeros(1, 2, 3), torch.zeros(1, 2, 3, dtype=torch.long), "argmax"),
        (torch.full((1, 2, 3), 3), torch.zeros(1, 2, 3, dtype=torch.long), "outside"),
        (torch.zeros(1, 2, 3, dtype=torch.long), torch.zeros(1, 2, 3), "integer"),
        (torch.zeros(1, 2, 3, dtype=torch.long), torch.full((1, 2, 3), 7), "outside"),
    ],
)
def test_bad_inputs_raise(pred, labels, match):
    with pytest.raises(ValueError, match=match):
        error_maps(pred, labels, num_classes=3)
    with pytest.raises(ValueError, match=match):
        boundary_negatives(pred, labels, num_classes=3)


# ------------------------------------------------------------------ boundary_negatives


@pytest.mark.parametrize("k", [0.1, 0.3, 0.5, 1.0])
def test_selection_is_the_nearest_ceil_k_fraction(k):
    pred, labels = scene(3, 24, 4, seed=1)
    errors = error_maps(pred, labels, 4)
    dist = distance_transform(errors)
    sel = boundary_negatives(pred, labels, 4, k=k, generator=torch.Generator().manual_seed(0))
    assert sel.shape == errors.shape and sel.dtype == torch.bool
    assert not (sel & ~errors).any()  # a subset of the error maps
    assert not sel[:, :, 0, :3].any()  # ignore pixels are never selected
    n = errors.sum((2, 3))
    assert n.sum() > 0
    assert torch.equal(sel.sum((2, 3)), torch.ceil(n * k - 1e-6).long())
    for b in range(3):
        for c in range(4):
            chosen, rest = dist[b, c][sel[b, c]], dist[b, c][errors[b, c] & ~sel[b, c]]
            if chosen.numel() and rest.numel():
                assert chosen.max() <= rest.min()


def test_k_one_selects_every_error_and_perfect_prediction_nothing():
    pred, labels = scene(2, 16, 3)
    assert torch.equal(boundary_negatives(pred, labels, 3, k=1.0), error_maps(pred, labels, 3))
    perfect = labels.clamp(max=2)
    assert not boundary_negatives(perfect, labels, 3).any()


def test_ceil_is_robust_to_float_rounding():
    labels = torch.zeros(1, 1, 10, dtype=torch.long)
    pred = torch.ones_like(labels)  # 10 wrong pixels; 0.3 * 10 == 3.0000000000000004
    assert boundary_negatives(pred, labels, 2, k=0.3).sum() == 3
    assert boundary_negatives(pred, labels, 2, k=0.31).sum() == 4


def test_ties_are_broken_at_random_but_reproducibly():
    labels = torch.ones(1, 10, 10, dtype=torch.long)
    pred = torch.zeros_like(labels)  # class 1 fills the image, all wrong: all +inf, all tied

    def pick(seed: int) -> torch.Tensor:
        return boundary_negatives(pred, labels, 2, generator=torch.Generator().manual_seed(seed))

    assert pick(0).sum() == 50
    assert torch.equal(pick(0), pick(0))
    assert len({tuple(pick(s).flatten().tolist()) for s in range(4)}) > 1
    torch.manual_seed(5)
    first = boundary_negatives(pred, labels, 2)  # generator=None: torch's default RNG
    torch.manual_seed(5)
    assert torch.equal(first, boundary_negatives(pred, labels, 2))


def test_cut_inside_a_tie_keeps_the_exact_count():
    labels = torch.zeros(1, 9, 9, dtype=torch.long)
    labels[0, 3:6, :] = 1  # a band 3 pixels tall: distances 1, 2, 1 from top to bottom
    pred = torch.zeros_like(labels)
    sel = boundary_negatives(pred, labels, 2, k=0.4, generator=torch.Generator().manual_seed(1))
    assert sel.sum() == math.ceil(0.4 * 27)  # 11 of the 18 pixels at distance 1
    assert not sel[0, 1, 4].any()  # the middle row (distance 2) is never reached


@pytest.mark.parametrize("k", [0, 1.5, -0.1, float("nan"), True])
def test_bad_k_raises(k):
    pred, labels = scene(1, 8, 3)
    with pytest.raises(ValueError, match="k must be"):
        boundary_negatives(pred, labels, 3, k=k)


def test_bad_generator_and_counts_raise():
    pred, labels = scene(1, 8, 3)
    with pytest.raises(ValueError, match="generator must be None or a torch.Generator, got int"):
        boundary_negatives(pred, labels, 3, generator=3)
    for num_classes in (True, 3.0):
        with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
            boundary_negatives(pred, labels, num_classes)
    with pytest.raises(ValueError, match="ignore_index must be an int"):
        error_maps(pred, labels, 3, ignore_index=None)


def test_selection_stats():
    pred, labels = scene(2, 16, 3)
    errors = error_maps(pred, labels, 3)
    sel = boundary_negatives(pred, labels, 3, k=0.5, generator=torch.Generator().manual_seed(0))
    stats = selection_stats(sel, errors, distance_transform(errors), bins=4)
    assert torch.equal(stats["errors"], errors.sum((0, 2, 3)))
    assert torch.equal(stats["selected"], sel.sum((0, 2, 3)))
    n = errors.flatten(2).sum(-1)  # per (image, class) map
    assert stats["fraction"] == pytest.approx(float(torch.ceil(0.5 * n).sum() / n.sum()))
    # means and histograms against scipy's EDT at the selected and the other wrong pixels
    dist = np.minimum(scipy_edt(errors), 4.0)  # +inf counts as `bins`
    for name, mask in (("selected", sel), ("unselected", errors & ~sel)):
        vals = dist[mask.numpy()]
        assert stats[f"mean_{name}"] == pytest.approx(vals.mean())
        want = np.bincount(np.minimum(np.floor(vals), 3).astype(int), minlength=4)
        assert stats[f"hist_{name}"].tolist() == want.tolist()
    assert stats["mean_selected"] < stats["mean_unselected"]  # the nearest first
    with pytest.raises(ValueError, match=r"\[B,C,H,W\]"):
        selection_stats(sel[0], errors)


# --------------------------------------------- the training step's sync-free selection


def assert_nearest_ceil_k(sel, pred, labels, num_classes, k, ignore=255):
    """`sel` [B,C,H,W] against a reference from scipy's EDT, map by map: ceil(k n) pixels, the
    nearest; where the cut falls between two distances, exactly the reference's set."""
    errors = error_maps(pred, labels, num_classes, ignore)
    assert not (sel & ~errors).any()
    dist = scipy_edt(errors)
    for b, c in np.ndindex(*errors.shape[:2]):
        err, chosen = errors[b, c].numpy(), sel[b, c].numpy()
        n = int(err.sum())
        quota = math.ceil(k * n * (1 - 1e-12))
        assert chosen.sum() == quota
        ranked = np.sort(dist[b, c][err])
        if quota == 0:
            continue
        cut = ranked[quota - 1]
        if quota == n or ranked[quota] > cut:  # no tie at the cut: the set is determined
            assert np.array_equal(chosen, err & (dist[b, c] <= cut))
        else:  # a tie at the cut: the same distances, whichever tied pixels
            np.testing.assert_array_equal(np.sort(dist[b, c][chosen]), ranked[:quota])


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12)),
    num_classes=st.sampled_from([1, 2, 3, 4, 40]),
    k=st.sampled_from([1e-9, 0.1, 0.3, 0.5, 0.75, 1.0]),
    wrong=st.floats(0.0, 1.0),
    ignore=st.sampled_from([255, -1]),
    seed=st.integers(0, 2**16),
    two_sorts=st.booleans(),
)
def test_property_selection_equals_reference(shape, num_classes, k, wrong, ignore, seed, two_sorts):
    """The static-shape selection picks what a straightforward per-map sort of scipy's
    distances picks (exactly, when no tie straddles the cut), on either sorting path, for any
    shape, classes present or absent, ignore pixels (either ignore value) and tiny k."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, shape, generator=g)
    labels[torch.rand(shape, generator=g) < 0.1] = ignore
    pred = torch.where(
        torch.rand(shape, generator=g) < wrong,
        torch.randint(0, num_classes, shape, generator=g),
        labels.clamp(0, num_classes - 1),
    )
    limit = 0 if two_sorts else negatives._KEY_LIMIT
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(negatives, "_KEY_LIMIT", limit)
        sel = boundary_negatives(pred, labels, num_classes, k, ignore, generator=g)
    assert_nearest_ceil_k(sel, pred, labels, num_classes, k, ignore)


@pytest.mark.parametrize("two_sorts", [False, True])
def test_scenes_equal_reference(monkeypatch, two_sorts):
    if two_sorts:
        monkeypatch.setattr(negatives, "_KEY_LIMIT", 0)
    pred, labels = scene(3, 40, 5, seed=2)
    for k in (0.2, 0.5):
        sel = boundary_negatives(pred, labels, 5, k=k, generator=torch.Generator().manual_seed(1))
        assert_nearest_ceil_k(sel, pred, labels, 5, k)


def test_select_boundary_pixels_is_the_any_of_boundary_negatives():
    pred, labels = scene(3, 24, 4, seed=4)
    sel = boundary_negatives(pred, labels, 4, generator=torch.Generator().manual_seed(2))
    hard, counts = select_boundary_pixels(
        pred, labels, 4, generator=torch.Generator().manual_seed(2)
    )
    assert hard.shape == labels.shape and hard.dtype == torch.bool
    assert torch.equal(hard, sel.any(1))
    assert torch.equal(counts, sel.sum((2, 3)))


@pytest.mark.parametrize("kind", ["scene", "all_wrong", "perfect", "all_ignore"])
def test_selection_makes_no_host_sync_and_uses_data_independent_randomness(kind):
    pred, labels = scene(2, 20, 3, seed=5)
    if kind == "all_wrong":
        labels.fill_(1)
        pred.fill_(0)
    elif kind == "perfect":
        pred = labels.clamp(max=2)
    elif kind == "all_ignore":
        labels.fill_(255)
    g = torch.Generator().manual_seed(0)
    with HostSyncCounter() as counter:
        select_boundary_pixels(pred, labels, 3, 0.5, 255, g)
    assert dict(counter.counts) == {}
    # the generator advanced by the same amount whatever the prediction
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=reference_draw()))


def reference_draw() -> torch.Generator:
    g = torch.Generator().manual_seed(0)
    torch.randperm(2 * 20 * 20, generator=g)
    return g


@pytest.mark.parametrize("case", ["full", "band"])
def test_ties_are_broken_uniformly(case):
    """Over many seeds, every pixel tied at the cut is selected about equally often."""
    if case == "full":  # class 1 fills the image, all wrong: 12 pixels tied at +inf, keep 6
        labels, k = torch.ones(1, 3, 4, dtype=torch.long), 0.5
        tied = torch.ones(1, 3, 4, dtype=torch.bool)
    else:  # a band 3 rows tall, all wrong: 18 pixels at distance 1 (keep 11), 9 at 2 (never)
        labels, k = torch.zeros(1, 9, 9, dtype=torch.long), 0.4
        labels[0, 3:6] = 1
        tied = torch.zeros(1, 9, 9, dtype=torch.bool)
        tied[0, 3], tied[0, 5] = True, True
    pred = torch.zeros_like(labels)
    quota = math.ceil(k * int((labels == 1).sum()))
    draws = 400
    freq = torch.zeros(labels.shape)
    for seed in range(draws):
        sel = boundary_negatives(
            pred, labels, 2, k=k, generator=torch.Generator().manual_seed(seed)
        )
        assert sel.sum() == quota
        freq += sel[:, 1]
    assert (freq[~tied] == 0).all()  # nearest first: nothing beyond the cut
    p = quota / int(tied.sum())
    sd = math.sqrt(draws * p * (1 - p))
    assert ((freq[tied] - draws * p).abs() < 5 * sd).all(), freq


# ------------------------------------------------------------------------------- miners


def test_boundary_miner_is_bane_at_the_stage_size():
    _, labels = scene(2, 24, 4, seed=6)
    logits = torch.randn(2, 4, 24, 24, generator=torch.Generator().manual_seed(0))
    small = labels[:, ::2, ::2].contiguous()
    hard, stats = BoundaryMiner(4, k=0.3)(logits, small, torch.Generator().manual_seed(3))
    pred = stage_prediction(logits, (12, 12))
    sel = boundary_negatives(pred, small, 4, 0.3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(hard, sel.any(1))
    assert torch.equal(stats["selected_per_class"], sel.sum((0, 2, 3)))
    assert no_hard_pixels(logits, small, None) == (None, {})
    with pytest.raises(ValueError, match="k must be"):
        BoundaryMiner(4, k=0.0)


def test_boundary_miner_predicted_reading_splits_the_selection_by_predicted_class():
    """hard_for="predicted": anchor m's hard negatives are the selected pixels predicted as m;
    together they are "others"' map, each selected pixel under exactly one anchor, never its
    own label's; the random stream and the counts are the same."""
    _, labels = scene(2, 24, 4, seed=6)
    logits = torch.randn(2, 4, 24, 24, generator=torch.Generator().manual_seed(0))
    small = labels[:, ::2, ::2].contiguous()
    others, s1 = BoundaryMiner(4, k=0.3)(logits, small, torch.Generator().manual_seed(3))
    per, s2 = BoundaryMiner(4, k=0.3, hard_for="predicted")(
        logits, small, torch.Generator().manual_seed(3)
    )
    pred = stage_prediction(logits, (12, 12))
    assert per.shape == (4, 2, 12, 12) and per.dtype == torch.bool
    assert torch.equal(per.any(0), others) and torch.equal(per.sum(0), others.long())
    for m in range(4):
        assert torch.equal(per[m], others & (pred == m))
        assert not (per[m] & (small == m)).any()
    assert torch.equal(s1["selected_per_class"], s2["selected_per_class"])
    with pytest.raises(ValueError, match="hard_for must be 'others'"):
        BoundaryMiner(4, hard_for="nearest")


def test_sample_per_anchor_hard_maps_by_hand():
    """Pixel 4 (label 1, predicted 2) under both readings: "others" makes it a hard negative of
    anchors 0 and 2, "predicted" of anchor 2 only; it stays a positive of class 1."""
    labels = torch.tensor([[[0, 0, 1, 1, 1, 2, 2]]])
    hard = torch.tensor([[[False, False, False, False, True, False, False]]])
    per = torch.zeros(3, *labels.shape, dtype=torch.bool)
    per[2, 0, 0, 4] = True
    g = torch.Generator().manual_seed(0)
    s = sample_pixels(labels, 3, hard, max_negatives=1, generator=g)
    neg = rows(s.neg_idx, s.neg_ok)
    assert neg[0] == neg[2] == [4] and len(neg[1]) == 1 and neg[1][0] in {0, 1, 5, 6}
    s = sample_pixels(labels, 3, hard, fill=False, generator=g)
    assert rows(s.neg_idx, s.neg_ok) == [[4], [], [4]]
    s = sample_pixels(labels, 3, per, fill=False, generator=g)
    assert rows(s.neg_idx, s.neg_ok) == [[], [], [4]]
    assert rows(s.pos_idx, s.pos_ok) == [[0, 1], [2, 3, 4], [5, 6]]
    for seed in range(5):  # with fill, anchor 2's one negative is its hard pixel
        s = sample_pixels(
            labels, 3, per, max_negatives=1, generator=torch.Generator().manual_seed(seed)
        )
        assert rows(s.neg_idx, s.neg_ok)[2] == [4]
    with pytest.raises(ValueError, match=r"\(3, 1, 1, 7\) \(one map per anchor\)"):
        sample_pixels(labels, 3, torch.zeros(2, 1, 1, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"on cpu; got torch.bool \(3, 1, 1, 7\) on meta"):
        sample_pixels(labels, 3, torch.zeros(3, 1, 1, 7, dtype=torch.bool, device="meta"))


# ----------------------------------------------------------------------------- sampling


def rows(idx, ok):
    """Per class, the sorted pixel indices a sample holds (idx None: every column)."""
    if idx is None:
        idx = torch.arange(ok.shape[1]).expand_as(ok)
    return [sorted(i[m].tolist()) for i, m in zip(idx, ok, strict=True)]


def test_sample_hard_negatives_come_first_and_fill_tops_up():
    labels = torch.tensor([[[0, 0, 1, 1, 1, 1, 255]]])
    hard = torch.tensor([[[False, True, False, True, False, True, True]]])
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        s = sample_pixels(labels, 2, hard, max_negatives=2, generator=g)
        assert rows(s.neg_idx, s.neg_ok)[0] == [3, 5]  # class 0: its two hard negatives
        s = sample_pixels(labels, 2, hard, max_negatives=3, generator=g)
        neg = rows(s.neg_idx, s.neg_ok)[0]
        assert len(neg) == 3 and {3, 5} < set(neg) <= {2, 3, 4, 5}  # topped up at random
        s = sample_pixels(labels, 2, hard, max_negatives=3, fill=False, generator=g)
        assert rows(s.neg_idx, s.neg_ok) == [[3, 5], [1]]  # hard ones only
    s = sample_pixels(labels, 2, None, max_positives=10, max_negatives=10)
    assert s.pos_idx is None and s.neg_idx is None  # no cap hit: every pixel is a column
    assert rows(s.pos_idx, s.pos_ok) == [[0, 1], [2, 3, 4, 5]]
    assert rows(s.neg_idx, s.neg_ok) == [[2, 3, 4, 5], [0, 1]]  # never the ignore pixel


def test_sample_caps_and_bad_inputs():
    labels = torch.tensor([[[0, 0, 1, 1, 1, 1]]])
    s = sample_pixels(labels, 3, max_positives=3, max_negatives=1)
    assert [len(r) for r in rows(s.pos_idx, s.pos_ok)] == [2, 3, 0]
    assert [len(r) for r in rows(s.neg_idx, s.neg_ok)] == [1, 1, 1]
    with pytest.raises(ValueError, match="hard must be None or a bool tensor"):
        sample_pixels(labels, 3, hard=labels.long())
    with pytest.raises(ValueError, match="max_negatives"):
        sample_pixels(labels, 3, max_negatives=0)
    with pytest.raises(ValueError, match="max_positives"):
        sample_pixels(labels, 3, max_positives=1.5)
    with pytest.raises(ValueError, match="fill must be True or False"):
        sample_pixels(labels, 3, hard=labels == 1, fill="no")
    with pytest.raises(ValueError, match="generator must be None or a torch.Generator"):
        sample_pixels(labels, 3, generator=0)


def test_sample_draws_one_uniform_key_per_class_and_pixel():
    """The random stream consumed is torch.rand(C, M) whatever the data (a training run's
    numerics depend on it), and the same generator state gives the same sample."""
    labels, _ = scene(2, 10, 3, seed=1)
    hard = torch.rand(labels.shape, generator=torch.Generator().manual_seed(9)) < 0.3
    g = torch.Generator().manual_seed(4)
    a = sample_pixels(labels, 3, hard, max_positives=5, max_negatives=7, generator=g)
    ref = torch.Generator().manual_seed(4)
    torch.rand(3, labels.numel(), generator=ref)
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=ref))
    b = sample_pixels(
        labels,
        3,
        hard,
        max_positives=5,
        max_negatives=7,
        generator=torch.Generator().manual_seed(4),
    )
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 8), st.integers(1, 8)),
    num_classes=st.integers(1, 4),
    hard_frac=st.sampled_from([None, 0.0, 0.3, 1.0]),
    per_anchor=st.booleans(),
    fill=st.booleans(),
    caps=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    seed=st.integers(0, 2**16),
)
def test_property_sample(shape, num_classes, hard_frac, per_anchor, fill, caps, seed):
    """Every row: distinct pixels of the right sets, as many as the cap allows, hard first
    (hard: one map for every anchor, or one map per anchor)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, shape, generator=g)
    labels[torch.rand(shape, generator=g) < 0.2] = 255
    hard_shape = (num_classes, *shape) if per_anchor else shape
    hard = None if hard_frac is None else torch.rand(hard_shape, generator=g) < hard_frac
    s = sample_pixels(labels, num_classes, hard, caps[0], caps[1], fill, generator=g)
    y = labels.reshape(-1)
    for n, (pos, neg) in enumerate(
        zip(rows(s.pos_idx, s.pos_ok), rows(s.neg_idx, s.neg_ok), strict=True)
    ):
        if hard is None:
            is_hard = torch.zeros_like(y, dtype=torch.bool)
        else:
            is_hard = (hard[n] if per_anchor else hard).reshape(-1)
        own = set((y == n).nonzero().squeeze(1).tolist())
        other = set(((y != n) & (y != 255)).nonzero().squeeze(1).tolist())
        hard_other = {m for m in other if is_hard[m]}
        pool = other if hard is None or fill else hard_other
        assert len(set(pos)) == len(pos) == min(len(own), caps[0]) and set(pos) <= own
        assert len(set(neg)) == len(neg) == min(len(pool), caps[1]) and set(neg) <= pool
        assert set(neg) >= hard_other or set(neg) <= hard_other  # hard ones first


def test_maps_without_pixels_give_empty_selections():
    for shape in ((2, 0, 5), (2, 5, 0)):
        y = torch.zeros(shape, dtype=torch.long)
        picks = boundary_negatives(y, y, 3)
        assert picks.shape == (shape[0], 3, *shape[1:]) and picks.dtype == torch.bool
        assert error_maps(y, y, 3).shape == picks.shape
        hard, counts = select_boundary_pixels(y, y, 3)
        assert hard.shape == shape and counts.tolist() == [[0, 0, 0]] * 2


def test_pred_is_not_read_at_ignored_pixels():
    torch.manual_seed(0)
    y = torch.randint(0, 3, (2, 6, 6))
    y[:, :2] = 255
    pred = torch.randint(0, 3, (2, 6, 6))
    void = torch.where(y == 255, 255, pred)  # e.g. predictions saved with the void id
    assert torch.equal(error_maps(void, y, 3), error_maps(pred, y, 3))
    g = [torch.Generator().manual_seed(1) for _ in range(2)]
    assert torch.equal(
        boundary_negatives(void, y, 3, generator=g[0]),
        boundary_negatives(pred, y, 3, generator=g[1]),
    )
    with pytest.raises(ValueError, match="at labelled pixels"):
        error_maps(torch.where(y == 255, pred, 7), y, 3)
