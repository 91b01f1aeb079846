"""Notebook helpers: every explorer is built headlessly, a control's value is set, and the
callback's effect is checked (its recomputed numbers and a new figure)."""

import math

import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from ctx.anchors import class_anchors, fuse_anchors  # noqa: E402
from ctx.model import ModelConfig, build_model  # noqa: E402
from ctx.widgets import (  # noqa: E402
    RF,
    ConfusionExplorer,
    Explorer,
    FusionExplorer,
    LiveCurves,
    ReceptiveFieldExplorer,
    SceneBrowser,
    TemperatureExplorer,
    band_shares,
    exact_pa_loss,
    extent,
    input_gradient,
    negative_weights,
    per_scene_scores,
    plot_anchor_similarity,
    plot_confusion,
    plot_points,
    predict,
    receptive_field,
    show_ablation,
    stage_receptive_fields,
    top_confusions,
    toy_circle,
    train_live,
)

NAMES3 = ("a", "b", "c")


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(widths=(4, 4, 8, 8), embed_dim=4), 11).eval()


@pytest.fixture(scope="module")
def scenes():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.zeros(3, 32, 32, dtype=torch.long)
    labels[:, 8:20, 8:20] = 3
    labels[1, 20:28, 4:12] = 5
    return images, labels


def _conv(k, stride=1, dilation=1):
    conv = nn.Conv2d(1, 1, k, stride=stride, padding=dilation * (k // 2), dilation=dilation)
    nn.init.ones_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def test_receptive_field_of_a_tiny_stack_by_hand():
    # 3x3 (s1): 1 + 2 = 3; 3x3 (s2): 3 + 2 = 5, jump 2; 3x3 (s1): 5 + 2*2 = 9.
    net = nn.Sequential(_conv(3), nn.ReLU(), _conv(3, stride=2), nn.BatchNorm2d(1), _conv(3))
    assert receptive_field(net) == RF(9, 2, 0.0)
    # a dilated 3x3 spans 5 px; after a stride-2 layer every step counts twice
    assert receptive_field([_conv(3, stride=2), _conv(3, dilation=2)]).size == 3 + 2 * 2 * 2
    # empirically: the gradient of one output cell reaches exactly 9x9 input pixels
    lin = nn.Sequential(_conv(3), _conv(3, stride=2), _conv(3))
    grad = input_gradient(lambda x: [lin(x)], torch.rand(1, 32, 32), 0, (8, 8))
    assert extent(grad) == (16 - 4, 16 - 4, 9, 9)


def test_stage_receptive_fields_of_the_plain_encoder(tiny_model):
    rfs = stage_receptive_fields(tiny_model.encoder)
    assert [r.size for r in rfs] == [7, 19, 43, 91]
    assert [r.jump for r in rfs] == [2, 4, 8, 16]
    grad = input_gradient(tiny_model.stage_features, torch.rand(3, 64, 64), 1, (8, 8))
    assert extent(grad)[2:] == (19, 19)
    assert extent(torch.zeros(4, 4)) is None


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
    assert len(fig.axes) == 4  # three panels and a colour bar


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
