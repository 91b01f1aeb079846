"""The README's prose quotes results; every quoted interval and every "before → after" pair
must be a copy of a line that a script wrote under results/ (no typed or stale figure)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"[+-]?\d+\.\d+"
INTERVAL = re.compile(rf"({NUMBER})(?: ± {NUMBER})? \[({NUMBER}), ({NUMBER})\]")
ARROW = re.compile(rf"({NUMBER}) → ({NUMBER}) %")


def numbers(text: str) -> set[str]:
    """The decimal numbers in `text`, signed, with a leading + dropped and − read as -."""
    return {n.lstrip("+") for n in re.findall(NUMBER, text.replace("−", "-"))}


def quoted(pattern: re.Pattern, text: str) -> list[tuple[str, ...]]:
    """Each match of `pattern` in `text` as its groups, normalised as by `numbers`."""
    return [
        tuple(g.lstrip("+") for g in m.groups()) for m in pattern.finditer(text.replace("−", "-"))
    ]


def written_lines() -> list[set[str]]:
    """The numbers of every line of every report the scripts write under results/."""
    return [
        numbers(line)
        for path in sorted((ROOT / "results").rglob("*.md"))
        for line in path.read_text().splitlines()
    ]


def test_numbers_reads_signs_and_unicode_minus():
    assert numbers("+0.47 [−0.06, +1.10] and 80.12 %") == {"0.47", "-0.06", "1.10", "80.12"}
    assert quoted(INTERVAL, "+0.59 ± 0.33 [−0.24, +1.42]") == [("0.59", "-0.24", "1.42")]


@pytest.mark.parametrize("pattern", [INTERVAL, ARROW], ids=["interval", "arrow"])
def test_every_quoted_figure_is_on_one_line_a_script_wrote(pattern):
    lines = written_lines()
    quotes = quoted(pattern, (ROOT / "README.md").read_text())
    assert quotes, "the README quotes no such figure: the pattern no longer matches its prose"
    stale = [q for q in quotes if not any(set(q) <= line for line in lines)]
    assert not stale, f"README figures found on no line of results/**/*.md: {stale}"
