"""The training command line; the engine behind it is ctx.engine (config, step, loop, checkpoints).

    python -m ctx.train --loss ce --out runs/ce
    python -m ctx.train --loss contextrast --negatives bane --out runs/contextrast
    python -m ctx.train --regime scarce --loss ce --out runs/ce_scarce   # a named regime
    torchrun --nproc_per_node=2 -m ctx.train --device cpu ...      # data-parallel (DDP)

Checkpoints and histories are written atomically to `--out`; running the same command again
resumes where it stopped (or just loads a finished run), and a resumed run continues exactly as
an uninterrupted one would. Every bad setting is one `error:` line naming the flag and its fix.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import torch.distributed as dist

from ctx.engine.config import RULES, TrainConfig, config_from_dict, validate_config
from ctx.engine.interrupt import Interrupted
from ctx.engine.loop import train
from ctx.experiments.regimes import REGIMES
from ctx.validation import (
    NO_RULE,
    ConfigError,
    OneLineParser,
    field_types,
    inert_fields,
    one_line,
)


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _default_text(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m ctx.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="JSON object of TrainConfig fields; flags override it (default: none)",
    )
    p.add_argument(
        "--regime",
        choices=list(REGIMES),
        help="start from a named digit-scene regime of the regime study "
        "(ctx/experiments/regimes.py); --config and flags override it (default: none)",
    )
    types = field_types(TrainConfig)
    for f in fields(TrainConfig):
        rule, ftype = RULES.get(f.name, NO_RULE), types[f.name]
        extra = f"; choices: {', '.join(rule.choices)}" if rule.choices else ""
        help_ = f"{rule.help} (default: {_default_text(f.default)}{extra})".replace("%", "%%")
        kw = {"default": argparse.SUPPRESS, "help": help_}
        if ftype.kind is bool:
            p.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, **kw)
        elif ftype.kind is tuple:
            metavar = "X" if ftype.elem is float else "N"
            p.add_argument(_flag(f.name), type=ftype.elem, nargs="+", metavar=metavar, **kw)
        elif rule.choices:
            p.add_argument(_flag(f.name), choices=rule.choices, **kw)
        else:
            metavar = {int: "N", float: "X"}.get(ftype.kind, "TEXT")
            p.add_argument(_flag(f.name), type=ftype.kind, metavar=metavar, **kw)
    return p


def _read_config_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {path} is a folder, not a JSON file") from None
    except OSError as e:
        raise ConfigError(f"--config {path} can't be read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path} is not a text file: give a JSON file") from None
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"--config {path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"--config {path} must hold a JSON object of TrainConfig fields, got a "
            f"{type(data).__name__}"
        )
    try:
        config_from_dict(data)  # unknown keys; the values are checked with the flags
    except ConfigError as e:
        raise ConfigError(f"--config {path}: {e}") from None
    return data


def _parse(argv: list[str] | None) -> tuple[TrainConfig, set[str], Callable[[str], str]]:
    """(config, the fields the user set, how to name a field in a message: by where its value
    came from, a flag, the --config file, the --regime or the default)."""
    args = vars(_parser().parse_args(argv))
    path, regime = args.pop("config", None), args.pop("regime", None)
    preset = REGIMES[regime].overrides if regime else {}
    base = _read_config_file(path) if path else {}
    cfg = config_from_dict({**preset, **base, **args})

    def name(field: str) -> str:
        if field in args:
            return _flag(field)
        if field in base:
            return f"{field} (in {path})"
        if field in preset:
            return f"{field} (from --regime {regime})"
        if getattr(cfg, field) is None:
            return _flag(field)  # unset: no value to come from anywhere
        return f"{_flag(field)} (default)"

    return validate_config(cfg, name), set(preset) | set(base) | set(args), name


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """CLI flags (and an optional --config JSON) -> a checked TrainConfig (ConfigError if bad)."""
    return _parse(argv)[0]


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """The CLI: every bad setting or file is one `error: ...` line (exit 2 for settings, 1 for
    what only shows at run time); Ctrl-C prints one line (exit 130)."""
    try:
        cfg, given, name = _parse(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if rank0:
        for field, why in inert_fields(cfg, RULES, given):
            flag = name(field)
            if getattr(cfg, field) is False and flag.startswith("--"):
                flag = "--no-" + flag[2:]  # as the user typed it
            print(f"warning: {flag} does nothing here: {why}", file=sys.stderr)
    warnings.showwarning = _one_line_warning
    try:
        result = train(cfg)
    except Interrupted as e:
        if rank0:
            print(e, file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        if rank0:
            print("interrupted before training started: nothing was saved", file=sys.stderr)
        sys.exit(130)
    except (ValueError, OSError, FloatingPointError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(1)
    if rank0:
        last = result.history[-1]["val"] if result.history else {}
        print(json.dumps({"checkpoint": str(result.checkpoint), **last}))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
