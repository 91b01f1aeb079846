"""Validation mIoU of the cheaper Contextrast steps, paired by seed with the regime study's runs.

    python benchmarks/cheap_step.py train --option sampled --seed 0 --threads 1
    python benchmarks/cheap_step.py report     # results/cheap_step.json from the finished runs

Each run is the regime study's tuning run of the default regime at the setting its Rule 1 picked
(Contextrast, alpha 0.02, CE-only warm-up over the first half of 2,000 steps, scored on the
validation scenes: `Job.config` of ctx.experiments.regime_study), with only the option's fields
changed, so the pair differs in nothing else. The baseline rows are read from
results/regimes/tuning.json. The step-time ratios come from benchmarks/overhead.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ctx.experiments.regime_study import Job

ROOT = Path(__file__).resolve().parents[1]
# The opt-in options: TrainConfig fields that differ from the default run.
OPTIONS = {
    "sampled": {"embed_pixels": "sampled"},
    "embed16": {"embed_dim": 16},
}
BASE = Job("tune", "default", "contextrast", 0, alpha=0.02, warmup=0.5)
RESULTS = ROOT / "results" / "cheap_step.json"


def config(option: str, seed: int, runs_dir: Path, threads: int | None):
    """The baseline's TrainConfig for `seed` with only `option`'s fields changed."""
    job = dataclasses.replace(BASE, seed=seed)
    base = job.config(runs_dir, threads=threads, progress=False)
    return dataclasses.replace(
        base, **OPTIONS[option], out=str(runs_dir / "cheap_step" / f"{option}_seed{seed}")
    )


def train_one(option: str, seed: int, runs_dir: Path, threads: int | None) -> dict:
    from ctx.engine.loop import train_or_load

    result = train_or_load(config(option, seed, runs_dir, threads))
    last = result.history[-1]
    return {
        "option": option,
        "seed": seed,
        "val_miou": last["val"]["miou"],
        "val_boundary_miou": last["val"]["boundary_miou"],
        "train_cpu_seconds": last["train_cpu_seconds"],
        "steps": last["step"],
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("what", choices=("train", "report"))
    p.add_argument("--option", choices=list(OPTIONS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--runs", type=Path, default=ROOT / "runs")
    args = p.parse_args()
    if args.what == "train":
        print(json.dumps(train_one(args.option, args.seed, args.runs, args.threads)))


if __name__ == "__main__":
    main()
