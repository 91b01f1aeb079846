"""The README's table of METHOD.md's [choice]s names parameters and flags that exist."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import ctx.anchors
import ctx.losses
import ctx.model
import ctx.negatives
from ctx.train import _parser

README = Path(__file__).resolve().parents[1] / "README.md"


def choices_table() -> list[str]:
    text = README.read_text()
    lines = text[text.index("| METHOD.md's choice |") :].splitlines()
    end = next(i for i, line in enumerate(lines) if not line.startswith("|"))
    return lines[2:end]  # without the header and its rule


def test_every_named_parameter_and_flag_exists():
    rows = choices_table()
    assert len(rows) >= 10
    owners = {
        name: obj
        for module in (ctx.anchors, ctx.losses, ctx.model, ctx.negatives)
        for name, obj in vars(module).items()
        if callable(obj)
    }
    flags = {opt for action in _parser()._actions for opt in action.option_strings}
    calls = flags_seen = 0
    for row in rows:
        where = row.split("|")[3]
        for owner, param in re.findall(r"`(\w+)\((\w+)=", where):
            assert param in inspect.signature(owners[owner]).parameters, (owner, param)
            calls += 1
        for flag in re.findall(r"--[\w-]+", where):
            assert flag in flags, flag
            flags_seen += 1
    assert calls >= 8 and flags_seen >= 5
