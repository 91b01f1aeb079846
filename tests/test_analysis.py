"""ctx.analysis: each function on tiny hand-made inputs, against values worked out by hand."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from lesson_fakes import by_hand_similarity, untrained_model  # noqa: E402
from torch import nn  # noqa: E402

from ctx.analysis import (  # noqa: E402
    RF,
    anchor_pca,
    anchor_similarity,
    as_float_images,
    band_shares,
    centre_share,
    confusion,
    extent,
    input_gradient,
    nearest_cell,
    negative_weights,
    pca_basis,
    per_scene_scores,
    predict,
    receptive_field,
    row_shares,
    scene_scores,
    stage_alignment,
    stage_anchors,
    stage_receptive_fields,
    toy_circle,
)
from ctx.model import SegOutput  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model():
    return untrained_model()


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


def test_anchor_similarity_and_alignment_by_hand():
    a = torch.tensor([[[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], [[0.0, 1.0], [0.0, 3.0], [1.0, 0.0]]]])
    present = torch.tensor([[[True, True, False], [True, True, True]]])
    sim = anchor_similarity(a[0, 0], present[0, 0])
    torch.testing.assert_close(sim, by_hand_similarity(a[0, 0], present[0, 0]), equal_nan=True)
    align = stage_alignment(a, present)
    torch.testing.assert_close(align[0, 0, :2], torch.tensor([0.0, 1.0]))
    assert math.isnan(align[0, 0, 2]) and torch.allclose(align[0, 1], torch.ones(3))
    with pytest.raises(ValueError):
        stage_alignment(a[0], present[0])


def test_anchor_pca_on_a_plane():
    e, s, c = 4, 2, 3
    anchors = torch.zeros(e, s, c, 5)
    anchors[..., 0] = torch.linspace(1, 2, e).view(e, 1, 1)
    anchors[..., 1] = torch.arange(c).float().view(1, 1, c)
    present = torch.ones(e, s, c, dtype=torch.bool)
    present[0, 1, 2] = False
    coords, ratio = anchor_pca(anchors, present, [0, 1])
    assert coords.shape == (e, 2, c, 2)
    assert np.isnan(coords[0, 1, 2]).all() and np.isfinite(coords[1:]).all()
    assert ratio.sum() == pytest.approx(1.0)
    again, _ = anchor_pca(anchors, present, [0, 1])
    np.testing.assert_array_equal(coords, again)
    one, _ = anchor_pca(anchors[:1, :1, :1], present[:1, :1, :1], [0])
    assert (one == 0).all()


def test_nearest_cell_and_centre_share_by_hand():
    rf = RF(size=8, jump=4, start=1.5)  # cell i is centred on input pixel 1.5 + 4 i
    assert nearest_cell(rf, (1, 14), (4, 4)) == (0, 3)  # (1-1.5)/4 -> 0, (14-1.5)/4 = 3.1 -> 3
    assert nearest_cell(rf, (30, -5), (4, 4)) == (3, 0)  # clipped to the map
    # cell (1, 1) is centred on (5.5, 5.5); the central half is the 4x4 square rows/cols 4-7
    grad = torch.zeros(16, 16)
    grad[4:8, 4:8] = 1.0  # 16 inside
    grad[0, 0] = 16.0  # as much outside
    assert centre_share(grad, rf, (1, 1)) == pytest.approx(0.5)
    assert math.isnan(centre_share(torch.zeros(16, 16), rf, (1, 1)))


def test_confusion_row_shares_and_band_shares_by_hand():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, :, 2:] = 1  # a vertical edge between columns 1 and 2
    pred = labels.clone()
    pred[0, 0, 0] = 1  # one wrong pixel, 2 px from the edge
    cm = confusion(pred, labels, 2, boundary_width=1)
    torch.testing.assert_close(row_shares(cm), torch.tensor([[7 / 8, 1 / 8], [0.0, 1.0]]).double())
    torch.testing.assert_close(
        row_shares(torch.tensor([[0, 0], [1, 3]])), torch.tensor([[0, 0], [0.25, 0.75]]).double()
    )
    pixels, errors = band_shares(cm)  # the band: columns 1 and 2, half of the pixels; no error
    assert pixels == pytest.approx(0.5) and errors == 0.0


def test_pa_helpers_by_hand():
    # two classes on the unit circle: class 0 at angle 0 and pi/2, class 1 at pi
    z = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    emb, labels = z[None, :, None, :], torch.tensor([[[0, 0, 1]]])
    anchor = torch.tensor([1.0, 0.0])
    torch.testing.assert_close(negative_weights(emb, labels, anchor, 0, 0.5), torch.tensor([1.0]))
    w = negative_weights(emb, labels, torch.tensor([-1.0, 0.0]), 1, 1.0)
    e = torch.tensor([-1.0, 0.0]).exp()
    torch.testing.assert_close(w, e / e.sum())  # a·z_q/τ = -1 and 0 for the two negatives
    (a0, p0), (a1, p1) = stage_anchors([emb, emb], [labels, labels], 2)
    torch.testing.assert_close(a0[0], torch.tensor([1.0, 1.0]) / math.sqrt(2))
    assert torch.equal(a0, a1) and p0.all()
    mean, basis = pca_basis(torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    torch.testing.assert_close(mean, torch.tensor([1.0, 1 / 3, 0.0]))
    assert basis.shape == (3, 2) and torch.allclose(basis[2], torch.zeros(2))


def test_predict_scores_and_toy_circle():
    class Oracle(nn.Module):  # logits: class 1 where the first channel is bright
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return SegOutput(torch.cat([0.5 - x[:, :1], x[:, :1] - 0.5], 1), [])

    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    images[:, 0, :2] = 255
    pred = predict(Oracle(), images, batch_size=1)
    labels = (images[:, 0] > 0).long()
    assert torch.equal(pred, labels) and torch.equal(
        as_float_images(images)[0, 0, 0], torch.ones(4)
    )
    labels[1, 3, 3] = 1  # one wrong pixel of 16 in scene 1
    assert scene_scores(pred[0], labels[0], 2)["pixel_acc"] == 100.0
    torch.testing.assert_close(
        per_scene_scores(pred, labels, 2, "pixel_acc"), torch.tensor([100.0, 1500 / 16])
    )
    emb, y = toy_circle(num_classes=4, per_class=1, spread=0.0)
    torch.testing.assert_close(
        emb[0, :, 0].T, torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1]]), atol=1e-6, rtol=0
    )
    assert y.tolist() == [[[0, 1, 2, 3]]]


def test_anchor_similarity_against_other_anchors():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    sim = anchor_similarity(a, torch.tensor([True, True]), b, torch.tensor([True, False]))
    assert sim[0, 0] == pytest.approx(1.0) and sim[1, 0] == pytest.approx(0.0)
    assert sim[:, 1].isnan().all()
    torch.testing.assert_close(anchor_similarity(a, None, b)[1, 1], torch.tensor(2**-0.5))
