"""ctx.bane_sets: BANE's negatives and the alternatives on hand-made maps and tiny fake reference runs."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from lesson_fakes import fake_ref, square  # noqa: E402
from scipy import ndimage  # noqa: E402

from ctx.bane_sets import (  # noqa: E402
    bane_by_stage,
    compare_negative_sets,
    edge_distance,
    loss_negatives,
    negative_sets,
    negatives_by_stage,
    random_like,
    readings_by_stage,
    scene_batch,
    stage_choices,
    stage_maps,
    worst_maps,
)
from ctx.data import NUM_CLASSES  # noqa: E402
from ctx.plotting import format_table  # noqa: E402


@pytest.fixture(scope="module")
def refs() -> dict:
    return {"ce": fake_ref(0), "contextrast": fake_ref(1)}


def test_random_like_matches_counts_and_stays_in_class():
    labels = torch.randint(0, 3, (2, 8, 8))
    selected = torch.zeros(2, 3, 8, 8, dtype=torch.bool)
    selected[0, 1] = labels[0] == 1
    selected[1, 2, :2] = labels[1, :2] == 2
    g = torch.Generator().manual_seed(0)
    out = random_like(selected, labels, 3, generator=g)
    assert torch.equal(out.sum((2, 3)), selected.sum((2, 3)))
    own = labels[:, None] == torch.arange(3).view(1, 3, 1, 1)
    assert not (out & ~own).any()
    again = random_like(selected, labels, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="must be"):
        random_like(selected[:, :2], labels, 3)


def test_negative_sets_on_a_square():
    pred, labels = square()
    sets = negative_sets(pred, labels, 2, k=0.5)
    assert set(sets) == {"BANE", "every error", "random"}
    assert int(sets["every error"].sum()) == 16 and int(sets["every error"][0, 0].sum()) == 0
    bane = sets["BANE"][0, 1]
    assert int(bane.sum()) == 8
    assert not bane[2:4, 2:4].any()  # the inner 2x2 (D = 2) is never among the nearest half
    assert int(sets["random"].sum()) == 8 and not (sets["random"][0, 1] & (labels[0] != 1)).any()
    rows = {r["set"]: r for r in compare_negative_sets(sets, pred, labels, 2)}
    assert rows["BANE"]["D px"] == pytest.approx(1.0)
    assert rows["every error"]["D px"] == pytest.approx((12 * 1 + 4 * 2) / 16)
    assert rows["every error"]["edge px"] == pytest.approx(1.25)
    assert rows["BANE"]["wrong %"] == 100.0 and rows["BANE"]["pixels"] == 8
    empty = compare_negative_sets(
        {"none": torch.zeros(1, 2, 6, 6, dtype=torch.bool)}, pred, labels, 2
    )
    assert empty[0]["pixels"] == 0 and math.isnan(empty[0]["D px"])


def test_edge_distance_matches_scipy():
    labels = torch.randint(0, 3, (2, 9, 7))
    got = edge_distance(labels, 3)
    want = np.zeros(labels.shape)
    for b in range(2):
        for c in range(3):
            m = (labels[b] == c).numpy()
            if m.any():
                want[b] += np.where(m, ndimage.distance_transform_edt(m), 0)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    labels[0, 2, 3] = 255
    assert edge_distance(labels, 3)[0, 2, 3] == 0


def test_format_table_and_worst_maps():
    text = format_table([{"set": "a", "n": 3, "x": 1.234}, {"set": "bb", "n": 10, "x": math.nan}])
    lines = text.splitlines()
    assert lines[0].split() == ["set", "n", "x"] and lines[1].split() == ["a", "3", "1.2"]
    assert lines[2].split() == ["bb", "10", "nan"]
    pred, labels = square()
    pred, labels = torch.cat([pred, labels]), torch.cat([labels, labels])  # image 1 is perfect
    assert worst_maps(pred, labels, 2) == [(0, 1, 16)]
    assert worst_maps(labels, labels, 2) == []


def test_scene_batch_probe_and_model(refs):
    ref = refs["ce"]
    small = scene_batch(ref, 2)
    assert torch.equal(small["pred"], ref.probe["pred"][:2])
    assert [c for _, c in stage_choices(small)] == ["input", 0, 1, 2, 3]
    assert stage_maps(small, 1)[1].shape == (2, 4, 4)
    with pytest.raises(ValueError, match="stage"):
        stage_maps(small, 7)
    more = scene_batch(ref, 6)  # beyond the probe: the model predicts new scenes
    assert more["images"].shape == (6, 3, 16, 16) and len(more["stages"]) == 4
    assert torch.equal(more["pred"][:4], ref.probe["pred"])
    assert torch.equal(more["stages"][2]["labels"][:4], ref.probe["stages"][2]["labels"])


def test_bane_by_stage_and_worst_digit_map(refs):
    scenes = {n: scene_batch(r, 2) for n, r in refs.items()}
    rows, stats = bane_by_stage(scenes, k=0.5)
    assert len(rows) == 2 * 5 and set(stats) == {
        (n, s) for n in scenes for s in ["input", 0, 1, 2, 3]
    }
    pred, labels = stage_maps(scenes["ce"], "input")
    errors = int((pred != labels).sum())
    # exactly ceil(k n) picks per (image, class) error map: error_maps by hand, per map
    maps = [
        int(((pred[i] == labels[i]).logical_not() & (labels[i] == c)).sum())
        for i in range(len(labels))
        for c in range(NUM_CLASSES)
    ]
    assert rows[0]["errors"] == errors == sum(maps)
    assert rows[0]["picked"] == sum(math.ceil(0.5 * n) for n in maps)
    digits = worst_maps(pred, labels, top=3, classes=range(1, NUM_CLASSES))
    assert digits and all(c != 0 for _, c, _ in digits)


def test_loss_negatives_draws_what_the_loss_draws():
    pred, labels = square()  # 16 class-1 pixels, all wrong; 20 background pixels
    neg = loss_negatives(pred, labels, 3, k=0.5, max_negatives=4)
    hard = neg["hard"]  # [C,B,H,W]: the 8 picks (class 1) are hard for anchors 0 and 2
    assert hard.shape == (3, 1, 6, 6) and torch.equal(hard[0], hard[2]) and not hard[1].any()
    assert torch.equal(neg["picks"], hard[0])  # the picks [B,H,W], all of class 1
    assert int(hard[0].sum()) == 8 and not (hard[0] & (labels != 1)).any()
    for name in ("bane", "random"):
        assert neg[name].shape == (3, 1, 6, 6)
        assert neg[name].flatten(1).sum(1).tolist() == [4, 4, 0]  # class 2 has no anchor
        for m in (0, 1):
            assert not (neg[name][m] & (labels == m)).any()  # never the anchor's own class
    assert not (neg["bane"][0] & ~hard[0]).any()  # 8 hard candidates fill the 4 places
    assert not (neg["bane"][1] & hard.any(0)).any()  # no hard pixel is another class than 1
    # the other reading: every pick is predicted background, so hard for anchor 0 alone
    other = loss_negatives(pred, labels, 3, k=0.5, max_negatives=4, hard_for="predicted")
    assert torch.equal(other["hard"][0], hard[0]) and not other["hard"][1:].any()
    assert torch.equal(other["bane"][0], neg["bane"][0])  # same stream, same draw
    with pytest.raises(ValueError, match="hard_for must be"):
        loss_negatives(pred, labels, 3, hard_for="all")
    every = loss_negatives(pred, labels, 3, k=0.5, max_negatives=100)  # no cap hit
    assert torch.equal(every["bane"], every["random"])
    assert torch.equal(every["bane"][0], labels == 1) and torch.equal(every["bane"][1], labels == 0)


def test_negatives_by_stage_rows(refs):
    scenes = scene_batch(refs["contextrast"], 4)
    rows = negatives_by_stage(scenes, k=0.5, max_negatives=8, batch=2)
    assert [r["resolution"].split(" (")[0] for r in rows] == [f"stage {i}" for i in range(1, 5)]
    for r in rows:
        assert r["anchors"] > 0 and 0 <= r["all taken %"] <= 100
        assert 0 <= r["fill %"] <= 100 or math.isnan(r["fill %"])
        assert r["hard/anchor"] <= 8 and 0 <= r["no hard %"] <= 100
    uncapped = negatives_by_stage(scenes, k=0.5, max_negatives=10**6, batch=2)
    for r in uncapped:  # every anchor takes every candidate: BANE changes nothing
        assert r["all taken %"] == 100
        assert r["wrong % BANE"] == pytest.approx(r["wrong % random"], nan_ok=True)
        assert r["band % BANE"] == pytest.approx(r["band % random"], nan_ok=True)


def test_readings_by_stage(refs):
    """ "predicted" gives anchor m a subset of "others"' hard pixels (the picks predicted as m,
    never labelled m), so never more hard negatives per anchor; the rows are
    `negatives_by_stage`'s under each reading, on the same picks."""
    scenes = scene_batch(refs["contextrast"], 4)
    rows = readings_by_stage(scenes, k=0.5, max_negatives=8, batch=2)
    assert len(rows) == 4
    others = negatives_by_stage(scenes, 0.5, 8, 2)
    predicted = negatives_by_stage(scenes, 0.5, 8, 2, hard_for="predicted")
    for r, o, p in zip(rows, others, predicted, strict=True):
        pairs = [
            ("hard/anchor others", o["hard/anchor"]),
            ("fill % others", o["fill %"]),
            ("wrong % others", o["wrong % BANE"]),
            ("all taken %", o["all taken %"]),
            ("hard/anchor predicted", p["hard/anchor"]),
            ("fill % predicted", p["fill %"]),
            ("wrong % predicted", p["wrong % BANE"]),
            ("no hard % predicted", p["no hard %"]),
        ]
        for key, value in pairs:
            assert r[key] == pytest.approx(value, nan_ok=True), key
        assert r["hard/anchor predicted"] <= r["hard/anchor others"]
        assert r["picks"] >= 0 and (0 <= r["to background %"] <= 100 or r["picks"] == 0)
    pred, labels = square()  # all 8 picks predicted background
    stage = {"labels": labels, "pred": pred}
    sq = {"images": None, "labels": labels, "pred": pred, "stages": [stage]}
    row = readings_by_stage(sq, k=0.5, max_negatives=4, num_classes=3)[0]
    assert row["picks"] == 8 and row["to background %"] == 100.0
    # anchor 0 takes 4 of the 8 picks under both readings, anchor 1 none (all picks are its own)
    assert row["hard/anchor others"] == row["hard/anchor predicted"] == 4 / 2
    assert row["no hard % predicted"] == 50.0
    assert readings_by_stage(sq, 0.5, 4, num_classes=3, background=1)[0]["to background %"] == 0
    for bad in ("x", None, 3, 1.5, True):
        with pytest.raises(ValueError, match="background must be a class"):
            readings_by_stage(sq, 0.5, 4, num_classes=3, background=bad)


def test_bane_by_stage_shares_and_empty_other():
    pred, labels = square()
    scenes = {"images": None, "labels": labels, "pred": pred, "stages": []}
    rows, _ = bane_by_stage({"sq": scenes}, k=0.5)
    assert rows[0]["D>1 %"] == pytest.approx(100 * 4 / 16)  # the inner 2x2 has D = 2
    assert rows[0]["picked %"] == 50.0 and rows[0]["D other"] == pytest.approx(1.5)
    rows, _ = bane_by_stage({"sq": scenes}, k=1.0)
    assert rows[0]["D other"] == "–"  # every error picked: no other errors
