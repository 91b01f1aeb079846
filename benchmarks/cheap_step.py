"""Validation mIoU of the cheaper Contextrast steps, paired by seed with the regime study's runs.

    python benchmarks/cheap_step.py train --option sampled --seed 0 --threads 1
    python benchmarks/cheap_step.py report --overhead FILE --breakdown FILE
        # results/cheap_step.json from the finished runs and the two benchmarks' saved output;
        # prints the markdown table of results/cheap_step.md

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
import statistics
from pathlib import Path

from ctx.experiments.regime_study import Job
from ctx.io import read_json, write_json
from ctx.validation import OneLineParser

ROOT = Path(__file__).resolve().parents[1]
# The opt-in options: TrainConfig fields that differ from the default run.
OPTIONS = {
    "sampled": {"embed_pixels": "sampled"},
    "embed16": {"embed_dim": 16},
    "sampled_embed16": {"embed_pixels": "sampled", "embed_dim": 16},
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
    """Train (or load) one run and add its row to results/cheap_step.json."""
    from ctx.engine.loop import train_or_load
    from ctx.io import locked

    result = train_or_load(config(option, seed, runs_dir, threads))
    last = result.history[-1]
    row = {
        "option": option,
        "seed": seed,
        "val_miou": last["val"]["miou"],
        "val_boundary_miou": last["val"]["boundary_miou"],
        "train_cpu_seconds": last["train_cpu_seconds"],
        "steps": last["step"],
        "fields": OPTIONS[option],
    }
    with locked(RESULTS):
        data = _load()
        data["runs"] = [r for r in data["runs"] if (r["option"], r["seed"]) != (option, seed)]
        write_json({**data, "runs": [*data["runs"], row]}, RESULTS)
    return row


def _load() -> dict:
    return read_json(RESULTS) if RESULTS.exists() else {"runs": []}


def baseline_rows(tuning: Path = ROOT / "results" / "regimes" / "tuning.json") -> dict[int, dict]:
    """The regime study's runs the options are paired with, by seed."""
    return {
        r["seed"]: r
        for r in read_json(tuning)["runs"]
        if (r["regime"], r["variant"], r["alpha"], r["warmup"])
        == (BASE.regime, BASE.variant, BASE.alpha, BASE.warmup)
    }


def paired(runs: list[dict], base: dict[int, dict]) -> dict[str, dict]:
    """Per option: validation mIoU differences option - baseline, by seed, and their mean."""
    out = {}
    for option in OPTIONS:
        rows = {r["seed"]: r for r in runs if r["option"] == option and r["seed"] in base}
        if rows:
            diffs = {s: rows[s]["val_miou"] - base[s]["val_miou"] for s in sorted(rows)}
            out[option] = {"diffs": diffs, "mean": statistics.mean(diffs.values())}
    return out


def verdict(diffs: list[float]) -> str:
    """What n paired differences can say: the mean against the spread of the differences."""
    mean = statistics.mean(diffs)
    if len(diffs) < 2:
        return f"{mean:+.2f} points from one seed: no estimate of the noise, no conclusion"
    spread = max(diffs) - min(diffs)
    size = "within" if abs(mean) <= spread else "outside"
    return (
        f"mean {mean:+.2f} points over {len(diffs)} seeds, {size} the spread of the paired "
        f"differences themselves ({spread:.2f} points): {len(diffs)} seeds are a small sample, "
        f"so this {'shows no detectable effect' if size == 'within' else 'is a hint, not a finding'}"
    )


def report(overhead: Path | None, breakdown: Path | None) -> str:
    """Rewrite results/cheap_step.json (and return the markdown tables) from the runs' rows and
    the last JSON lines of benchmarks/overhead.py and benchmarks/step_breakdown.py."""
    data = _load()
    for key, path in (("overhead", overhead), ("breakdown", breakdown)):
        if path is not None:
            data[key] = json.loads(path.read_text().strip().splitlines()[-1])
    base = baseline_rows()
    data["paired"] = paired(data["runs"], base)
    write_json(data, RESULTS)
    o = data.get("overhead", {})
    lines = ["| step | time ÷ CE | peak memory ÷ CE | validation mIoU − baseline, by seed |"]
    lines.append("|---|---|---|---|")
    lines.append(
        f"| Contextrast (default) | ×{o.get('step_time_ratio', float('nan')):.2f} | "
        f"×{o.get('peak_memory_ratio', float('nan')):.2f} | (baseline: "
        + ", ".join(f"seed {s} {r['val_miou']:.2f} %" for s, r in sorted(base.items()))
        + ") |"
    )
    for option in OPTIONS:
        pr = data["paired"].get(option)
        diffs = (
            ", ".join(f"seed {s}: {d:+.2f}" for s, d in pr["diffs"].items()) if pr else "not run"
        )
        lines.append(
            f"| {option} | ×{o.get(f'{option}_step_time_ratio', float('nan')):.2f} | "
            f"×{o.get(f'{option}_peak_memory_ratio', float('nan')):.2f} | {diffs} |"
        )
    for option, pr in data["paired"].items():
        lines.append(f"\n{option}: {verdict(list(pr['diffs'].values()))}.")
    return "\n".join(lines)


def main() -> None:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("train", "report"))
    p.add_argument("--option", choices=list(OPTIONS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--runs", type=Path, default=ROOT / "runs")
    p.add_argument("--overhead", type=Path, help="saved output of benchmarks/overhead.py")
    p.add_argument("--breakdown", type=Path, help="saved output of benchmarks/step_breakdown.py")
    args = p.parse_args()
    if args.what == "train":
        print(json.dumps(train_one(args.option, args.seed, args.runs, args.threads)))
    else:
        print(report(args.overhead, args.breakdown))


if __name__ == "__main__":
    main()
