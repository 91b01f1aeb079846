"""The embedding atlas's analysis (taught in notebook 06): how cleanly a run's pixel embeddings
separate the classes (`nearest_anchor_accuracy`, `separation_table`), and their 2-D projections by
t-SNE or UMAP (`stratified_sample`, `project_points`, and `Atlas`, which computes each projection
once). The figure and the explorer are in `ctx.lessons.atlas`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ctx.anchors import class_anchors
from ctx.data import NUM_CLASSES
from ctx.labels import IGNORE_INDEX

if TYPE_CHECKING:
    from ctx.reference import ReferenceRun


@torch.no_grad()
def nearest_anchor_accuracy(
    emb: torch.Tensor, labels: torch.Tensor, num_classes: int = NUM_CLASSES
) -> float:
    """Percent of labelled pixels whose embedding (emb [B,D,H,W], labels [B,H,W]) is closer in
    cosine to its own class anchor (`class_anchors` of the same batch) than to any other
    present class's: how cleanly the classes separate, with no projection involved."""
    anchors, present = class_anchors(emb.float(), labels, num_classes, distributed=False)
    z = F.normalize(emb.float(), dim=1)
    cos = torch.einsum("bdhw,cd->bchw", z, anchors)
    cos[:, ~present] = -math.inf
    valid = labels != IGNORE_INDEX
    return 100.0 * float((cos.argmax(1) == labels)[valid].float().mean())


SPACES = ("embeddings", "features")


@torch.no_grad()
def probe_features(ref: ReferenceRun) -> list[torch.Tensor]:
    """The encoder's own stage features [N,C_i,h,w] (float32, CPU) of a reference run's probe
    images: what both runs train, unlike the projection heads (CE never trains them)."""
    net = ref.model
    device = next(net.parameters()).device
    was = net.training
    x = ref.probe["images"].to(device).float() / 255.0
    feats = [f.float().cpu() for f in net.eval().stage_features(x)]
    net.train(was)
    return feats


def separation_table(
    refs: dict[str, ReferenceRun], space: str = "features", num_classes: int = NUM_CLASSES
) -> list[dict]:
    """`nearest_anchor_accuracy` of each reference run's probe pixels at every stage, one row
    per stage with one column per run (refs: name -> load_reference(...)). space: "features"
    (the encoder's stage features, `probe_features`: the fair comparison between runs) or
    "embeddings" (the projection heads' output, which only a contrastive run trains)."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    names = list(refs)
    stages = {n: refs[n].probe["stages"] for n in names}
    tensors = {
        n: probe_features(refs[n])
        if space == "features"
        else [st["embeddings"] for st in stages[n]]
        for n in names
    }
    rows = []
    for s in range(len(stages[names[0]])):
        row: dict = {"stage": s + 1}
        for n in names:
            row[n] = nearest_anchor_accuracy(tensors[n][s], stages[n][s]["labels"], num_classes)
        rows.append(row)
    return rows


METHODS = ("t-SNE", "UMAP")


def stratified_sample(
    labels: torch.Tensor | np.ndarray,
    max_points: int,
    seed: int = 0,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """Indices (sorted) of at most `max_points` entries of flat `labels`, split as evenly as the
    classes allow: classes smaller than their share keep every point, the rest share what is
    left equally; drawn with numpy's generator seeded by `seed`. Ignore entries are never drawn."""
    lab = np.asarray(labels).reshape(-1)
    classes, counts = np.unique(lab[lab != ignore_index], return_counts=True)
    rng = np.random.default_rng(seed)
    left, out = max_points, []
    for j, i in enumerate(np.argsort(counts, kind="stable")):
        take = min(int(counts[i]), left // (len(classes) - j))
        idx = np.flatnonzero(lab == classes[i])
        out.append(idx if take == len(idx) else rng.choice(idx, take, replace=False))
        left -= take
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


def project_points(x: np.ndarray, method: str, seed: int = 0, iterations: int | None = None):
    """2-D projection of points x [n,D]: "t-SNE" (sklearn, PCA init, perplexity min(30, (n-1)/3),
    `iterations` optimisation steps, default 1000, at least 250) or "UMAP" (umap-learn, 15
    neighbours, `iterations` epochs, default umap's). Fixed `seed`. Returns float32 [n,2]."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) < 4:
        raise ValueError(f"need at least 4 points to project, got {len(x)}")
    if method == "t-SNE":
        from sklearn.manifold import TSNE

        tsne = TSNE(
            2,
            perplexity=min(30.0, (len(x) - 1) / 3),
            init="pca",
            random_state=seed,
            max_iter=max(250, iterations or 1000),
        )
        return tsne.fit_transform(x).astype(np.float32)
    if method == "UMAP":
        _quiet_numba_threads()
        with umap_known_warnings():
            import umap

            reducer = umap.UMAP(
                n_neighbors=min(15, len(x) - 1), random_state=seed, n_epochs=iterations
            )
            return reducer.fit_transform(x).astype(np.float32)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


@contextlib.contextmanager
def umap_known_warnings() -> Iterator[None]:
    """Silence the two harmless warnings UMAP gives on every call here, and nothing else: umap's
    import note that ParametricUMAP needs TensorFlow, and "n_jobs ... overridden ... by setting
    random_state" (a fixed seed makes UMAP single-threaded, which we want)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Tensorflow not installed", ImportWarning, "umap")
        warnings.filterwarnings("ignore", "n_jobs value .* overridden", UserWarning, "umap")
        yield


def _quiet_numba_threads() -> None:
    """Use numba's "workqueue" threading layer unless NUMBA_THREADING_LAYER says otherwise: the
    default OpenMP layer leaves worker threads spinning after UMAP, which made a later t-SNE
    (sklearn's own OpenMP) 3x slower on a 2-core machine. Only acts before numba's first
    parallel run."""
    if "NUMBA_THREADING_LAYER" not in os.environ:
        import numba

        numba.config.THREADING_LAYER = "workqueue"


class Atlas:
    """Per-stage pixel embeddings of the probe batch of several reference runs, subsampled
    (`stratified_sample`, same pixels for runs with the same labels) and projected to 2-D by
    t-SNE or UMAP once: `projection(model, stage, method)` computes on the first call and then
    reads `cache`, a dict keyed by (model, stage, method); `misses` counts computations and
    `seconds` records their cost.

    refs: name -> load_reference(...). space: "embeddings" (the projection heads' output, what
    the PA loss shapes) or "features" (the encoder's stage features, run on the probe images).
    iterations: t-SNE steps / UMAP epochs (None: the libraries' defaults).
    project: replaces `project_points` (same signature), e.g. in tests.
    """

    def __init__(
        self,
        refs: dict[str, ReferenceRun],
        max_points: int = 2000,
        seed: int = 0,
        iterations: int | None = None,
        space: str = "embeddings",
        project: Callable | None = None,
    ) -> None:
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        self.refs, self.max_points, self.seed, self.iterations = refs, max_points, seed, iterations
        self.space = space
        self.names = list(refs)
        self.num_stages = len(refs[self.names[0]].probe["stages"])
        self.project = project or project_points
        self.cache: dict[tuple[str, int, str], np.ndarray] = {}
        self.seconds: dict[tuple[str, int, str], float] = {}
        self.misses = 0
        self._points: dict[tuple[str, int], dict] = {}
        self._features: dict[str, list[torch.Tensor]] = {}

    def stage_tensor(self, model: str, stage: int) -> torch.Tensor:
        """The [N,D,h,w] tensor of `space` for one model and stage."""
        probe = self.refs[model].probe
        if self.space == "embeddings":
            return probe["stages"][stage]["embeddings"].float()
        if model not in self._features:
            self._features[model] = probe_features(self.refs[model])
        return self._features[model][stage]

    def points(self, model: str, stage: int) -> dict:
        """The subsampled points of one model and stage (cached): "x" [n,D] float32, "labels",
        "pred" [n] int, "error" and "bane" [n] bool (misclassified at this stage / picked by
        BANE), "index" [n] flat pixel indices into [N,h,w]."""
        key = (model, stage)
        if key not in self._points:
            if model not in self.refs or not 0 <= stage < self.num_stages:
                raise ValueError(
                    f"unknown (model, stage) {key}: models {self.names}, stages 0..{self.num_stages - 1}"
                )
            st = self.refs[model].probe["stages"][stage]
            emb = self.stage_tensor(model, stage)
            labels = st["labels"].reshape(-1)
            idx = stratified_sample(labels.numpy(), self.max_points, self.seed)
            x = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])[idx]
            pred = st["pred"].reshape(-1)[idx]
            lab = labels[idx]
            self._points[key] = {
                "x": x.numpy().astype(np.float32),
                "labels": lab.numpy(),
                "pred": pred.numpy(),
                "error": (pred != lab).numpy(),
                "bane": st["bane"].any(1).reshape(-1)[idx].numpy(),
                "index": idx,
            }
        return self._points[key]

    def projection(self, model: str, stage: int, method: str) -> np.ndarray:
        """2-D coordinates [n,2] of `points(model, stage)`; computed once, then from `cache`."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        key = (model, stage, method)
        if key not in self.cache:
            tic = time.perf_counter()
            self.cache[key] = self.project(
                self.points(model, stage)["x"], method, self.seed, self.iterations
            )
            self.seconds[key] = time.perf_counter() - tic
            self.misses += 1
        return self.cache[key]

    def precompute(
        self,
        stages: Sequence[int] | None = None,
        methods: Sequence[str] = METHODS,
        models: Sequence[str] | None = None,
    ) -> float:
        """Fill the cache for every combination given (None: all); returns the seconds spent."""
        tic = time.perf_counter()
        for m in models or self.names:
            for s in range(self.num_stages) if stages is None else stages:
                for method in methods:
                    self.projection(m, s, method)
        return time.perf_counter() - tic
