"""ctx.projection: sampling, separation and 2-D projections of pixel embeddings."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ctx.projection import (  # noqa: E402
    nearest_anchor_accuracy,
    project_points,
    stratified_sample,
    umap_known_warnings,
)


def test_stratified_sample_keeps_small_classes():
    labels = np.array([0] * 100 + [1] * 3 + [2] * 40 + [255] * 5)
    idx = stratified_sample(labels, 30, seed=0)
    assert len(idx) == 30 and np.all(np.diff(idx) > 0)
    counts = np.bincount(labels[idx], minlength=3)
    assert counts.tolist() == [14, 3, 13] or counts.tolist() == [13, 3, 14]
    assert np.array_equal(idx, stratified_sample(labels, 30, seed=0))
    assert len(stratified_sample(labels, 1000)) == 143


def test_nearest_anchor_accuracy():
    labels = torch.tensor([[[0, 1], [2, 1]]])
    emb = F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    assert nearest_anchor_accuracy(emb, labels, 3) == 100.0
    emb[0, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0])  # a class-1 pixel that looks like class 0
    assert nearest_anchor_accuracy(emb, labels, 3) == 75.0


def test_project_points_tsne_is_seeded():
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    a = project_points(x, "t-SNE", seed=0, iterations=250)
    assert a.shape == (50, 2) and a.dtype == np.float32
    np.testing.assert_allclose(a, project_points(x, "t-SNE", seed=0, iterations=250))
    with pytest.raises(ValueError, match="method"):
        project_points(x, "PCA")


def test_umap_known_warnings_silences_only_umaps_two_notes():
    """The filter drops umap's two known notes, and lets the same text from elsewhere, and any
    other umap warning, through."""
    import warnings

    notes = [
        ("Tensorflow not installed; ParametricUMAP will be unavailable", ImportWarning, "umap"),
        ("n_jobs value 1 overridden to 1 by setting random_state.", UserWarning, "umap.umap_"),
        ("n_jobs value 1 overridden to 1 by setting random_state.", UserWarning, "mylib"),
        ("something else went wrong", UserWarning, "umap.umap_"),
        ("disconnected vertices", RuntimeWarning, "umap.umap_"),
    ]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with umap_known_warnings():
            for message, category, module in notes:
                warnings.warn_explicit(message, category, f"{module}.py", 1, module=module)
    assert [(str(w.message), w.category) for w in seen] == [(m, c) for m, c, _ in notes[2:]]


def test_separation_table_on_features_and_on_heads():
    from lesson_fakes import fake_ref

    from ctx.projection import probe_features, separation_table

    refs = {"ce": fake_ref(0), "contextrast": fake_ref(1)}
    feats = probe_features(refs["ce"])
    assert [f.shape[1] for f in feats] == [4, 4, 8, 8]  # the encoder's widths, not D
    rows = separation_table(refs)
    want = nearest_anchor_accuracy(feats[2], refs["ce"].probe["stages"][2]["labels"])
    assert rows[2]["ce"] == pytest.approx(want)
    heads = separation_table(refs, "embeddings")
    st = refs["contextrast"].probe["stages"][1]
    assert heads[1]["contextrast"] == pytest.approx(
        nearest_anchor_accuracy(st["embeddings"], st["labels"])
    )
    with pytest.raises(ValueError, match="space"):
        separation_table(refs, "logits")
