"""ctx.lessons: every explorer is built headlessly, a control's value is set, and the callback's
effect is checked (its recomputed numbers and a new figure); the figures on hand-made inputs."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import ipywidgets as widgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from lesson_fakes import by_hand_similarity, fake_ref, square, untrained_model  # noqa: E402
from torch import nn  # noqa: E402

from ctx.analysis import (  # noqa: E402
    anchor_summary,
    band_shares,
    exact_pa_loss,
    negative_weights,
    per_scene_scores,
    predict,
    top_confusions,
    toy_circle,
)
from ctx.anchors import class_anchors, fuse_anchors  # noqa: E402
from ctx.bane_sets import negative_sets, scene_batch, stage_maps  # noqa: E402
from ctx.lessons.anchors import (  # noqa: E402
    AnchorExplorer,
    plot_alignment_curves,
    plot_similarity_matrices,
    plot_trajectories,
)
from ctx.lessons.atlas import ALL_CLASSES, AtlasExplorer, plot_atlas  # noqa: E402
from ctx.lessons.bane import BaneExplorer, plot_distance_histograms  # noqa: E402
from ctx.lessons.base import Explorer  # noqa: E402
from ctx.lessons.confusion import ConfusionExplorer, plot_confusion  # noqa: E402
from ctx.lessons.pa import FusionExplorer, TemperatureExplorer, plot_anchor_similarity, plot_points  # noqa: E402
from ctx.lessons.receptive_field import ReceptiveFieldExplorer  # noqa: E402
from ctx.lessons.scenes import SceneBrowser  # noqa: E402
from ctx.lessons.training import LiveCurves, show_ablation, train_live  # noqa: E402
from ctx.negatives import distance_transform  # noqa: E402
from ctx.projection import Atlas, separation_table  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model():
    return untrained_model()


@pytest.fixture(scope="module")
def scenes():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.zeros(3, 32, 32, dtype=torch.long)
    labels[:, 8:20, 8:20] = 3
    labels[1, 20:28, 4:12] = 5
    return images, labels


@pytest.fixture(scope="module")
def refs() -> dict:
    return {"ce": fake_ref(0), "contextrast": fake_ref(1)}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


NAMES3 = ("a", "b", "c")


def test_receptive_field_explorer_recomputes(tiny_model, scenes):
    w = ReceptiveFieldExplorer(tiny_model, scenes[0], stage=1)
    assert w.result["rf"] == 7 and w.result["measured"] == (7, 7)
    fig = w.figure
    w.controls["stage"].value = 2
    assert w.result["rf"] == 19 and w.figure is not fig
    w.controls["row"].value = 0  # a field clipped by the image border
    assert w.result["cell"][0] == 0 and w.result["measured"][0] < 19
    assert 0 < w.result["centre_share"] <= 1


def test_predict_and_scene_browser(tiny_model, scenes):
    images, labels = scenes
    preds = predict(tiny_model, images, batch_size=2)
    assert preds.shape == labels.shape and preds.dtype == torch.int64
    w = SceneBrowser(images, labels, {"model": tiny_model, "truth": labels})
    assert w.result["index"] == 0 and w.result["scores"]["truth"]["miou"] == 100.0
    fig = w.figure
    w.controls["index"].value = 2
    assert w.result["index"] == 2 and w.figure is not fig
    assert w.result["scores"]["model"]["pixel_acc"] == pytest.approx(
        100 * float((preds[2] == labels[2]).float().mean())
    )
    calls = w.draws
    w.controls["errors"].value = True
    assert w.draws == calls + 1
    scores = per_scene_scores(preds, labels, 11, "pixel_acc")
    assert scores.shape == (3,) and scores[2] == pytest.approx(
        w.result["scores"]["model"]["pixel_acc"]
    )


def test_top_confusions_and_plot():
    mat = torch.tensor([[8, 2, 0], [0, 5, 5], [1, 0, 9]])
    top = top_confusions(mat, k=2, class_names=NAMES3)
    assert top == [("b", "c", 0.5), ("a", "b", 0.2)]
    fig = plot_confusion(mat, NAMES3)
    assert fig.axes[0].images[0].get_array()[1, 2] == pytest.approx(50.0)


def test_confusion_explorer_recomputes(scenes):
    images, labels = scenes
    pred = labels.clone()
    pred[:, 12:16, 12:16] = 4  # the middle of every '2' block (rows 8-19) predicted as '3'
    w = ConfusionExplorer({"perfect": labels, "interior": pred}, labels, images)
    assert w.result["miou"] == 100.0 and w.result["top"] == []
    w.controls["model"].value = "interior"
    assert w.result["top"] == [("2", "3", pytest.approx(16 / 144))]
    assert w.result["miou"] < 100 and w.result["boundary_miou"] == 100.0  # errors 4 px from edges
    assert w.result["band_errors"] == 0.0 and 0 < w.result["band_pixels"] < 1
    fig = w.figure
    w.controls["width"].value = 5  # the band now reaches them
    assert w.result["width"] == 5 and w.result["boundary_miou"] < 100 and w.figure is not fig
    assert 0 < w.result["band_errors"] < 1
    assert band_shares(w.matrix("perfect", 5))[1] != band_shares(w.matrix("perfect", 5))[1]  # NaN
    w.controls["region"].value = "boundary band"
    assert w.result["region"] == "boundary band" and w.result["top"][0][:2] == ("2", "3")


def _pa_by_hand(emb, labels, tau):
    """The PA formula, loop by loop, in float64."""
    z = emb[0, :, 0].T.double()
    y = labels[0, 0]
    losses = []
    for n in y.unique():
        a = z[y == n].mean(0)
        a = a / a.norm()
        pos, neg = z[y == n] @ a / tau, z[y != n] @ a / tau
        terms = [-math.log(math.exp(p) / (math.exp(p) + neg.exp().sum())) for p in pos.tolist()]
        losses.append(sum(terms) / len(terms))
    return sum(losses) / len(losses)


def test_toy_circle_and_temperature_explorer():
    emb, labels = toy_circle(num_classes=3, per_class=4)
    assert emb.shape == (1, 2, 1, 12) and labels.shape == (1, 1, 12)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(1, 1, 12))
    anchors, present = class_anchors(emb, labels, 3)
    fig = plot_points(emb, labels, anchors, present, NAMES3)
    assert (
        len(fig.axes[0].collections[0].get_offsets()) == 12 and len(fig.axes[0].texts) == 6
    )  # arrows and names
    with pytest.raises(ValueError, match="2-D"):
        plot_points(torch.zeros(1, 3, 1, 2), torch.zeros(1, 1, 2, dtype=torch.long))
    w = TemperatureExplorer([emb], [labels], num_classes=3, class_names=NAMES3)
    assert w.result["tau"] == pytest.approx(0.1)
    assert w.result["loss"] == pytest.approx(_pa_by_hand(emb, labels, 0.1), rel=1e-4)
    eff = w.result["effective_negatives"]
    fig = w.figure
    w.controls["tau"].value = 0.5
    assert w.figure is not fig
    assert w.result["loss"] == pytest.approx(_pa_by_hand(emb, labels, 0.5), rel=1e-4)
    assert w.result["effective_negatives"] > eff  # a warmer softmax spreads over more negatives
    assert w.result["weights"].sum() == pytest.approx(1.0)
    w.controls["cls"].value = 0
    assert w.result["cls"] == 0 and len(w.result["weights"]) == 8


def test_temperature_explorer_on_stages_of_higher_dimension():
    g = torch.Generator().manual_seed(0)
    embs = [nn.functional.normalize(torch.randn(2, 6, s, s, generator=g), dim=1) for s in (8, 4)]
    labels = [torch.randint(0, 3, (2, s, s), generator=g) for s in (8, 4)]
    w = TemperatureExplorer(embs, labels, num_classes=3, class_names=NAMES3)
    assert w.result["stage"] == 2
    w.controls["stage"].value = 1
    anchors, present = class_anchors(embs[0], labels[0], 3)
    assert w.result["loss"] == pytest.approx(
        exact_pa_loss(embs[0], labels[0], anchors, present, 0.1)
    )
    weights = negative_weights(embs[0], labels[0], anchors[w.result["cls"]], w.result["cls"], 0.1)
    torch.testing.assert_close(w.result["weights"], weights)


def test_fusion_explorer_moves_anchors():
    low, labels = toy_circle(spread=0.8, rotation=0.6, seed=1)
    high, _ = toy_circle(spread=0.1, seed=2)
    w = FusionExplorer([low, high], [labels, labels], num_classes=3, class_names=NAMES3)
    (a_low, p_low), (a_high, p_high) = class_anchors(low, labels, 3), class_anchors(high, labels, 3)
    torch.testing.assert_close(w.result["fused"], fuse_anchors(a_low, a_high, p_low, p_high))
    loss = w.result["loss"]
    w.controls["w_h"].value = 0.0
    torch.testing.assert_close(w.result["fused"], a_low)
    assert w.result["w_l"] == 1.0 and w.result["cos_to_low"] == pytest.approx(1.0)
    assert w.result["loss"] != pytest.approx(loss)
    w.controls["w_h"].value = 1.0
    torch.testing.assert_close(w.result["fused"], a_high)
    assert w.result["loss"] == pytest.approx(exact_pa_loss(low, labels, a_high, p_low, 0.1))


def test_fusion_explorer_projects_higher_dimensions():
    g = torch.Generator().manual_seed(0)
    embs = [nn.functional.normalize(torch.randn(2, 6, s, s, generator=g), dim=1) for s in (8, 4, 2)]
    labels = [torch.randint(0, 3, (2, s, s), generator=g) for s in (8, 4, 2)]
    w = FusionExplorer(embs, labels, num_classes=3, class_names=NAMES3)
    w.controls["stage"].value = 2
    assert w.result["stage"] == 2 and w.result["fused"].shape == (3, 6)
    per_stage = [class_anchors(e, y, 3) for e, y in zip(embs, labels, strict=True)]
    fig = plot_anchor_similarity([a for a, _ in per_stage], [p for _, p in per_stage], NAMES3)
    assert len(fig.axes) == 3  # stages 1 and 2 against the last, and a colour bar


def test_errors_in_callbacks_are_raised_and_kept():
    import ipywidgets as widgets

    def draw(x):
        if x == 3:
            raise ValueError("x must not be 3")
        return {"x": x}, None

    def Boom(value):
        return Explorer(draw, {"x": widgets.IntSlider(value=value, continuous_update=False)})

    with pytest.raises(ValueError, match="must not be 3"):
        Boom(3)
    w = Boom(0)
    with pytest.raises(ValueError, match="must not be 3"):
        w.controls["x"].value = 3
    assert isinstance(w.error, ValueError) and w.result == {"x": 0}
    w.controls["x"].value = 4
    assert w.error is None and w.result == {"x": 4}


def test_explorer_errors_are_raised_not_swallowed():
    def draw(x):
        if x == 2:
            raise RuntimeError("boom")
        return {"x": x}, None

    slider = widgets.IntSlider(value=1, min=0, max=3, continuous_update=False)
    w = Explorer(draw, {"x": slider})
    assert w.result == {"x": 1} and w.error is None
    with pytest.raises(RuntimeError, match="boom"):
        slider.value = 2
    assert isinstance(w.error, RuntimeError)
    slider.value = 3
    assert w.error is None and w.result == {"x": 3}
    with pytest.raises(RuntimeError, match="boom"):
        Explorer(draw, {"x": widgets.IntSlider(value=2)})


def test_bane_explorer_count_follows_k(refs):
    scenes = {n: scene_batch(r) for n, r in refs.items()}
    w = BaneExplorer(scenes)
    assert isinstance(w.controls["k_percent"], widgets.IntSlider)
    assert w.controls["k_percent"].value == 50 and w.result["k"] == 0.5
    assert all(getattr(c, "continuous_update", False) is False for c in w.controls.values())
    image, cls = w.result["image"], w.result["cls"]
    pred, labels = stage_maps(scenes["contextrast"], "input")
    n = int(((pred[image] != cls) & (labels[image] == cls)).sum())
    assert n >= 4 and w.result["n_errors"] == n
    pngs = []
    for k in (0.25, 0.5, 1.0):
        w.controls["k_percent"].value = round(100 * k)
        assert w.result["k"] == k
        assert w.result["count"] == math.ceil(k * n) == int(w.result["BANE"].sum())
        assert not (w.result["BANE"] & ~w.result["errors"]).any()
        assert int(w.result["random"].sum()) == w.result["count"]
        pngs.append(w.png)
    assert pngs[0] != pngs[2]  # the figure changes with K
    draws = w.draws
    w.controls["stage"].value = 0
    assert w.result["labels"].shape == (8, 8) and w.draws == draws + 1
    w.controls["model"].value = "ce"
    w.controls["cls"].value = 0
    w.controls["image"].value = 1
    assert (w.result["model"], w.result["cls"], w.result["image"]) == ("ce", 0, 1)
    assert "BANE" in w.result["text"]


def test_distance_histograms_figure():
    pred, labels = square()
    sets = negative_sets(pred, labels, 2)
    from ctx.negatives import selection_stats

    stats = selection_stats(
        sets["BANE"], sets["every error"], distance_transform(sets["every error"])
    )
    fig = plot_distance_histograms({"square": stats})
    assert len(fig.axes) == 1


def test_anchor_explorer_similarity_matches_by_hand(refs):
    sets = {n: r.anchors for n, r in refs.items()}
    w = AnchorExplorer(sets, stage=0)
    assert w.result["snapshot"] == 3 and w.result["step"] == 30
    w.controls["snapshot"].value = 1
    w.controls["stage"].value = 2
    a, p = sets["contextrast"]["anchors"][0, 2], sets["contextrast"]["present"][0, 2]
    torch.testing.assert_close(
        w.result["similarity"]["contextrast"], by_hand_similarity(a, p), equal_nan=True
    )
    last = sets["ce"]["anchors"][0, 3]
    want = torch.tensor(
        [
            float(a @ b) if i != 5 else math.nan
            for i, (a, b) in enumerate(zip(sets["ce"]["anchors"][0, 2], last, strict=True))
        ]
    )
    torch.testing.assert_close(w.result["alignment"]["ce"], want, equal_nan=True)
    rows = anchor_summary(sets, epoch=0)
    assert len(rows) == 8 and rows[3]["alignment with last"] == pytest.approx(1.0)


def test_anchor_views_with_one_snapshot(refs):
    one = {
        n: {
            "step": [8],
            "anchors": r.anchors["anchors"][-1:],
            "present": r.anchors["present"][-1:],
        }
        for n, r in refs.items()
    }
    w = AnchorExplorer(one)
    assert w.controls["snapshot"].max == 1 and w.result["step"] == 8
    w.controls["stage"].value = 3
    assert plot_alignment_curves(one).axes
    assert len(plot_trajectories(one, 1).axes) == 2


def test_similarity_matrices_and_separation_table(refs):
    sets = {n: r.anchors for n, r in refs.items()}
    fig = plot_similarity_matrices(sets, [0, 2], stage=1)
    assert len(fig.axes) == 5  # 2 x 2 matrices and a colour bar
    rows = separation_table(refs)
    assert [r["stage"] for r in rows] == [1, 2, 3, 4] and 0 <= rows[0]["ce"] <= 100


def test_atlas_explorer_uses_the_cache(refs):
    calls = []

    def fake_project(x, method, seed, iterations):
        calls.append((len(x), method))
        return np.random.default_rng(seed).normal(size=(len(x), 2)).astype(np.float32)

    atlas = Atlas(refs, max_points=40, project=fake_project)
    w = AtlasExplorer(atlas, stage=1)
    assert atlas.misses == 2 and set(atlas.cache) == {
        ("ce", 1, "t-SNE"),
        ("contextrast", 1, "t-SNE"),
    }
    pts = atlas.points("ce", 1)
    assert len(pts["x"]) == 40 and pts["x"].shape[1] == 4
    np.testing.assert_array_equal(pts["labels"], atlas.points("contextrast", 1)["labels"])
    assert (w.controls["cls"].label, w.result["cls"]) == ("all", None)  # not a blank label
    for name, value in (("cls", 0), ("highlight", "both"), ("model", "ce"), ("cls", ALL_CLASSES)):
        w.controls[name].value = value
    assert atlas.misses == 2 and len(calls) == 2  # redrawn from the cache
    w.controls["model"].value = "both"
    assert w.result["cls"] is None  # "all" again
    w.controls["stage"].value = 2
    assert atlas.misses == 4
    w.controls["stage"].value = 1
    assert atlas.misses == 4 and w.result["misses"] == 4
    w.controls["method"].value = "UMAP"
    assert atlas.misses == 6 and calls[-1][1] == "UMAP"
    assert set(w.result["coords"]) == {"ce", "contextrast"}
    with pytest.raises(ValueError, match="method"):
        atlas.projection("ce", 1, "PCA")


def test_atlas_with_tsne_and_feature_space(refs):
    atlas = Atlas(refs, max_points=48, iterations=250, space="features")
    assert atlas.points("ce", 1)["x"].shape == (48, 4)  # encoder width of stage 2
    fig = plot_atlas(atlas, 1, "t-SNE", models=["ce"], cls=3, highlight="BANE")
    assert len(fig.axes) == 1 and atlas.misses == 1
    with pytest.raises(ValueError, match="space"):
        Atlas(refs, space="logits")


def _entry(step, loss, miou):
    return {"step": step, "train": {"loss": loss}, "val": {"miou": miou, "boundary_miou": miou / 2}}


def test_live_curves_with_fake_history():
    curves = LiveCurves(title="t", show=False)
    ce, cx = curves.callback("ce"), curves.callback("contextrast")
    ce(None, _entry(10, 2.0, 10.0))
    ce(None, _entry(20, 1.0, 30.0))
    cx(None, _entry(10, 2.5, 12.0))
    assert curves.draws == 3 and list(curves.histories) == ["ce", "contextrast"]
    ax_loss, ax_val = curves.figure.axes
    assert list(ax_loss.lines[0].get_ydata()) == [2.0, 1.0]
    assert list(ax_val.lines[0].get_ydata()) == [10.0, 30.0]  # ce mIoU
    assert list(ax_val.lines[1].get_ydata()) == [5.0, 15.0]  # ce boundary mIoU
    assert list(ax_val.lines[2].get_xdata()) == [10]
    curves.replay("old", [_entry(5, 3.0, 1.0), _entry(6, 2.9, 2.0)])
    assert curves.draws == 4 and len(curves.histories["old"]) == 2


def test_train_live_trains_then_loads(tiny_train_config):
    curves = LiveCurves(show=False)
    first = train_live(tiny_train_config, curves, "ce")
    assert curves.draws >= 1 and curves.histories["ce"][-1]["step"] == 6
    again = LiveCurves(show=False)
    second = train_live(tiny_train_config, again, "ce")  # finished: loaded, history replayed
    assert again.draws == 1 and again.histories["ce"] == first.history
    assert not second.model.training


def test_show_ablation(tmp_path):
    assert show_ablation(tmp_path) is None
    (tmp_path / "ablation.md").write_text("| variant |\n|---|\n| `ce` |\n")
    assert "`ce`" in show_ablation(tmp_path)
