"""What does the PA term change, and what do its mechanisms have to act on? (issue 12, step 1)

Measured on the test scenes of a regime for a CE run and a Contextrast run of the same seed:
- errors split by distance to the ground-truth class edge (rim: within `RIM` px; interior);
- the train-test gap (mIoU on un-augmented training scenes vs test scenes);
- per-stage class separation of the test embeddings (nearest-anchor accuracy; for CE the
  projection heads are untrained, so the encoder's own stage features are compared too);
- per stage, what BANE has to work with: the share of error pixels and of BANE's picks whose
  distance D to the error region's edge exceeds 1, and the share of each anchor's negatives
  that are background pixels (hard picks first, then `fill`'s random top-up).

    python -m ctx.experiments diagnose     # writes results/regimes/diagnosis.{json,md}
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import torch

from ctx.bane_sets import edge_distance
from ctx.data import NUM_CLASSES
from ctx.engine.checkpoint import load_model
from ctx.engine.config import TrainConfig, config_mismatch
from ctx.engine.loop import train_or_load
from ctx.engine.step import evaluate
from ctx.experiments.regimes import regime_config
from ctx.io import load_checkpoint, read_results, write_json, write_text
from ctx.labels import IGNORE_INDEX, resize_labels
from ctx.metrics import ConfusionMatrix
from ctx.negatives import boundary_negatives, distance_transform, error_maps
from ctx.projection import nearest_anchor_accuracy
from ctx.reference import reference_dir

RIM = 2.0  # px: an error within this distance of a ground-truth class edge is a rim error


@torch.no_grad()
def error_split(pred: torch.Tensor, labels: torch.Tensor, rim: float = RIM) -> dict:
    """Errors of pred [B,H,W] against labels [B,H,W], split into the rim (distance to the class
    edge <= rim) and the interior: pixel shares, error rates and the rim's share of errors (%)."""
    valid = labels != IGNORE_INDEX
    near = (edge_distance(labels) <= rim) & valid
    far = ~near & valid
    wrong = (pred != labels) & valid
    n_wrong = int(wrong.sum())
    return {
        "rim_pixel_share": 100 * float(near.sum()) / max(int(valid.sum()), 1),
        "rim_error_rate": 100 * float((wrong & near).sum()) / max(int(near.sum()), 1),
        "interior_error_rate": 100 * float((wrong & far).sum()) / max(int(far.sum()), 1),
        "rim_share_of_errors": 100 * float((wrong & near).sum()) / max(n_wrong, 1),
        "errors_per_image": n_wrong / labels.shape[0],
    }


def expected_background_share(
    labels: torch.Tensor, hard: torch.Tensor, max_negatives: int
) -> float:
    """Mean over present non-background anchors m of the expected share of background pixels
    among m's negatives: hard pixels labelled != m first (up to the cap, a random subset if more),
    then `fill`'s uniform top-up from the other pixels labelled != m. labels, hard [B,h,w]."""
    y = labels[labels != IGNORE_INDEX]
    h = hard[labels != IGNORE_INDEX]
    shares = []
    for m in torch.unique(y).tolist():
        if m == 0:
            continue
        other = y != m
        n_other = int(other.sum())
        if n_other == 0:
            continue
        hard_m = h & other
        n_hard = int(hard_m.sum())
        take = min(n_hard, max_negatives)
        fill = min(max_negatives - take, n_other - take)
        bg_hard = float((hard_m & (y == 0)).sum()) / max(n_hard, 1)
        rest = other & ~hard_m
        bg_rest = float((rest & (y == 0)).sum()) / max(int(rest.sum()), 1)
        total = take + fill
        if total:
            shares.append((take * bg_hard + fill * bg_rest) / total)
    return 100 * statistics.mean(shares) if shares else math.nan


@torch.no_grad()
def bane_inputs(
    pred: torch.Tensor,
    labels: torch.Tensor,
    sizes: list[tuple[int, int]],
    k: float = 0.5,
    max_negatives: int = 256,
    batch: int = 16,
    seed: int = 0,
) -> list[dict]:
    """Per stage size: what BANE works with on these scenes, in training-sized batches.
    Returns per stage: error pixels per image, % of error pixels and of BANE picks with D > 1,
    % of the hard picks that are background, % of negatives that `fill` tops up at random, and
    the expected % of background among an anchor's negatives (`expected_background_share`)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for size in sizes:
        acc = {"errors": 0, "errors_far": 0, "picks": 0, "picks_far": 0, "picks_bg": 0}
        fills, bg_shares, pixels_bg = [], [], []
        for i in range(0, labels.shape[0], batch):
            y = resize_labels(labels[i : i + batch], size)
            p = resize_labels(pred[i : i + batch], size)
            err = error_maps(p, y, NUM_CLASSES)
            dist = distance_transform(err)
            sel = boundary_negatives(p, y, NUM_CLASSES, k, generator=g)
            hard = sel.any(1)
            acc["errors"] += int(err.sum())
            acc["errors_far"] += int((err & (dist > 1)).sum())
            acc["picks"] += int(sel.sum())
            acc["picks_far"] += int((sel & (dist > 1)).sum())
            acc["picks_bg"] += int((hard & (y == 0)).sum())
            present = [m for m in torch.unique(y).tolist() if m != IGNORE_INDEX]
            for m in present:
                n_hard = int((hard & (y != m)).sum())
                fills.append(1 - min(n_hard, max_negatives) / max_negatives)
            bg_shares.append(expected_background_share(y, hard, max_negatives))
            pixels_bg.append(float((y == 0).float().mean()))
        n_img = labels.shape[0]
        out.append(
            {
                "size": list(size),
                "errors_per_image": acc["errors"] / n_img,
                "errors_far_pct": 100 * acc["errors_far"] / max(acc["errors"], 1),
                "picks_far_pct": 100 * acc["picks_far"] / max(acc["picks"], 1),
                "picks_background_pct": 100 * acc["picks_bg"] / max(acc["picks"], 1),
                "fill_pct": 100 * statistics.mean(fills) if fills else math.nan,
                "negatives_background_pct": _nanmean(bg_shares),
                "pixels_background_pct": 100 * statistics.mean(pixels_bg),
            }
        )
    return out


# %: BANE's distance ranking acts at a stage where more of the error pixels than this lie deeper
# than the rim of their region (D > 1). Its lowest-K cut leaves those out, where a random draw of
# the errors would take them as often as any other; below it, fewer than 1 pick in 20 differs.
RANKS_ABOVE = 5.0
MOSTLY_RANDOM = 50.0  # %: above this share of an anchor's negatives, `fill` supplies most


def bane_summary(bane: list[dict]) -> dict:
    """What `bane_inputs`' stages add up to: `ranks_at` (the stages, 1-based, where more than
    RANKS_ABOVE % of the error pixels have D > 1, so that BANE's picks differ from a random
    draw of the errors) and `random_from` (the first stage from which `fill` supplies most
    negatives at random; None if at none)."""
    ranks_at = [i + 1 for i, s in enumerate(bane) if s["errors_far_pct"] > RANKS_ABOVE]
    random_from = next((i + 1 for i, s in enumerate(bane) if s["fill_pct"] > MOSTLY_RANDOM), None)
    return {"ranks_at": ranks_at, "random_from": random_from}


def stage_span(stages: list[int]) -> str:
    """ "no stage", "stage 1", "stages 1-2", "stages 1, 3" for 1-based stage numbers (sorted)."""
    if not stages:
        return "no stage"
    if len(stages) == 1:
        return f"stage {stages[0]}"
    if stages == list(range(stages[0], stages[-1] + 1)):
        return f"stages {stages[0]}-{stages[-1]}"
    return "stages " + ", ".join(map(str, stages))


def ranking_where(bane: list[dict]) -> str:
    """Where BANE's distance ranking acts (`bane_summary`): "at no stage", "at every stage",
    "only at stage 1", "only at stages 1-2", ..."""
    ranks_at = bane_summary(bane)["ranks_at"]
    if not ranks_at:
        return "at no stage"
    if len(ranks_at) == len(bane):
        return "at every stage"
    return f"only at {stage_span(ranks_at)}"


def fill_reading(bane: list[dict]) -> str:
    """From which stage `fill` supplies most of an anchor's negatives at random (no stop)."""
    start = bane_summary(bane)["random_from"]
    if start is None:
        return "BANE's own picks fill the negatives at every stage"
    return f"`fill` supplies most negatives at random from stage {start} on"


def ranking_reading(bane: list[dict]) -> str:
    """One sentence (no final stop) on where BANE's distance ranking acts, with the per-stage
    shares of the error pixels and of BANE's picks that lie deeper than the rim (D > 1)."""
    n = len(bane)
    ranks_at = bane_summary(bane)["ranks_at"]
    rest = [s for s in range(1, n + 1) if s not in ranks_at]
    errors = "/".join(f"{s['errors_far_pct']:.1f}" for s in bane)
    picks = "/".join(f"{s['picks_far_pct']:.1f}" for s in bane)
    text = (
        f"BANE's distance ranking acts {ranking_where(bane)}: {errors} % of the error pixels lie "
        f"deeper than the rim of their region (D > 1) at stages 1-{n}, against {picks} % of its "
        f"picks"
    )
    if ranks_at:
        text += f", so at {stage_span(ranks_at)} its cut leaves out the errors inside thick regions"
    if rest:
        text += (
            f"; at {stage_span(rest)} (≤ {RANKS_ABOVE:g} % of the errors deeper than the rim) its "
            f"picks are (nearly) a random subset of the errors"
        )
    return text


def _nanmean(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.mean(xs) if xs else math.nan


@torch.no_grad()
def run_outputs(model, images: torch.Tensor, batch: int = 32, features: bool = True) -> dict:
    """pred [N,H,W], per-stage head embeddings and, with `features`, the encoder's stage
    features (a second encoder pass; float32, on the CPU)."""
    model.eval()
    preds, embs, feats = [], [], []
    for i in range(0, images.shape[0], batch):
        x = images[i : i + batch].float() / 255.0
        logits, e = model(x, return_embeddings=True)
        preds.append(logits.argmax(1))
        embs.append(e)
        if features:
            feats.append(model.stage_features(x))
    cat = lambda lists: [torch.cat(parts) for parts in zip(*lists, strict=True)]  # noqa: E731
    out = {"pred": torch.cat(preds), "embeddings": cat(embs)}
    return out | {"features": cat(feats)} if features else out


def diagnose(models: dict, cfg, test_scenes: int = 500, train_scenes: int = 500) -> dict:
    """All measurements for each run in `models` (name -> model) on cfg's regime."""
    test = cfg.digit_scenes("test", test_scenes)
    train = cfg.digit_scenes("train", train_scenes)
    train.augment = False
    out = {}
    for name, model in models.items():
        o = run_outputs(model, test.images)
        labels = test.labels
        sizes = [tuple(e.shape[-2:]) for e in o["embeddings"]]
        stage_labels = [resize_labels(labels, s) for s in sizes]
        cm = ConfusionMatrix(NUM_CLASSES)
        cm.update(o["pred"], labels)
        out[name] = {
            "test": cm.summary() | {"per_class_iou": None},
            "train_miou": evaluate(model, train, torch.device("cpu"), NUM_CLASSES)["miou"],
            "errors": error_split(o["pred"], labels),
            "separation_heads": [
                nearest_anchor_accuracy(e, y)
                for e, y in zip(o["embeddings"], stage_labels, strict=True)
            ],
            "separation_features": [
                nearest_anchor_accuracy(f, y)
                for f, y in zip(o["features"], stage_labels, strict=True)
            ],
            "bane": bane_inputs(o["pred"], labels, sizes, cfg.k, cfg.max_negatives),
        }
        out[name]["train_test_gap"] = out[name]["train_miou"] - out[name]["test"]["miou"]
    return out


def reading(d: dict) -> list[str]:
    """What the tables say, as sentences built from their numbers (so a rerun rewrites them)."""
    ce, cx = d["ce"], d["contextrast"]
    n = len(cx["bane"])
    fill = [b["fill_pct"] for b in cx["bane"]]
    bg = [b["negatives_background_pct"] for b in cx["bane"]]
    errs = [b["errors_per_image"] for b in cx["bane"]]
    start = bane_summary(cx["bane"])["random_from"]
    random_negatives = (
        f"so from stage {start} on the negatives are essentially the random ones of `ccl`, and"
        if start
        else "yet BANE's own picks make most of them at every stage, and"
    )
    lines = [
        "What it says:",
        "",
        f"- **Errors sit on the rims.** {ce['errors']['rim_share_of_errors']:.0f} % of CE's "
        f"test errors lie within {RIM:g} px of a class edge (error rate "
        f"{ce['errors']['rim_error_rate']:.1f} % there against "
        f"{ce['errors']['interior_error_rate']:.2f} % further inside); with the PA term "
        f"{cx['errors']['rim_share_of_errors']:.0f} % (rim error rate "
        f"{cx['errors']['rim_error_rate']:.1f} %)"
        + (
            ": the PA term does not move errors off the rims."
            if abs(cx["errors"]["rim_share_of_errors"] - ce["errors"]["rim_share_of_errors"]) < 2
            else "."
        )
        + " Strokes are only a few pixels wide, so the rim also holds most of a digit read as "
        "another digit: the next section splits the errors by what was taken for what.",
        f"- **Separation of deep features vs segmentation.** Nearest-anchor "
        f"separation of the encoder's stage features rises from "
        f"{'/'.join(f'{v:.0f}' for v in ce['separation_features'])} % (CE) to "
        f"{'/'.join(f'{v:.0f}' for v in cx['separation_features'])} % (stages 1-{n}), while "
        f"test mIoU goes {ce['test']['miou']:.2f} → {cx['test']['miou']:.2f} %"
        + (
            f": in this pair, much better separated deep features move the segmentation by "
            f"{cx['test']['miou'] - ce['test']['miou']:+.2f} points."
            if cx["separation_features"][-1] > ce["separation_features"][-1] + 5
            and cx["test"]["miou"] < ce["test"]["miou"] + 1
            else "."
        ),
        f"- **Train − test gap:** {ce['train_test_gap']:.1f} points (CE) against "
        f"{cx['train_test_gap']:.1f} with the PA term; train mIoU {ce['train_miou']:.1f} → "
        f"{cx['train_miou']:.1f} %, test mIoU {ce['test']['miou']:.1f} → "
        f"{cx['test']['miou']:.1f} % (a smaller gap from a lower train score is no gain).",
        f"- **The distance ranking.** {ranking_reading(cx['bane'])}.",
        f"- **At coarse stages BANE has almost nothing to act on at all.** Error pixels per "
        f"image: {'/'.join(f'{v:.1f}' for v in errs)} at stages 1-{n}; `fill` tops up "
        f"{'/'.join(f'{v:.0f}' for v in fill)} % of each anchor's negatives with random pixels, "
        f"{random_negatives} {'/'.join(f'{v:.0f}' for v in bg)} % of them are background.",
        "",
        f"So on the default scenes BANE's distance ranking acts {ranking_where(cx['bane'])}, "
        f"and {fill_reading(cx['bane'])}; the multi-stage anchors do act — deep features "
        "separate far better — but in this pair the test mIoU does not follow. The regimes "
        "below change what the mechanisms have to work with: errors between classes "
        "(`crowded`), larger coarse maps (`res128`), fewer labels (`scarce`).",
    ]
    return lines


def markdown(d: dict, sources: dict) -> str:
    """The diagnosis section of results/regimes.md from `diagnose`'s output."""
    names = list(d)
    lines = [
        "## Diagnosis: what the PA term changes in the `default` regime (the original digit scenes)",
        "",
        "Runs: " + "; ".join(f"`{n}` = `{sources[n]}`" for n in names) + ". Test scenes: "
        f"{sources['test_scenes']}. Reproduce: `python -m ctx.experiments diagnose --threads 1` "
        "(one thread, as the regime study trained: these are its seed-0 runs of `default`).",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]

    def row(label: str, get, fmt: str = ".2f") -> None:
        lines.append(f"| {label} | " + " | ".join(f"{get(d[n]):{fmt}}" for n in names) + " |")

    row("test mIoU (%)", lambda r: r["test"]["miou"])
    row("test boundary mIoU (%)", lambda r: r["test"]["boundary_miou"])
    row("train mIoU, un-augmented (%)", lambda r: r["train_miou"])
    row("train − test gap (points)", lambda r: r["train_test_gap"])
    row(
        f"error rate within {RIM:g} px of a class edge (%)", lambda r: r["errors"]["rim_error_rate"]
    )
    row("error rate further inside (%)", lambda r: r["errors"]["interior_error_rate"])
    row("share of errors on the rim (%)", lambda r: r["errors"]["rim_share_of_errors"], ".1f")
    row("error pixels per test image", lambda r: r["errors"]["errors_per_image"], ".1f")
    for s in range(len(d[names[0]]["separation_heads"])):
        row(f"stage {s + 1} separation, heads (%)", lambda r, s=s: r["separation_heads"][s], ".1f")
    for s in range(len(d[names[0]]["separation_features"])):
        row(
            f"stage {s + 1} separation, encoder features (%)",
            lambda r, s=s: r["separation_features"][s],
            ".1f",
        )
    lines += [
        "",
        "Separation = % of test pixels whose nearest class anchor (cosine; anchors = class means "
        "of the same scenes) is their own class. CE never trains the projection heads, so compare "
        "the encoder-feature rows across runs.",
        "",
        "What BANE has to work with at each stage (test scenes in batches of 16, as in training; "
        "D = distance to the edge of the error region):",
        "",
        "| run | stage (size) | error px / image | errors with D > 1 (%) | BANE picks with D > 1 (%) "
        "| picks that are background (%) | negatives topped up at random by `fill` (%) "
        "| background among an anchor's negatives (%) | background pixels (%) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in names:
        for s, b in enumerate(d[n]["bane"]):
            lines.append(
                f"| {n} | {s + 1} ({b['size'][0]}×{b['size'][1]}) | {b['errors_per_image']:.1f} | "
                f"{b['errors_far_pct']:.1f} | {b['picks_far_pct']:.1f} | "
                f"{b['picks_background_pct']:.1f} | {b['fill_pct']:.1f} | "
                f"{b['negatives_background_pct']:.1f} | {b['pixels_background_pct']:.1f} |"
            )
    if {"ce", "contextrast"} <= set(d):
        lines += ["", *reading(d)]
    return "\n".join(lines) + "\n"


def train_command(cfg: TrainConfig) -> str:
    """The command that trains a diagnosed run: its source, whether it was trained here or
    loaded from an identical shipped run (data/reference/ moves with the regime study's choice)."""
    pa = f" --alpha {cfg.alpha} --warmup-steps {cfg.warmup_steps}" if cfg.loss != "ce" else ""
    return f"python -m ctx.train --loss {cfg.loss}{pa} (seed {cfg.seed})"


def main(out_dir: Path, runs_dir: Path, threads: int | None = None) -> dict:
    """Diagnose the default regime's CE and Contextrast runs of seed 0 (trained if missing,
    into runs_dir; with --threads 1 they train as the regime study's own seed-0 pair did)
    and write out_dir/diagnosis.json and diagnosis.md."""
    if threads:
        torch.set_num_threads(threads)
    # The setting the first tuned ablation chose on validation (results/ablation.md).
    specs = {
        "ce": regime_config("default", loss="ce"),
        "contextrast": regime_config("default", loss="contextrast", alpha=0.02, warmup_steps=3000),
    }
    models, sources = {}, {"test_scenes": 500}
    for name, cfg in specs.items():
        cfg.out, cfg.threads, cfg.progress = str(runs_dir / name), threads, False
        shipped = reference_dir() / name / "model.pt"
        if (
            name == "ce"
            and shipped.exists()
            and not config_mismatch(load_checkpoint(shipped)["config"], cfg)
        ):
            # The shipped CE reference is this very run (default regime, seed 0): no retraining.
            models[name] = load_model(shipped, "cpu")[0]
        else:
            train_or_load(cfg)
            models[name] = load_model(cfg.out, "cpu")[0]
        sources[name] = train_command(cfg)
    d = diagnose(models, specs["ce"])
    write(d, sources, out_dir)
    return d


def rewrite(out_dir: Path) -> dict:
    """diagnosis.md again from out_dir/diagnosis.json (`diagnose --report-only`), training and
    measuring nothing."""
    path = out_dir / "diagnosis.json"
    if not path.exists():
        raise FileNotFoundError(f"no {path}: run `python -m ctx.experiments diagnose` first")
    saved = read(path)
    write(saved["runs"], saved["sources"], out_dir)
    return saved["runs"]


def read(path: Path) -> dict:
    """A diagnosis.json, refused in one line if it is not what `write` writes."""
    return read_results(path, {"runs": dict, "sources": dict}, "python -m ctx.experiments diagnose")


def write(d: dict, sources: dict, out_dir: Path) -> None:
    """out_dir/diagnosis.json and diagnosis.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json({"sources": sources, "runs": d}, out_dir / "diagnosis.json")
    write_text(markdown(d, sources), out_dir / "diagnosis.md")
