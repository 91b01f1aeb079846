"""Notebooks 02 and 03: the readings printed from their numbers (wording decided by the numbers),
fusion on the same sample, anchor agreement, the toy's colours and BANE's empty maps."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from lesson_fakes import fake_ref, square  # noqa: E402
from torch import nn  # noqa: E402

from ctx.analysis import toy_circle  # noqa: E402
from ctx.anchors import class_anchors, fuse_anchors  # noqa: E402
from ctx.bane_sets import bane_view, scene_batch  # noqa: E402
from ctx.lessons.bane import (  # noqa: E402
    BaneExplorer,
    empty_map_message,
    negatives_reading,
    plot_bane_steps,
    readings_reading,
    sets_reading,
    stages_reading,
)
from ctx.lessons.pa import (  # noqa: E402
    TemperatureExplorer,
    agreement_reading,
    anchor_agreement,
    fusion_effect,
    fusion_reading,
    plot_points,
    toy_colours,
)
from ctx.losses import pixel_anchor_loss  # noqa: E402
from ctx.plotting import colour  # noqa: E402

NAMES3 = ["a", "b", "c"]


def _stages(seed: int = 0, sizes=(8, 4, 2)):
    g = torch.Generator().manual_seed(seed)
    embs = [nn.functional.normalize(torch.randn(2, 6, s, s, generator=g), dim=1) for s in sizes]
    labels = [torch.randint(0, 3, (2, s, s), generator=g) for s in sizes]
    return embs, labels


def test_toy_colours_avoid_the_background_colour():
    colours = toy_colours(3)
    assert not any(np.allclose(c, colour(0)) for c in colours)
    emb, labels = toy_circle(3, 4)
    anchors, present = class_anchors(emb, labels, 3)
    fig = plot_points(emb, labels, anchors, present, NAMES3, colours=colours)
    faces = fig.axes[0].collections[0].get_facecolors()[:, :3]
    np.testing.assert_allclose(faces[0], colours[0])  # point 0 is class 0
    w = TemperatureExplorer([emb], [labels], num_classes=3, class_names=NAMES3, colours=colours)
    faces = w.figure.axes[1].collections[0].get_facecolors()[:, :3]
    assert not any(np.allclose(f, colour(0)) for f in faces)
    w.controls["tau"].value = 0.5  # the control still redraws with the toy's colours
    assert w.result["tau"] == pytest.approx(0.5)


def test_fusion_effect_compares_on_the_same_sample():
    embs, labels = _stages()
    rows = fusion_effect(embs, labels, 3, tau=0.1, samples=3, seed=4)
    assert [r["stage"] for r in rows] == [1, 2]  # the last stage's fused anchors are its own
    (a, p), (a_last, p_last) = (
        class_anchors(embs[0], labels[0], 3),
        class_anchors(embs[-1], labels[-1], 3),
    )
    fused = fuse_anchors(a, a_last, p, p_last)
    gaps = []
    for s in (4, 5, 6):
        own = float(
            pixel_anchor_loss(embs[0], labels[0], a, p, generator=torch.Generator().manual_seed(s))
        )
        fu = float(
            pixel_anchor_loss(
                embs[0], labels[0], fused, p, generator=torch.Generator().manual_seed(s)
            )
        )
        gaps.append(fu - own)
    assert rows[0]["fused − own"] == pytest.approx(np.mean(gaps))
    assert rows[0]["min"] == pytest.approx(min(gaps)) and rows[0]["max"] == pytest.approx(max(gaps))
    none = fusion_effect(embs, labels, 3, w_l=1.0, w_h=0.0, samples=2)  # no fusion: no change
    assert all(r["fused − own"] == 0 and r["cos(fused, own)"] == pytest.approx(1) for r in none)
    assert "sampling noise" in fusion_reading(none, 2)


def test_fusion_reading_follows_the_signs():
    def row(stage, mean, lo, hi):
        return {"stage": stage, "fused − own": mean, "min": lo, "max": hi}

    text = fusion_reading(
        [row(1, 0.01, -0.05, 0.08), row(2, -0.2, -0.3, -0.1), row(3, 0.4, 0.3, 0.5)], 5
    )
    parts = text.split("; ")
    assert "sampling noise" in parts[0]
    assert "lowers the loss by 0.200 on all 5" in parts[1]
    assert "raises the loss by 0.400 on all 5" in parts[2]


def test_anchor_agreement_and_its_reading():
    embs, labels = _stages()
    per = [class_anchors(e, y, 3) for e, y in zip(embs, labels, strict=True)]
    rows = anchor_agreement([a for a, _ in per], [p for _, p in per])
    assert [r["stage"] for r in rows] == [1, 2]
    same = per[-1]  # the last stage against itself: diagonal 1
    one = anchor_agreement([same[0], same[0]], [same[1], same[1]])
    assert one[0]["same class"] == pytest.approx(1.0)
    text = agreement_reading(
        [
            {"stage": 1, "same class": 0.12, "other classes": 0.04},
            {"stage": 2, "same class": 0.39, "other classes": 0.01},
            {"stage": 3, "same class": 0.0, "other classes": 0.01},
        ],
        "X",
    )
    assert "stage 1: a faint diagonal" in text and "stage 2: a clear diagonal" in text
    assert "stage 3: no diagonal" in text


def test_stages_reading_says_where_the_ranking_is_a_tie():
    def row(deep, d_picked, kept):
        return {"D>1 %": deep, "D picked": d_picked, "picked %": kept}

    text = stages_reading(
        [row(11.0, 1.0, 52), row(0.0, 1.0, 58), row(0.0, 1.0, 80), row(0.0, 1.0, 100)], 0.5
    )
    assert "11/0/0/0 % at stages 1–4" in text
    assert "At stages 2, 3 and 4 every error has D = 1" in text
    assert "At stage 1 BANE leaves the deeper errors out, but every pick has D = 1" in text
    assert "BANE keeps is 52/58/80/100 % at stages 1–4, not 50%" in text
    deeper = stages_reading([row(30.0, 1.4, 50), row(0.0, 1.0, 60)], 0.5)
    assert "At stage 1 the picks reach past the rim" in deeper and "At stage 2 every" in deeper


def test_negatives_reading_follows_the_numbers():
    def row(fill, taken, wrong_bane, wrong_random):
        return {
            "fill %": fill,
            "all taken %": taken,
            "wrong % BANE": wrong_bane,
            "wrong % random": wrong_random,
        }

    text = negatives_reading(
        [row(0, 0, 100, 6), row(62, 0, 40, 5), row(87, 9, 14, 5), row(95, 100, 5.1, 5.1)], 256
    )
    assert "`fill` draws at random is 0/62/87/95 % at stages 1–4" in text
    assert "At stage 4 every anchor takes every pixel" in text
    assert "100/40/14/5 % at stages 1–4 with BANE, 6/5/5/5 % at stages 1–4 with" in text
    assert "the same (within half a point) at stage 4." in text
    assert "every anchor" not in negatives_reading([row(10, 50, 30, 5)], 256)


def test_readings_reading_follows_the_numbers():
    def row(bg, taken, hard_o, hard_p, none_p, fill_o, fill_p, wrong_o, wrong_p):
        return {
            "to background %": bg,
            "all taken %": taken,
            "hard/anchor others": hard_o,
            "hard/anchor predicted": hard_p,
            "no hard % predicted": none_p,
            "fill % others": fill_o,
            "fill % predicted": fill_p,
            "wrong % others": wrong_o,
            "wrong % predicted": wrong_p,
        }

    rows = [
        row(21.6, 0, 256.0, 44.1, 0, 0.0, 82.8, 100, 22.3),
        row(17.2, 100, 15.0, 0.0, 27.3, 94.2, 100, 7, 7),
    ]
    text = readings_reading(rows, 256)
    assert "Of BANE's picks, 22/17 % at stages 1–2 are predicted as background" in text
    assert 'gets 5.8/– times as many hard negatives as under "predicted" at stages 1–2' in text
    assert "(256.0/15.0 against 44.1/0.0); at stage 1" in text
    assert "all 256 of an anchor's negatives are hard" in text
    assert "0/27 % of the anchors get no hard negative at all, and `fill` draws 83/100 %" in text
    assert '(under "others": 0/94 %)' in text
    assert 'make up 100/7 % of the negatives under "others", 22/7 % under "predicted".' in text
    assert "At stage 2 every anchor takes every pixel" in text
    quiet = readings_reading([row(20, 50, 9, 1, 0, 50, 90, 30, 10)], 256)
    assert "every anchor takes every pixel" not in quiet and "cap" not in quiet
    assert "9.0 times as many" in quiet
    empty = readings_reading([row(float("nan"), 0, 0.0, 0.0, 0, 0, 0, float("nan"), 1)], 256)
    assert "Of BANE's picks, – % at stages 1–1" in empty and "nan" not in empty


def test_sets_reading_compares_by_the_numbers():
    def row(name, wrong, d, edge, band):
        return {"set": name, "wrong %": wrong, "D px": d, "edge px": edge, "band %": band}

    rows = [
        row("BANE", 100, 1.0, 1.2, 95),
        row("every error", 100, 1.35, 1.5, 88),
        row("random", 41, 1.5, 3.0, 69),
    ]
    text = sets_reading(rows)
    assert (
        "lie nearer to the edge" in text
        and "and more of them" in text
        and "41 % misclassified" in text
    )
    rows[1] = row("every error", 100, 1.0, 1.2, 95)  # all errors on the rim: no difference
    assert "no nearer to" in sets_reading(rows) and "no more of them" in sets_reading(rows)


def test_empty_maps_say_so():
    pred, labels = square()
    scenes = {
        "images": torch.zeros(1, 3, 6, 6, dtype=torch.uint8),
        "labels": labels,
        "pred": labels.clone(),  # all right
        "stages": [],
    }
    view = bane_view(scenes, 0, 1, "input", 0.5)
    assert view["n_errors"] == 0
    assert empty_map_message(view, 0, 1).startswith("all 16 ")
    assert empty_map_message(view, 0, 2).startswith("no ")  # class 2 is not in the image
    fig = plot_bane_steps(scenes, view, 0, 1, 0.5)
    assert len(fig.axes) == 8  # no colour bar for an empty distance map
    assert "the error map is empty" in fig._suptitle.get_text()
    scenes["pred"] = pred  # all wrong: a map with errors gets its colour bar
    fig = plot_bane_steps(scenes, bane_view(scenes, 0, 1, "input", 0.5), 0, 1, 0.5)
    assert len(fig.axes) == 9
    ticks = fig.axes[-1].get_yticks()
    assert np.allclose(ticks, np.round(ticks))  # whole-pixel ticks


def test_bane_explorer_on_an_empty_map_prints_a_message():
    scenes = {n: scene_batch(fake_ref(i)) for i, n in enumerate(("ce", "contextrast"))}
    w = BaneExplorer(scenes)
    assert "K" in w.controls["k_percent"].description
    labels = scenes["contextrast"]["labels"][w.result["image"]]
    absent = next(c for c in range(11) if not (labels == c).any())
    w.controls["cls"].value = absent
    assert w.result["n_errors"] == 0
    assert w.result["text"] == empty_map_message(w.result, w.result["image"], absent)
    assert "nan" not in w.result["text"]
