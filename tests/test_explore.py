"""ctx.explore: analysis functions on hand-made inputs, and the three widget builders driven
headlessly (set a control's value, check the effect) on tiny fake reference runs."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from scipy import ndimage  # noqa: E402

from ctx import explore  # noqa: E402
from ctx.data import NUM_CLASSES, DigitScenes, SceneConfig  # noqa: E402
from ctx.labels import resize_labels  # noqa: E402
from ctx.model import ModelConfig, build_model  # noqa: E402
from ctx.negatives import boundary_negatives, distance_transform  # noqa: E402

# ----------------------------------------------------------------------------- fakes


def fake_ref(seed: int, scenes: int = 4, size: int = 16, epochs: int = 3) -> dict:
    """A load_reference-shaped dict: a tiny untrained model, its probe batch on real digit
    scenes, and `epochs` random anchor snapshots (class 5 absent from the first)."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(widths=(4, 4, 8, 8), embed_dim=4), NUM_CLASSES).eval()
    ds = DigitScenes("val", scenes, SceneConfig(image_size=size), 0)
    with torch.no_grad():
        logits, embs = model(ds.images.float() / 255.0, return_embeddings=True)
    pred = logits.argmax(1)
    g = torch.Generator().manual_seed(0)
    stages = []
    for e in embs:
        y, p = resize_labels(ds.labels, e.shape[-2:]), resize_labels(pred, e.shape[-2:])
        bane = boundary_negatives(p, y, NUM_CLASSES, 0.5, generator=g)
        stages.append({"embeddings": e.contiguous(), "labels": y, "pred": p, "bane": bane})
    anchors = F.normalize(torch.randn(epochs, 4, NUM_CLASSES, 4), dim=-1)
    present = torch.ones(epochs, 4, NUM_CLASSES, dtype=torch.bool)
    present[0, :, 5] = False
    anchors[0, :, 5] = 0
    return {
        "model": model,
        "config": {"image_size": size, "data_seed": 0, "dataset": "digits", "k": 0.5},
        "history": [],
        "anchors": {
            "step": list(range(10, 10 * epochs + 1, 10)),
            "anchors": anchors,
            "present": present,
        },
        "probe": {
            "images": ds.images,
            "labels": ds.labels,
            "pred": pred,
            "k": 0.5,
            "stages": stages,
        },
    }


@pytest.fixture(scope="module")
def refs() -> dict:
    return {"ce": fake_ref(0), "contextrast": fake_ref(1)}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def square(size: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """One image: a 4x4 square of class 1 (rows/cols 1-4) on background, all predicted 0."""
    labels = torch.zeros(1, size, size, dtype=torch.long)
    labels[0, 1:5, 1:5] = 1
    return torch.zeros_like(labels), labels


# ----------------------------------------------------------------------------- BANE (03)


def test_random_like_matches_counts_and_stays_in_class():
    labels = torch.randint(0, 3, (2, 8, 8))
    selected = torch.zeros(2, 3, 8, 8, dtype=torch.bool)
    selected[0, 1] = labels[0] == 1
    selected[1, 2, :2] = labels[1, :2] == 2
    g = torch.Generator().manual_seed(0)
    out = explore.random_like(selected, labels, 3, generator=g)
    assert torch.equal(out.sum((2, 3)), selected.sum((2, 3)))
    own = labels[:, None] == torch.arange(3).view(1, 3, 1, 1)
    assert not (out & ~own).any()
    again = explore.random_like(selected, labels, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="must be"):
        explore.random_like(selected[:, :2], labels, 3)


def test_negative_sets_on_a_square():
    pred, labels = square()
    sets = explore.negative_sets(pred, labels, 2, k=0.5)
    assert set(sets) == {"BANE", "every error", "random"}
    assert int(sets["every error"].sum()) == 16 and int(sets["every error"][0, 0].sum()) == 0
    bane = sets["BANE"][0, 1]
    assert int(bane.sum()) == 8
    assert not bane[2:4, 2:4].any()  # the inner 2x2 (D = 2) is never among the nearest half
    assert int(sets["random"].sum()) == 8 and not (sets["random"][0, 1] & (labels[0] != 1)).any()
    rows = {r["set"]: r for r in explore.compare_negative_sets(sets, pred, labels, 2)}
    assert rows["BANE"]["D px"] == pytest.approx(1.0)
    assert rows["every error"]["D px"] == pytest.approx((12 * 1 + 4 * 2) / 16)
    assert rows["every error"]["edge px"] == pytest.approx(1.25)
    assert rows["BANE"]["wrong %"] == 100.0 and rows["BANE"]["pixels"] == 8
    empty = explore.compare_negative_sets(
        {"none": torch.zeros(1, 2, 6, 6, dtype=torch.bool)}, pred, labels, 2
    )
    assert empty[0]["pixels"] == 0 and math.isnan(empty[0]["D px"])


def test_edge_distance_matches_scipy():
    labels = torch.randint(0, 3, (2, 9, 7))
    got = explore.edge_distance(labels, 3)
    want = np.zeros(labels.shape)
    for b in range(2):
        for c in range(3):
            m = (labels[b] == c).numpy()
            if m.any():
                want[b] += np.where(m, ndimage.distance_transform_edt(m), 0)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    labels[0, 2, 3] = 255
    assert explore.edge_distance(labels, 3)[0, 2, 3] == 0


def test_format_table_and_worst_maps():
    text = explore.format_table(
        [{"set": "a", "n": 3, "x": 1.234}, {"set": "bb", "n": 10, "x": math.nan}]
    )
    lines = text.splitlines()
    assert lines[0].split() == ["set", "n", "x"] and lines[1].split() == ["a", "3", "1.2"]
    assert lines[2].split() == ["bb", "10", "nan"]
    pred, labels = square()
    pred, labels = torch.cat([pred, labels]), torch.cat([labels, labels])  # image 1 is perfect
    assert explore.worst_maps(pred, labels, 2) == [(0, 1, 16)]
    assert explore.worst_maps(labels, labels, 2) == []


def test_scene_batch_probe_and_model(refs):
    ref = refs["ce"]
    small = explore.scene_batch(ref, 2)
    assert torch.equal(small["pred"], ref["probe"]["pred"][:2])
    assert [c for _, c in explore.stage_choices(small)] == ["input", 0, 1, 2, 3]
    assert explore.stage_maps(small, 1)[1].shape == (2, 4, 4)
    with pytest.raises(ValueError, match="stage"):
        explore.stage_maps(small, 7)
    more = explore.scene_batch(ref, 6)  # beyond the probe: the model predicts new scenes
    assert more["images"].shape == (6, 3, 16, 16) and len(more["stages"]) == 4
    assert torch.equal(more["pred"][:4], ref["probe"]["pred"])
    assert torch.equal(more["stages"][2]["labels"][:4], ref["probe"]["stages"][2]["labels"])


def test_bane_explorer_count_follows_k(refs):
    scenes = {n: explore.scene_batch(r) for n, r in refs.items()}
    w = explore.bane_explorer(scenes)
    assert isinstance(w.controls["k"], explore.widgets.FloatSlider)
    assert all(getattr(c, "continuous_update", False) is False for c in w.controls.values())
    image, cls = w.result["image"], w.result["cls"]
    pred, labels = explore.stage_maps(scenes["contextrast"], "input")
    n = int(((pred[image] != cls) & (labels[image] == cls)).sum())
    assert n >= 4 and w.result["n_errors"] == n
    pngs = []
    for k in (0.25, 0.5, 1.0):
        w.controls["k"].value = k
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


def test_explorer_errors_are_raised_not_swallowed():
    def draw(x):
        if x == 2:
            raise RuntimeError("boom")
        return {"x": x}, None

    slider = explore.widgets.IntSlider(value=1, min=0, max=3, continuous_update=False)
    w = explore.Explorer(draw, {"x": slider})
    assert w.result == {"x": 1} and w.error is None
    with pytest.raises(RuntimeError, match="boom"):
        slider.value = 2
    assert isinstance(w.error, RuntimeError)
    slider.value = 3
    assert w.error is None and w.result == {"x": 3}
    with pytest.raises(RuntimeError, match="boom"):
        explore.Explorer(draw, {"x": explore.widgets.IntSlider(value=2)})


# ----------------------------------------------------------------------------- anchors (05)


def by_hand_similarity(a: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    c = a.shape[0]
    out = torch.full((c, c), math.nan)
    for i in range(c):
        for j in range(c):
            if present[i] and present[j]:
                out[i, j] = float(a[i] @ a[j]) / float(a[i].norm() * a[j].norm())
    return out


def test_anchor_similarity_and_alignment_by_hand():
    a = torch.tensor([[[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], [[0.0, 1.0], [0.0, 3.0], [1.0, 0.0]]]])
    present = torch.tensor([[[True, True, False], [True, True, True]]])
    sim = explore.anchor_similarity(a[0, 0], present[0, 0])
    torch.testing.assert_close(sim, by_hand_similarity(a[0, 0], present[0, 0]), equal_nan=True)
    align = explore.stage_alignment(a, present)
    torch.testing.assert_close(align[0, 0, :2], torch.tensor([0.0, 1.0]))
    assert math.isnan(align[0, 0, 2]) and torch.allclose(align[0, 1], torch.ones(3))
    with pytest.raises(ValueError):
        explore.stage_alignment(a[0], present[0])


def test_anchor_pca_on_a_plane():
    e, s, c = 4, 2, 3
    anchors = torch.zeros(e, s, c, 5)
    anchors[..., 0] = torch.linspace(1, 2, e).view(e, 1, 1)
    anchors[..., 1] = torch.arange(c).float().view(1, 1, c)
    present = torch.ones(e, s, c, dtype=torch.bool)
    present[0, 1, 2] = False
    coords, ratio = explore.anchor_pca(anchors, present, [0, 1])
    assert coords.shape == (e, 2, c, 2)
    assert np.isnan(coords[0, 1, 2]).all() and np.isfinite(coords[1:]).all()
    assert ratio.sum() == pytest.approx(1.0)
    again, _ = explore.anchor_pca(anchors, present, [0, 1])
    np.testing.assert_array_equal(coords, again)
    one, _ = explore.anchor_pca(anchors[:1, :1, :1], present[:1, :1, :1], [0])
    assert (one == 0).all()


def test_anchor_explorer_similarity_matches_by_hand(refs):
    sets = {n: r["anchors"] for n, r in refs.items()}
    w = explore.anchor_explorer(sets, stage=0)
    assert w.result["epoch"] == 3 and w.result["step"] == 30
    w.controls["epoch"].value = 1
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
    rows = explore.anchor_summary(sets, epoch=0)
    assert len(rows) == 8 and rows[3]["alignment with last"] == pytest.approx(1.0)


def test_anchor_views_with_one_snapshot(refs):
    one = {
        n: {
            "step": [8],
            "anchors": r["anchors"]["anchors"][-1:],
            "present": r["anchors"]["present"][-1:],
        }
        for n, r in refs.items()
    }
    w = explore.anchor_explorer(one)
    assert w.controls["epoch"].max == 1 and w.result["step"] == 8
    w.controls["stage"].value = 3
    assert explore.plot_alignment_curves(one).axes
    assert len(explore.plot_trajectories(one, 1).axes) == 2


# ----------------------------------------------------------------------------- atlas (06)


def test_stratified_sample_keeps_small_classes():
    labels = np.array([0] * 100 + [1] * 3 + [2] * 40 + [255] * 5)
    idx = explore.stratified_sample(labels, 30, seed=0)
    assert len(idx) == 30 and np.all(np.diff(idx) > 0)
    counts = np.bincount(labels[idx], minlength=3)
    assert counts.tolist() == [14, 3, 13] or counts.tolist() == [13, 3, 14]
    assert np.array_equal(idx, explore.stratified_sample(labels, 30, seed=0))
    assert len(explore.stratified_sample(labels, 1000)) == 143


def test_nearest_anchor_accuracy():
    labels = torch.tensor([[[0, 1], [2, 1]]])
    emb = F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    assert explore.nearest_anchor_accuracy(emb, labels, 3) == 100.0
    emb[0, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0])  # a class-1 pixel that looks like class 0
    assert explore.nearest_anchor_accuracy(emb, labels, 3) == 75.0


def test_project_points_tsne_is_seeded():
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    a = explore.project_points(x, "t-SNE", seed=0, iterations=250)
    assert a.shape == (50, 2) and a.dtype == np.float32
    np.testing.assert_allclose(a, explore.project_points(x, "t-SNE", seed=0, iterations=250))
    with pytest.raises(ValueError, match="method"):
        explore.project_points(x, "PCA")


def test_atlas_explorer_uses_the_cache(refs):
    calls = []

    def fake_project(x, method, seed, iterations):
        calls.append((len(x), method))
        return np.random.default_rng(seed).normal(size=(len(x), 2)).astype(np.float32)

    atlas = explore.Atlas(refs, max_points=40, project=fake_project)
    w = explore.atlas_explorer(atlas, stage=1)
    assert atlas.misses == 2 and set(atlas.cache) == {
        ("ce", 1, "t-SNE"),
        ("contextrast", 1, "t-SNE"),
    }
    pts = atlas.points("ce", 1)
    assert len(pts["x"]) == 40 and pts["x"].shape[1] == 4
    np.testing.assert_array_equal(pts["labels"], atlas.points("contextrast", 1)["labels"])
    for name, value in (("cls", 0), ("highlight", "both"), ("model", "ce"), ("cls", None)):
        w.controls[name].value = value
    assert atlas.misses == 2 and len(calls) == 2  # redrawn from the cache
    w.controls["model"].value = "both"
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
    atlas = explore.Atlas(refs, max_points=48, iterations=250, space="features")
    assert atlas.points("ce", 1)["x"].shape == (48, 4)  # encoder width of stage 2
    fig = explore.plot_atlas(atlas, 1, "t-SNE", models=["ce"], cls=3, highlight="BANE")
    assert len(fig.axes) == 1 and atlas.misses == 1
    with pytest.raises(ValueError, match="space"):
        explore.Atlas(refs, space="logits")


def test_distance_histograms_figure():
    pred, labels = square()
    sets = explore.negative_sets(pred, labels, 2)
    from ctx.negatives import selection_stats

    stats = selection_stats(
        sets["BANE"], sets["every error"], distance_transform(sets["every error"])
    )
    fig = explore.plot_distance_histograms({"square": stats})
    assert len(fig.axes) == 1


def test_bane_by_stage_and_worst_digit_map(refs):
    scenes = {n: explore.scene_batch(r, 2) for n, r in refs.items()}
    rows, stats = explore.bane_by_stage(scenes, k=0.5)
    assert len(rows) == 2 * 5 and set(stats) == {
        (n, s) for n in scenes for s in ["input", 0, 1, 2, 3]
    }
    pred, labels = explore.stage_maps(scenes["ce"], "input")
    errors = int((pred != labels).sum())
    assert rows[0]["errors"] == errors and rows[0]["picked"] >= errors / 2
    digits = explore.worst_maps(pred, labels, top=3, classes=range(1, NUM_CLASSES))
    assert digits and all(c != 0 for _, c, _ in digits)


def test_similarity_matrices_and_separation_table(refs):
    sets = {n: r["anchors"] for n, r in refs.items()}
    fig = explore.plot_similarity_matrices(sets, [0, 2], stage=1)
    assert len(fig.axes) == 5  # 2 x 2 matrices and a colour bar
    rows = explore.separation_table(refs)
    assert [r["stage"] for r in rows] == [1, 2, 3, 4] and 0 <= rows[0]["ce"] <= 100
