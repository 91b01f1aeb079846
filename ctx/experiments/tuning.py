"""Validation tuning: Contextrast on a grid of settings (and CE once), scored on the validation
scenes only, appended to results/tuning.json. Choose settings here, report on test."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

from ctx.engine.config import TrainConfig, config_from_dict, validate_config
from ctx.engine.loop import train_or_load
from ctx.experiments.variants import VARIANTS
from ctx.io import read_results, write_json
from ctx.validation import field_types

_READ = {int: int, float: float, bool: lambda x: {"true": True, "false": False}[x.lower()]}


def parse_grid(items: list[str]) -> dict[str, list]:
    """`--grid` items `FIELD=V1,V2` -> {field: [values]}, each value read as the TrainConfig
    field's type (ints, numbers, true/false). Raises ValueError naming the item for a missing
    `=`, an unknown field (with the closest name), a list field, an empty or unreadable value."""
    types = field_types(TrainConfig)
    grid: dict[str, list] = {}
    for item in items:
        field, eq, values = item.partition("=")
        if not eq or not values:
            raise ValueError(f"--grid {item!r} must read FIELD=V1,V2 (e.g. alpha=0.1,0.02)")
        try:
            config_from_dict({field: None})  # an unknown field: names the closest one
        except ValueError as e:
            raise ValueError(f"--grid {item!r}: {e}") from None
        kind = types[field].kind
        if kind not in _READ:
            raise ValueError(f"--grid {field}: only number and true/false fields can be tuned")
        try:
            grid[field] = [_READ[kind](v) for v in values.split(",")]
        except (ValueError, KeyError):
            need = {int: "integers", float: "numbers", bool: "true or false"}[kind]
            raise ValueError(f"--grid {item!r}: {field} takes {need}") from None
    return grid


def tune(
    grid: dict[str, list], base: TrainConfig, results_dir: Path, runs_dir: Path, command: str
) -> dict:
    """Contextrast on a grid of settings (and CE once), scored on the VALIDATION scenes only;
    appends each run to results_dir/tuning.json. Choose settings here, report on test.
    Every setting of the grid is checked before the first run trains."""
    path = results_dir / "tuning.json"
    results = (
        read_results(path, {"runs": [dict]}, "python -m ctx.experiments tune")
        if path.exists()
        else {"command": command, "runs": []}
    )
    done = [(r["variant"], r["overrides"]) for r in results["runs"]]
    combos = [("ce", {})] + [
        ("contextrast", dict(zip(grid, values, strict=True)))
        for values in itertools.product(*grid.values())
    ]
    configs = []
    for variant, overrides in combos:
        name = "_".join(f"{k}{v}" for k, v in overrides.items()) or "default"
        cfg = dataclasses.replace(
            base,
            **VARIANTS[variant],
            **overrides,
            out=str(runs_dir / f"tune_{variant}_{name}_steps{base.max_steps}"),
        )
        configs.append(validate_config(cfg, lambda f: f"{f} (in --grid or its base)"))
    for (variant, overrides), cfg in zip(combos, configs, strict=True):
        if (variant, overrides) in done:
            continue
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
