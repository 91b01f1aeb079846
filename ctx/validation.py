"""Configuration checks from a table: one `Rule` per field (type from the annotation; range,
choices, the fix to suggest, when the setting does nothing), plus a few checks that tie fields
together. A bad setting fails before any data are made or a model is built, with one line that
names the setting and says what to do. `ctx.engine.config` holds the table for `TrainConfig`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn


class ConfigError(ValueError):
    """A setting that cannot work; the message names it and the fix."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line that points to `--help`, not the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} ({self.prog} --help lists the flags)\n")


def one_line(error: BaseException) -> str:
    """`error`'s message for a CLI's one `error:` line. An error raised in a DataLoader worker
    reaches the main process with the worker's whole traceback in its message (torch's
    ExceptionWrapper: "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback
    ..."): keep only the error's own message and where it was caught."""
    text = str(error)
    head, found, rest = text.partition("\nOriginal Traceback")
    if not found:
        return text
    lines = rest.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(f"{type(error).__name__}:")]
    message = " ".join(lines[starts[-1] :]).split(": ", 1)[1] if starts else lines[-1]
    where = head.removeprefix(f"Caught {type(error).__name__} ").rstrip(".")
    return f"{message} ({where})"


@dataclass(frozen=True)
class FieldType:
    """What a dataclass annotation allows: `kind` int/float/str/bool/tuple, `elem` for tuples."""

    kind: type
    elem: type | None = None
    optional: bool = False

    @classmethod
    def of(cls, annotation: Any) -> FieldType:
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
        parts = [p.strip() for p in str(text).split("|")]
        optional = "None" in parts
        base = next(p for p in parts if p != "None")
        if base.startswith("tuple"):
            return cls(tuple, float if "float" in base else int, optional)
        kinds = {"int": int, "float": float, "str": str, "bool": bool}
        if base not in kinds:
            raise TypeError(f"no FieldType for the annotation {text!r}")
        return cls(kinds[base], None, optional)


@dataclass(frozen=True)
class Rule:
    """How one field may be set. Numbers: `ge`/`gt`/`le`/`lt` bounds (tuples: on each element);
    `choices` for strings; `fix` is appended to an error; `inert(cfg)` returns why the field does
    nothing in that config (None when it acts); `help` is the one line of `--help`."""

    help: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] = ()
    fix: str = ""
    inert: Callable[[Any], str | None] | None = None

    def bounds(self) -> str:
        parts = [
            f"{op} {v}" if isinstance(v, int) else f"{op} {v:g}"
            for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if v is not None
        ]
        return " and ".join(parts)


NO_RULE = Rule("")


def _is(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind)


def _in_range(v: float, rule: Rule) -> bool:
    if isinstance(v, float) and not math.isfinite(v):
        return False
    return not (
        (rule.ge is not None and not v >= rule.ge)
        or (rule.gt is not None and not v > rule.gt)
        or (rule.le is not None and not v <= rule.le)
        or (rule.lt is not None and not v < rule.lt)
    )


def show(value: Any) -> str:
    """A value as a user would type it: tuples as lists, strings quoted."""
    if isinstance(value, tuple | list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


def plain_number(value: Any) -> Any:
    """A numpy or 0-dim torch number as the Python number it holds (np.int64(3) -> 3); tuples
    and lists element by element; anything else unchanged. Config dataclasses apply it to their
    fields, so a value from a numpy sweep is checked, and saved to JSON, like a typed one."""
    if isinstance(value, tuple | list):
        return type(value)(plain_number(v) for v in value)
    is_scalar = getattr(value, "ndim", None) == 0 and hasattr(value, "item")
    if is_scalar and not isinstance(value, bool | int | float | str):
        try:
            return value.item()
        except (RuntimeError, ValueError):  # e.g. a tensor on the meta device: no value
            return value
    return value


def plain_numbers(cfg: Any) -> None:
    """Replace every numpy or torch number among a dataclass's fields by its Python value
    (`plain_number`), in place, frozen dataclasses included."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        plain = plain_number(value)
        if plain is not value:
            object.__setattr__(cfg, f.name, plain)


def check_field(value: Any, ftype: FieldType, rule: Rule) -> str | None:
    """What is wrong with `value` ("must be ..., got ..."), or None."""
    if value is None and ftype.optional:
        return None
    names = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}
    if ftype.kind is tuple:
        kind = {int: "integers", float: "numbers"}[ftype.elem]
        need = f"a list of one or more {kind}" + (f" {rule.bounds()}" if rule.bounds() else "")
        ok = (
            isinstance(value, tuple | list)
            and len(value) > 0
            and all(_is(v, ftype.elem) and _in_range(v, rule) for v in value)
        )
    elif ftype.kind is str and rule.choices:
        need = "one of " + ", ".join(rule.choices)
        ok = value in rule.choices
    else:
        need = names[ftype.kind] + (f" {rule.bounds()}" if rule.bounds() else "")
        if ftype.kind is str:
            need = "a non-empty string"
        ok = _is(value, ftype.kind) and (
            _in_range(value, rule) if ftype.kind in (int, float) else value != ""
        )
    if ok:
        return None
    if ftype.optional:
        need += " (or unset)"
    return f"must be {need}, got {show(value)}" + (f" ({rule.fix})" if rule.fix else "")


Check = Callable[[Any, Callable[[str], str]], str | None]
"""A check across fields: (config, name) -> message or None; `name(field)` is how to call a
field in the message (a flag, a config-file key, or the field itself)."""


def field_types(cls: type) -> dict[str, FieldType]:
    return {f.name: FieldType.of(f.type) for f in dataclasses.fields(cls)}


def validate(
    cfg: Any,
    rules: Mapping[str, Rule],
    checks: tuple[Check, ...] = (),
    name: Callable[[str], str] = str,
) -> None:
    """Raise ConfigError for the first field that breaks its rule, then for the first failing
    cross-field check. A field without a rule gets its type checked (tests require a rule)."""
    types = field_types(type(cfg))
    for field, ftype in types.items():
        problem = check_field(getattr(cfg, field), ftype, rules.get(field, NO_RULE))
        if problem:
            raise ConfigError(f"{name(field)} {problem}")
    for check in checks:
        problem = check(cfg, name)
        if problem:
            raise ConfigError(problem)


def inert_fields(cfg: Any, rules: Mapping[str, Rule], given: set[str]) -> Iterator[tuple[str, str]]:
    """(field, why it does nothing) for each field in `given` that has no effect in `cfg`."""
    for field in sorted(given):
        rule = rules.get(field)
        reason = rule.inert(cfg) if rule and rule.inert else None
        if reason:
            yield field, reason
