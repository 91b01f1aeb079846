"""ctx.projection: sampling, separation and 2-D projections of pixel embeddings."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ctx.projection import nearest_anchor_accuracy, project_points, stratified_sample  # noqa: E402


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
