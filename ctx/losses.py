"""Pixel-anchor (PA) loss, the Contextrast total loss and a CE baseline (METHOD.md, CCL 3-4).

Both `ContextrastLoss` and `CrossEntropyLoss` are called as `(logits, embeddings, labels)` and return
`(total, parts)`, so a training loop treats them the same. The losses are the formulas: which pixels
enter them is `ctx.negatives`' business (a miner marks hard pixels, `sample_pixels` draws P and Q).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ctx.anchors import (
    check_fusion_weights,
    class_anchors,
    fuse_anchors,
    pixel_major,
    sampled_anchors,
)
from ctx.labels import (
    IGNORE_INDEX,
    check_embeddings,
    check_finite,
    check_flag,
    check_ignore_index,
    check_labels,
    check_num_classes,
    check_scalar,
    check_seed,
    readable,
    resize_labels,
)
from ctx.model import PixelEmbeddings
from ctx.negatives import (
    BoundaryMiner,
    Miner,
    PixelSample,
    check_fraction,
    check_hard_for,
    check_sample_caps,
    no_hard_pixels,
    sample_pixels,
)


def _check_logits(logits: torch.Tensor, labels: torch.Tensor, num_classes: int | None) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4 or not logits.is_floating_point():
        desc = f"{tuple(logits.shape)} {logits.dtype}" if isinstance(logits, torch.Tensor) else ""
        raise ValueError(f"logits must be a floating tensor [B,C,H,W], got {desc or type(logits)}")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(f"logits have {logits.shape[1]} channels, expected C={num_classes}")
    b, _, h, w = logits.shape
    if tuple(labels.shape) != (b, h, w):
        raise ValueError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree: labels must "
            f"be [B,H,W] with the logits' batch and spatial size"
        )


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32 when it is half or bfloat16 (a sum of many terms overflows float16's 65504;
    autocast does the same for F.cross_entropy); float32 and float64 are returned as they are."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _ce(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    # int64 targets: F.cross_entropy refuses the int32 labels the checks accept (a no-op on int64)
    total = F.cross_entropy(
        _at_least_float32(logits), labels.long(), ignore_index=ignore_index, reduction="sum"
    )
    return total / (labels != ignore_index).sum().clamp_min(1)


def safe_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Mean CE of logits [B,C,H,W] over non-ignore pixels of labels [B,H,W].

    Exactly 0 (graph kept, finite gradients) when every pixel is ignored, where plain
    `F.cross_entropy` returns NaN.
    """
    if isinstance(labels, torch.Tensor) and isinstance(logits, torch.Tensor) and logits.dim() == 4:
        check_labels(labels, logits.shape[1], ignore_index)
    _check_logits(logits, labels, None)
    return _ce(logits, labels, ignore_index)


def _take(sims: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    return sims if idx is None else sims.gather(1, idx)


def _pa_from_sample(rows, labels, anchors, present, hard, sample: PixelSample, *, tau, ignore):
    """The PA formula of one stage on what `sample_pixels` drew -> (loss, stats); rows [M,D]:
    the embeddings the sample's indices point at."""
    # [M,D] @ [D,C] -> [M,C], used as its [C,M] view: the gradient reaching emb is then a
    # contiguous [M,D] (A @ E^T would hand the heads a transposed one, 5x slower to backprop).
    # Reduced in float32 at least: 1,024 per-positive terms overflow float16 (a no-op in float32).
    sims = _at_least_float32((rows @ anchors.to(rows.dtype).T).T)
    pos_s, neg_s = _take(sims, sample.pos_idx), _take(sims, sample.neg_idx)  # [C,P], [C,Q]
    pos_ok, neg_ok = sample.pos_ok, sample.neg_ok

    # -log(e^s_p / (e^s_p + sum_q e^s_q)) = softplus(lse_q - s_p); no negatives: lse = -inf -> 0.
    # softplus is linear past 20 (torch's threshold): an error below 2.1e-9 per positive there,
    # under float32's resolution at that size; kept, as every run of the studies trained with it.
    has_neg = neg_ok.any(1)
    masked = torch.where(neg_ok & has_neg[:, None], neg_s / tau, float("-inf"))
    lse = torch.logsumexp(torch.where(has_neg[:, None], masked, 0.0), dim=1)
    lse = torch.where(has_neg, lse, float("-inf"))  # keeps gradients finite on empty rows
    per_pos = torch.where(pos_ok, F.softplus(lse[:, None] - pos_s / tau), 0.0)
    n_pos = pos_ok.sum(1)
    in_n = present & (n_pos > 0)
    per_class = per_pos.sum(1) / n_pos.clamp_min(1)
    loss = torch.where(in_n, per_class, 0.0).sum() / in_n.sum().clamp_min(1)

    with torch.no_grad():
        pos_m, neg_m = pos_ok & in_n[:, None], neg_ok & in_n[:, None]
        n_pos, n_neg = pos_m.sum(1), neg_m.sum(1)
        c_all = in_n.sum()
        stats = {
            "classes": c_all,
            "pos_count": n_pos.sum(),
            "neg_count": n_neg.sum(),
            "pos_per_class_max": n_pos.max(),
            "neg_per_class_max": n_neg.max(),
            "pos_sim": (pos_s * pos_m).sum() / pos_m.sum().clamp_min(1),
            "neg_sim": (neg_s * neg_m).sum() / neg_m.sum().clamp_min(1),
            "hard_count": (
                (_any_anchor(hard, labels) & (labels != ignore)).sum()
                if hard is not None
                else torch.zeros_like(c_all)
            ),
        }
    return loss, stats


def _any_anchor(hard: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """A miner's hard pixels [B,H,W] or per anchor [C,B,H,W] -> pixels hard for some anchor."""
    return hard.any(0) if hard.dim() > labels.dim() else hard


def pixel_anchor_loss(
    emb: torch.Tensor,
    labels: torch.Tensor,
    anchors: torch.Tensor,
    present: torch.Tensor,
    hard: torch.Tensor | None = None,
    tau: float = 0.1,
    max_positives: int = 1024,
    max_negatives: int = 256,
    fill: bool = True,
    generator: torch.Generator | None = None,
    *,
    ignore_index: int = IGNORE_INDEX,
    return_stats: bool = False,
    check_inputs: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PA loss of one stage: (1/|N|) sum_{n in N} L^n, an InfoNCE with anchor n as the query.

    emb [B,D,H,W] (L2-normalised per pixel by the heads, METHOD.md's [choice]: a net built with
    normalize_embeddings=False gives raw ones; not re-normalised here), labels [B,H,W]
    at the same resolution, anchors [C,D], present [C] bool, hard [B,H,W] bool (hard negatives of
    every anchor but their own class's), [C,B,H,W] bool (hard[n]: anchor n's) or None -> scalar.
    N = present classes with at least one pixel here. Positives and negatives are drawn by
    `ctx.negatives.sample_pixels` (a miner's `hard` pixels first, `fill`, the caps), then the
    formula is applied to them. Positives of n: its pixels, a random subset of `max_positives` if
    more **[choice]**. Negatives: pixels labelled != n; with `hard`, hard ones first (a random
    subset of `max_negatives` if more), topped up at random to `max_negatives` when `fill`
    **[choice]**, or hard only when not; with `hard=None`, random ones up to `max_negatives`
    (`fill` unused). Caps are per process and per anchor **[choice]**: each denominator holds at
    most `max_negatives` negatives whatever the world size. A class without negatives gives 0;
    no class gives a 0 that keeps the graph. Exactly the formula when no cap is hit (to float32
    resolution: where a positive's term exceeds 20, softplus's linear tail is off by < 2.1e-9).
    `generator` (on emb's device; None = default RNG) drives all sampling.
    `return_stats=True` also returns cheap 0-dim statistics (counts, mean similarities).
    Raises ValueError for NaN/inf in `emb` or `anchors`, and for a loss that overflows although
    they are finite (unnormalised embeddings, a tiny tau). `check_inputs=False` skips these and
    the label range check (each makes the host wait for the device); shapes always checked.
    """
    c = anchors.shape[0] if isinstance(anchors, torch.Tensor) and anchors.dim() == 2 else None
    if c is None or not anchors.is_floating_point():
        desc = tuple(anchors.shape) if isinstance(anchors, torch.Tensor) else type(anchors)
        raise ValueError(f"anchors must be a floating tensor [C,D], got {desc}")
    check_labels(
        labels, c, ignore_index, values=check_inputs, classes_from="anchors (one row per class)"
    )
    check_embeddings(emb, labels, values=check_inputs)
    if anchors.shape[1] != emb.shape[1] or anchors.device != emb.device:
        raise ValueError(
            f"anchors [C,D={anchors.shape[1]}] on {anchors.device} do not match emb "
            f"D={emb.shape[1]} on {emb.device}"
        )
    if (
        not isinstance(present, torch.Tensor)
        or present.dtype != torch.bool
        or present.shape != (c,)
        or present.device != emb.device
    ):
        raise ValueError(f"present must be a bool tensor [C={c}] on {emb.device}")
    _check_hyper(tau=tau)
    sample = sample_pixels(
        labels, c, hard, max_positives, max_negatives, fill, ignore_index, generator
    )  # checks hard and the caps
    if check_inputs:
        check_finite(anchors, "anchors")
    loss, stats = _pa_from_sample(
        pixel_major(emb), labels, anchors, present, hard, sample, tau=tau, ignore=ignore_index
    )
    if check_inputs and readable(loss) and not bool(torch.isfinite(loss)):
        raise ValueError(
            f"pixel_anchor_loss overflowed although emb and anchors are finite: similarities "
            f"/ tau exceed {torch.promote_types(emb.dtype, torch.float32)}'s range (tau={tau}, "
            f"max |emb| = "
            f"{emb.detach().abs().max().item():.3g}); pass L2-normalised embeddings (|emb| = 1) "
            f"and a tau near METHOD.md's 0.1"
        )
    return (loss, stats) if return_stats else loss


def _check_hyper(**kw) -> None:
    if "tau" in kw:
        check_scalar("tau", kw["tau"], gt=0, hint="(METHOD.md: tau = 0.1)")
    if "alpha" in kw:
        check_scalar("alpha", kw["alpha"], ge=0, hint="(0 trains plain cross-entropy)")


class ContextrastLoss(nn.Module):
    """L = CE + alpha * sum_i lambda_i PA_i with fused anchors and BANE negatives (METHOD.md).

    Call on (logits [B,C,H,W], embeddings: list of I maps [B,D,h_i,w_i], labels [B,H,W]) ->
    (total, parts). parts: "ce", "pa", "pa/stage{i}" (unweighted) and "stage{i}/<stat>" statistics,
    all detached. Stage i uses labels resized by nearest; anchors of stage i < I-1 are fused with
    the last stage's when `fusion`. `stages` restricts the PA sum (fusion still uses the last stage).
    Per stage: the miner marks hard pixels, `sample_pixels` draws each anchor's positives and
    negatives from them (hard first, `fill`, the caps), and the PA formula is applied to those.
    `negatives`: the miner, a `ctx.negatives.Miner`, or "bane" (`BoundaryMiner(C, k, hard_for=)`:
    the picks boundary_negatives(argmax resized, y_i, C, k).any(1), as one map [B,h,w] or, with
    hard_for="predicted", one per anchor [C,B,h,w]) or "random" (`no_hard_pixels`).
    `seed` seeds a private generator per device for all sampling (None: global RNG).
    `distributed` is passed to class_anchors (None: auto). Caps: see `pixel_anchor_loss`.
    `check_inputs=True` raises ValueError for labels out of range, NaN/inf in the logits or
    embeddings, and a total that overflows although they are finite (three host syncs).
    `check_inputs=False` (a training loop's setting) skips the checks that read tensor values;
    shapes, dtypes and devices are always checked. Without them a call makes no host-device
    synchronisation in forward or backward: every shape is static (no .item(), nonzero() or
    boolean-mask indexing), so a GPU step never waits.
    [choice]s (METHOD.md), each a parameter: normalize_anchors (L2-normalised class means),
    renormalize_fused (re-normalised after fusion), w_l/w_h, fill, max_positives,
    max_negatives, detach_anchors, tau, and `hard_for`, BANE's reading (METHOD.md, BANE 4): a
    hard pixel keeps its own label (a positive of its class) and is a hard negative of every
    other anchor ("others", the default) or only of the anchor of the class it was wrongly
    predicted as ("predicted"; see `BoundaryMiner`). **[choice]** check_inputs=False keeps the
    checks that cost no synchronisation.
    `embed_pixels="sampled"` (opt-in, a cheaper step; default "all" is METHOD.md's method):
    each stage draws its sample first, then embeds only the pixels it uses (its positives and
    negatives; with `PixelEmbeddings`, the heads run on those alone) and takes each anchor as
    the mean of its class's sampled positives, `ctx.anchors.sampled_anchors` **[choice]**: exact
    for classes with at most `max_positives` pixels, an estimate for larger ones. Counting the
    used pixels costs one host sync per stage (a CPU option).
    """

    def __init__(
        self,
        num_classes: int,
        tau: float = 0.1,
        alpha: float = 0.1,
        stage_weights: Sequence[float] = (0.1, 0.3, 0.7, 1.0),
        w_l: float = 0.3,
        w_h: float = 0.7,
        fusion: bool = True,
        negatives: str | Miner = "bane",
        k: float = 0.5,
        fill: bool = True,
        stages: Sequence[int] | None = None,
        ignore_index: int = IGNORE_INDEX,
        max_positives: int = 1024,
        max_negatives: int = 256,
        detach_anchors: bool = False,
        seed: int | None = 0,
        distributed: bool | None = None,
        check_inputs: bool = True,
        embed_pixels: str = "all",
        normalize_anchors: bool = True,
        renormalize_fused: bool = True,
        hard_for: str = "others",
    ) -> None:
        super().__init__()
        if embed_pixels not in ("all", "sampled"):
            raise ValueError(f"embed_pixels must be 'all' or 'sampled', got {embed_pixels!r}")
        check_num_classes(num_classes)
        check_ignore_index(ignore_index)
        _check_hyper(tau=tau, alpha=alpha)
        check_fraction(k)  # also when negatives='random', where k is unused
        for name, flag in (
            ("fusion", fusion),
            ("fill", fill),
            ("detach_anchors", detach_anchors),
            ("check_inputs", check_inputs),
            ("normalize_anchors", normalize_anchors),
            ("renormalize_fused", renormalize_fused),
        ):
            check_flag(name, flag)
        check_sample_caps(max_positives, max_negatives)
        check_fusion_weights(w_l, w_h)
        check_hard_for(hard_for)
        if seed is not None:
            check_seed(seed)
        if distributed is not None:
            check_flag("distributed", distributed)
        if hard_for != "others" and negatives != "bane":
            raise ValueError(
                f"hard_for={hard_for!r} only acts with negatives='bane' (it says whose hard "
                f"negatives BANE's pixels are), got negatives={negatives!r}"
            )
        if negatives == "bane":
            self.miner: Miner = BoundaryMiner(num_classes, k, ignore_index, hard_for)
        elif negatives == "random":
            self.miner = no_hard_pixels
        elif callable(negatives):
            self.miner = negatives
        else:
            raise ValueError(f"negatives must be 'bane', 'random' or a miner, got {negatives!r}")
        weights = [] if isinstance(stage_weights, str | bytes) else stage_weights
        try:
            weights = list(weights)
        except TypeError:
            weights = []
        if not weights:
            raise ValueError(
                f"stage_weights must be a non-empty list of weights >= 0 (one per stage), got "
                f"{stage_weights!r}"
            )
        for i, w in enumerate(weights):
            check_scalar(f"stage_weights[{i}]", w, ge=0, hint="(METHOD.md: 0.1, 0.3, 0.7, 1.0)")
        stage_weights = tuple(float(w) for w in weights)
        n = len(stage_weights)
        stages = tuple(range(n)) if stages is None else tuple(stages)
        if (
            not stages
            or len(set(stages)) != len(stages)
            or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < n for s in stages)
        ):
            raise ValueError(f"stages must be distinct stage indices in [0, {n}), got {stages}")
        self.num_classes, self.tau, self.alpha = num_classes, tau, alpha
        self.stage_weights, self.w_l, self.w_h, self.fusion = stage_weights, w_l, w_h, fusion
        self.negatives, self.k, self.fill, self.stages = negatives, k, fill, stages
        self.hard_for = hard_for
        self.ignore_index = ignore_index
        self.max_positives, self.max_negatives = max_positives, max_negatives
        self.detach_anchors, self.seed, self.distributed = detach_anchors, seed, distributed
        self.check_inputs, self.embed_pixels = check_inputs, embed_pixels
        self.normalize_anchors, self.renormalize_fused = normalize_anchors, renormalize_fused
        self._generators: dict[str, torch.Generator] = {}

    def generator(self, device: torch.device) -> torch.Generator | None:
        """The loss's own generator on `device` (created from `seed` on first use)."""
        if self.seed is None or torch.device(device).type == "meta":
            return None  # a meta tensor has no values to draw: nothing to seed
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    def reseed(self, seed: int) -> None:
        """Restart sampling from `seed` (the trainer reseeds every step, so resuming is exact)."""
        check_seed(seed)
        self.seed = seed
        self._generators.clear()

    def _check(self, logits, embeddings, labels) -> None:
        check_labels(labels, self.num_classes, self.ignore_index, values=self.check_inputs)
        _check_logits(logits, labels, self.num_classes)
        if 0 in labels.shape[1:]:
            raise ValueError(
                f"labels {tuple(labels.shape)} have no pixels: the stages' labels are resized "
                f"from them, so pass images of at least 1x1"
            )
        n = len(self.stage_weights)
        if not isinstance(embeddings, (list, tuple)) or len(embeddings) != n:
            got = len(embeddings) if isinstance(embeddings, (list, tuple)) else type(embeddings)
            raise ValueError(
                f"embeddings must be a list of {n} maps (one per stage weight), "
                f"got {got}; pass stage_weights with one weight per stage"
            )
        for i, e in enumerate(embeddings):
            if isinstance(e, PixelEmbeddings) and self.embed_pixels != "sampled":
                raise ValueError("PixelEmbeddings (lazy embeddings) need embed_pixels='sampled'")
            if not isinstance(e, PixelEmbeddings) and (
                not isinstance(e, torch.Tensor) or e.dim() != 4 or not e.is_floating_point()
            ):
                raise ValueError(f"embeddings[{i}] must be a floating tensor [B,D,h,w]")
            if e.shape[0] != labels.shape[0]:
                raise ValueError(
                    f"embeddings[{i}] has batch {e.shape[0]}, labels {labels.shape[0]}"
                )
            if 0 in e.shape[1:]:
                raise ValueError(
                    f"embeddings[{i}] {tuple(e.shape)} is empty: each stage needs D >= 1 "
                    f"channels and a map of at least 1x1 pixels"
                )
            if e.device != labels.device or logits.device != labels.device:
                raise ValueError(f"embeddings[{i}], logits and labels must share one device")
            if self.fusion and e.shape[1] != embeddings[-1].shape[1]:
                raise ValueError(
                    f"fusion needs one embedding size D for all stages, got "
                    f"{[x.shape[1] for x in embeddings]}"
                )
        if not self.check_inputs or not readable(logits):
            return
        # One host sync for all of them (a sum could overflow on large finite values).
        # Lazy embeddings: their features, what the heads will read.
        maps = [e.feats if isinstance(e, PixelEmbeddings) else e for e in embeddings]
        finite = torch.stack([torch.isfinite(t.detach()).all() for t in [*maps, logits]])
        if not bool(finite.all()):
            bad = [i for i, ok in enumerate(finite[:-1].tolist()) if not ok]
            what = f"embeddings {bad}" if bad else "logits"
            raise ValueError(
                f"{what} contain NaN or inf values (in training, often a diverging model: "
                f"lower the learning rate)"
            )

    def _needed(self, n: int) -> list[int]:
        """The stages whose anchors the PA sum uses (its own, and the last one's for fusion)."""
        return sorted(set(self.stages) | ({n - 1} if self.fusion else set()))

    def _fused(self, i: int, anchors: dict) -> tuple[torch.Tensor, torch.Tensor]:
        a, p = anchors[i]
        last = max(anchors)
        if self.fusion and i != last:
            high, high_present = anchors[last]
            a = fuse_anchors(
                a,
                high,
                p,
                high_present,
                self.w_l,
                self.w_h,
                check_inputs=False,
                renormalize=self.renormalize_fused,
            )
        return a, p

    def _draw(self, i, logits_d, y, gen, parts) -> tuple[torch.Tensor | None, PixelSample]:
        """Stage i's hard pixels (the miner) and its sample of positives and negatives."""
        out = self.miner(logits_d, y, gen)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
            raise ValueError(
                f"negatives={self.miner!r} must return (hard, stats): hard None or a bool map, "
                f"stats a dict of tensors (ctx.negatives.Miner), got {type(out).__name__}"
            )
        hard, mined = out
        parts.update({f"stage{i}/{name}": v for name, v in mined.items()})
        sample = sample_pixels(
            y, self.num_classes, hard, self.max_positives, self.max_negatives, self.fill,
            self.ignore_index, gen,
        )  # fmt: skip
        return hard, sample

    def _exact_stages(self, logits_d, embeddings, labels, gen, parts):
        """Per stage of the PA sum: (i, rows, anchor, present, hard, sample, labels), METHOD.md's
        anchors over every pixel of a class, every pixel embedded."""
        ys, anchors = {}, {}
        for i in self._needed(len(embeddings)):
            ys[i] = resize_labels(labels, tuple(embeddings[i].shape[-2:]))
            anchors[i] = class_anchors(
                embeddings[i],
                ys[i],
                self.num_classes,
                self.ignore_index,
                detach=self.detach_anchors,
                distributed=self.distributed,
                check_inputs=False,  # checked once in _check when self.check_inputs
                normalize=self.normalize_anchors,
            )
        for i in self.stages:
            a, p = self._fused(i, anchors)
            hard, sample = self._draw(i, logits_d, ys[i], gen, parts)
            yield i, pixel_major(embeddings[i]), a, p, hard, sample, ys[i]

    def _sampled_stages(self, logits_d, embeddings, labels, gen, parts):
        """As `_exact_stages` for embed_pixels="sampled": each stage's sample first, then only
        the pixels it uses are embedded, and the anchors come from the sampled positives."""
        drawn, anchors = {}, {}
        for i in self._needed(len(embeddings)):
            y = resize_labels(labels, tuple(embeddings[i].shape[-2:]))
            if i in self.stages:
                hard, sample = self._draw(i, logits_d, y, gen, parts)
            else:  # the last stage, for fusion only: its positives
                hard = None
                sample = sample_pixels(
                    y, self.num_classes, None, self.max_positives, 1, True, self.ignore_index, gen
                )
            rows, sample = _used_rows(embeddings[i], sample)
            anchors[i] = sampled_anchors(
                rows,
                sample.pos_idx,
                sample.pos_ok,
                detach=self.detach_anchors,
                distributed=self.distributed,
                normalize=self.normalize_anchors,
            )
            drawn[i] = (rows, hard, sample, y)
        for i in self.stages:
            rows, hard, sample, y = drawn[i]
            yield i, rows, *self._fused(i, anchors), hard, sample, y

    def forward(
        self,
        logits: torch.Tensor,
        embeddings: Sequence[torch.Tensor] | Sequence[PixelEmbeddings],
        labels: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self._check(logits, embeddings, labels)
        gen = self.generator(embeddings[0].device)
        ce = _ce(logits, labels, self.ignore_index)
        stages = self._sampled_stages if self.embed_pixels == "sampled" else self._exact_stages
        parts: dict[str, torch.Tensor] = {}
        pa = logits.new_zeros(())
        for i, rows, a, p, hard, sample, y in stages(
            logits.detach(), embeddings, labels, gen, parts
        ):
            term, stats = _pa_from_sample(
                rows, y, a, p, hard, sample, tau=self.tau, ignore=self.ignore_index
            )
            pa = pa + self.stage_weights[i] * term
            parts[f"pa/stage{i}"] = term.detach()
            parts.update({f"stage{i}/{name}": v for name, v in stats.items()})
        total = ce + self.alpha * pa
        if self.check_inputs and readable(total) and not bool(torch.isfinite(total)):
            bad = [
                k
                for k in ("ce", *(f"pa/stage{i}" for i in self.stages))
                if not bool(torch.isfinite(parts.get(k, ce)))
            ]
            raise ValueError(
                f"the loss is not finite although logits and embeddings are: {bad} overflowed "
                f"(max |logit| = {float(logits.detach().abs().max()):.3g}, max |embedding| per "
                f"stage = {[float(_embed(e, None).detach().abs().max()) for e in embeddings]}, "
                f"tau={self.tau}); a PA term needs L2-normalised embeddings (|e| = 1) and a tau "
                f"near METHOD.md's 0.1"
            )
        return total, {"ce": ce.detach(), "pa": pa.detach(), **parts}


def _embed(emb: torch.Tensor | PixelEmbeddings, idx: torch.Tensor | None) -> torch.Tensor:
    """Embeddings [N,D] of the pixels at flat (b, h, w) indices `idx` (None: all of them)."""
    if isinstance(emb, PixelEmbeddings):
        return emb.rows(idx)
    rows = pixel_major(emb)
    return rows if idx is None else rows.index_select(0, idx)


def _used_rows(emb, sample: PixelSample) -> tuple[torch.Tensor, PixelSample]:
    """The embeddings of the pixels `sample` uses (positives or negatives of some class), in
    (b, h, w) order, and the sample re-indexed into them; every pixel when no cap was hit.
    Counting the used pixels is one host sync (nonzero)."""
    if sample.pos_idx is None or sample.neg_idx is None:
        return _embed(emb, None), sample
    b, _, h, w = emb.shape
    hits = torch.zeros(b * h * w, dtype=torch.int32, device=sample.pos_ok.device)
    for idx, ok in ((sample.pos_idx, sample.pos_ok), (sample.neg_idx, sample.neg_ok)):
        hits.index_add_(0, idx.reshape(-1), ok.reshape(-1).to(torch.int32))
    used = hits.nonzero().squeeze(1)
    where = torch.zeros_like(hits, dtype=torch.long)
    where[used] = torch.arange(used.numel(), device=used.device)
    remapped = PixelSample(
        where[sample.pos_idx], sample.pos_ok, where[sample.neg_idx], sample.neg_ok
    )
    return _embed(emb, used), remapped


class CrossEntropyLoss(nn.Module):
    """CE-only baseline with ContextrastLoss's call: (logits, embeddings (ignored), labels).

    Raises ValueError for labels outside [0, C) or NaN/inf logits; `check_inputs=False` skips
    those value checks (each makes the host wait for the device), as training does: its loop
    checks the losses it reads back instead. Types and shapes are always checked.
    """

    def __init__(
        self, num_classes: int, ignore_index: int = IGNORE_INDEX, check_inputs: bool = True
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        check_ignore_index(ignore_index)
        check_flag("check_inputs", check_inputs)
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.check_inputs = check_inputs

    def forward(
        self, logits: torch.Tensor, embeddings: object, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_labels(labels, self.num_classes, self.ignore_index, values=self.check_inputs)
        _check_logits(logits, labels, self.num_classes)
        if self.check_inputs:
            check_finite(logits.detach(), "logits")
        ce = _ce(logits, labels, self.ignore_index)
        return ce, {"ce": ce.detach(), "pa": ce.new_zeros(())}
