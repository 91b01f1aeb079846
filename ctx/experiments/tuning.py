"""Validation tuning: Contextrast on a grid of settings (and CE once), scored on the validation
scenes only, appended to results/tuning.json. Choose settings here, report on test."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

from ctx.engine.config import TrainConfig
from ctx.engine.loop import train_or_load
from ctx.experiments.variants import VARIANTS
from ctx.io import read_json, write_json


def tune(
    grid: dict[str, list], base: TrainConfig, results_dir: Path, runs_dir: Path, command: str
) -> dict:
    """Contextrast on a grid of settings (and CE once), scored on the VALIDATION scenes only;
    appends each run to results_dir/tuning.json. Choose settings here, report on test."""
    path = results_dir / "tuning.json"
    results = read_json(path) if path.exists() else {"command": command, "runs": []}
    done = [(r["variant"], r["overrides"]) for r in results["runs"]]
    combos = [("ce", {})] + [
        ("contextrast", dict(zip(grid, values, strict=True)))
        for values in itertools.product(*grid.values())
    ]
    for variant, overrides in combos:
        if (variant, overrides) in done:
            continue
        name = "_".join(f"{k}{v}" for k, v in overrides.items()) or "default"
        cfg = dataclasses.replace(
            base,
            **VARIANTS[variant],
            **overrides,
            out=str(runs_dir / f"tune_{variant}_{name}_steps{base.max_steps}"),
        )
        last = train_or_load(cfg).history[-1]
        results["runs"].append(
            {
                "variant": variant,
                "overrides": overrides,
                "steps": last["step"],
                "val_miou": last["val"]["miou"],
                "val_boundary_miou": last["val"]["boundary_miou"],
                "train_seconds": last["train_seconds"],
            }
        )
        write_json(results, path)
        print(f"tune {variant} {overrides}: val mIoU {last['val']['miou']:.2f} %", flush=True)
    return results
