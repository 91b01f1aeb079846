"""The ablation: variants x seeds, resumable, appending to results/ablation.json.

Each run trains with `ctx.engine.loop.train_or_load` into runs/ablation/<variant>_seed<k>/ (so a
killed run resumes), is evaluated on the frozen test scenes, and is appended atomically to the
results file. At every epoch the run also snapshots its per-stage class anchors on a fixed probe
set of validation scenes (ctx.experiments.recorder, for notebook 05).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from ctx.engine.config import TrainConfig
from ctx.engine.loop import train_or_load
from ctx.experiments.ablation_report import REMAKE, SHAPE, report
from ctx.experiments.recorder import AnchorRecorder
from ctx.experiments.variants import ALL_VARIANTS, DESCRIPTIONS, VARIANTS, evaluate_on_test
from ctx.io import locked, read_results, write_json
from ctx.reference import ROOT

DEFAULT_SEEDS = [0, 1, 2]
DEFAULT_RUNS = ROOT / "runs" / "ablation"
QUICK = {
    "image_size": 32,
    "train_scenes": 64,
    "val_scenes": 16,
    "max_steps": 8,
    "batch_size": 8,
    "widths": (8, 8, 16, 16),
    "embed_dim": 8,
}


def run_config(
    variant: str, seed: int, base: TrainConfig, runs_dir: Path, steps: int | None = None
) -> TrainConfig:
    """The TrainConfig of one ablation run."""
    spec = VARIANTS["ce"] if variant == "ce_time" else VARIANTS[variant]
    return dataclasses.replace(
        base,
        **spec,
        seed=seed,
        max_steps=steps or base.max_steps,
        out=str(runs_dir / f"{variant}_seed{seed}"),
    )


def run_one(
    variant: str,
    seed: int,
    base: TrainConfig,
    runs_dir: Path,
    test_scenes: int | None,
    steps: int | None = None,
) -> dict:
    """Train (or resume) one run, evaluate it on the test scenes, return its results row."""
    cfg = run_config(variant, seed, base, runs_dir, steps)
    recorder = AnchorRecorder(cfg, Path(cfg.out) / "anchors.pt")
    result = train_or_load(cfg, on_epoch_end=recorder)
    metrics = evaluate_on_test(result.model, cfg, test_scenes)
    last = result.history[-1]
    return {
        "variant": variant,
        "seed": seed,
        "steps": last["step"],
        "miou": metrics["miou"],
        "boundary_miou": metrics["boundary_miou"],
        "pixel_acc": metrics["pixel_acc"],
        "per_class_iou": metrics["per_class_iou"],
        "val_miou": last["val"]["miou"],
        "train_seconds": last["train_seconds"],
    }


def ce_time_steps(runs: list[dict], steps: int) -> int | None:
    """Steps that give CE the wall time contextrast took, once both exist.

    Per variant the *fastest* seconds per step over its seeds: other jobs on a shared machine
    only ever add time (two contextrast seeds that ran beside a profiler took 1.2x as long as
    the others), so the minimum is the cleanest estimate of what each step costs."""
    t = {
        v: [r["train_seconds"] / r["steps"] for r in runs if r["variant"] == v]
        for v in ("ce", "contextrast")
    }
    if not t["ce"] or not t["contextrast"]:
        return None
    return round(steps * min(t["contextrast"]) / min(t["ce"]))


def file_command(prefix: str, runs: list[dict]) -> str:
    """The command that reproduces a results file holding `runs`: `prefix` (the settings) plus
    the variants and seeds actually in the file, so runs made by several workers (each with its
    own --variants/--seeds) are described by one command."""
    variants = [v for v in ALL_VARIANTS if any(r["variant"] == v for r in runs)]
    seeds = sorted({r["seed"] for r in runs})
    parts = [prefix]
    if variants != ALL_VARIANTS:
        parts.append("--variants " + " ".join(variants))
    if seeds != DEFAULT_SEEDS:
        parts.append("--seeds " + " ".join(map(str, seeds)))
    return " ".join(parts)


def ablation(
    variants: list[str],
    seeds: list[int],
    base: TrainConfig,
    results_dir: Path,
    runs_dir: Path,
    command: str,
    test_scenes: int | None = None,
) -> dict:
    """Run every missing (variant, seed), appending each to results_dir/ablation.json.

    `command` is the invocation without --variants/--seeds. Several processes may share one
    results file (e.g. one per core, each with its own --seeds): the file is re-read and
    rewritten under a lock around each run, and a run another process already finished is skipped.
    """
    path = results_dir / "ablation.json"
    config = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in dataclasses.asdict(base).items()
        if k not in {"out", "device", "progress", "threads", "num_workers", "seed"}
    }
    header = {
        "config": config,
        "variants": DESCRIPTIONS,
        "dataset": {
            "name": "digit scenes",
            "image_size": base.image_size,
            "train_scenes": base.train_scenes,
            "val_scenes": base.val_scenes,
            "test_scenes": test_scenes or 500,
            "digits_per_class": {"train": 350, "val": 75, "test": 75},
        },
    }

    def load() -> dict:
        results = read_results(path, SHAPE, REMAKE) if path.exists() else {"runs": []}
        if results["runs"] and results.get("config") != config:
            raise ValueError(
                f"{path} holds runs made with other settings; use another --results-dir "
                f"or move that file away"
            )
        return results

    def save(new_runs: list[dict]) -> dict:
        """Append `new_runs` to the file as it is now (other workers may have added theirs)."""
        with locked(path):
            results = load()
            results["runs"].extend(new_runs)
            results.update(header, command=file_command(command, results["runs"]))
            write_json(results, path)
        return results

    load()  # refuse other settings before training anything
    for seed in seeds:
        for variant in variants:
            with locked(path):
                results = load()
            if any((r["variant"], r["seed"]) == (variant, seed) for r in results["runs"]):
                continue
            steps = None
            if variant == "ce_time":
                steps = ce_time_steps(results["runs"], base.max_steps)
                if steps is None:
                    print(
                        "ce_time needs finished ce and contextrast runs first; skipped",
                        file=sys.stderr,
                    )
                    continue
            row = run_one(variant, seed, base, runs_dir, test_scenes, steps)
            save([row])
            print(f"{variant} seed {seed}: test mIoU {row['miou']:.2f} %", flush=True)
    results = save([])
    report(results, results_dir)
    return results
