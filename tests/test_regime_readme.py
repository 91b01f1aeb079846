"""The README's map of the regime study is written by the report, between two markers."""

from test_regime_study import _ce_finals, _full_grid, _steps, _tuning_rows

from ctx.experiments import regime_report
from ctx.experiments.regime_report import README_MARKERS, readme_block, update_readme


def test_update_readme_replaces_only_the_marked_block(tmp_path):
    begin, end = README_MARKERS
    path = tmp_path / "README.md"
    path.write_text(f"# T\n\nbefore\n{begin}\nold table\n{end}\nafter\n")
    assert update_readme(path, "| new |")
    assert path.read_text() == f"# T\n\nbefore\n{begin}\n| new |\n{end}\nafter\n"
    assert update_readme(path, "| new |")  # idempotent
    assert path.read_text().count("| new |") == 1
    plain = tmp_path / "OTHER.md"
    plain.write_text("no markers\n")
    assert not update_readme(plain, "| new |") and plain.read_text() == "no markers\n"


def test_readme_block_reads_settings_and_paired_test_differences():
    tuning = _steps(_tuning_rows("scarce", {0: 60.0, 1: 62.0}, _full_grid(63.0)), 2000)
    runs = _ce_finals("scarce", [70.0, 72.0, 71.0, 69.0, 73.0])
    ce = [{**r, "steps": 6000, "train_seconds": 900.0, "train_cpu_seconds": 600.0} for r in runs]
    cx = [{**r, "variant": "contextrast", "miou": r["miou"] + 1.5} for r in ce]
    cx[0]["miou"] += 1.0  # diffs 2.5, 1.5, 1.5, 1.5, 1.5: mean 1.7
    text = readme_block(tuning, ce + cx, None, "not decided yet")
    row = next(line for line in text.splitlines() if line.startswith("| scarce |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "α = 0.02, w = 0"  # all settings tie: the smaller alpha, no warm-up
    assert cells[2] == "+2.00" and cells[3] == "71.00" and cells[4] == "72.70"
    assert cells[5].startswith("+1.70 [") and cells[5].endswith("(n=5)")
    assert cells[6] == f"{100 * 1.7 / 29:+.1f} %"
    default_row = next(line for line in text.splitlines() if line.startswith("| default |"))
    assert "tuning: 0 of 14 runs" in default_row
    assert "**not decided yet**" in text
    assert "| variant |" not in text  # the default's table only once Rule 2 has chosen
    chosen = readme_block(tuning, ce + cx, "scarce", "")
    assert "| `contextrast` | 5 |" in chosen
    assert "| `ce` | 5 | 71.00 | – | 6000 | 10.0 |" in chosen  # CPU minutes, not wall


def test_report_writes_the_readme_next_to_results(tmp_path, monkeypatch):
    begin, end = README_MARKERS
    (tmp_path / "README.md").write_text(f"{begin}\n{end}\n")
    results = tmp_path / "results"
    (results / "regimes").mkdir(parents=True)
    regime_report.write_report(results, "python -m ctx.experiments regimes")
    text = (tmp_path / "README.md").read_text()
    assert "| default | tuning: 0 of 14 runs |" in text and "phase 1 incomplete" in text


def test_rule_2_says_which_gate_it_waits_for():
    from ctx.experiments.regime_report import rule_2_waits_for

    tuning = _tuning_rows("default", {0: 70.0, 1: 70.0}, _full_grid(70.0))
    tuning += _tuning_rows("scarce", {0: 60.0, 1: 60.0}, _full_grid(62.0))
    names = ["crowded", "crowded_scarce"]
    tuning += [r for n in names for r in _tuning_rows(n, {0: 50.0, 1: 50.0}, _full_grid(51.0))]
    tuning = _steps(tuning, 2000)
    assert rule_2_waits_for(tuning[:-1], []) == "phase 1 incomplete"
    assert rule_2_waits_for(tuning, _ce_finals("scarce", [65] * 2)) == (
        "the quality gate of `scarce`: 2 of its 5 final CE runs are in"
    )


def test_readme_block_shows_the_seed_count_of_a_partial_mean():
    tuning = _steps(_tuning_rows("scarce", {0: 60.0, 1: 62.0}, _full_grid(63.0)), 2000)
    text = readme_block(tuning, _ce_finals("scarce", [64.0, 61.0]), None, "")
    row = next(line for line in text.splitlines() if line.startswith("| scarce |"))
    assert "| 62.50 (2) | – |" in row


def test_target_reading_decides_only_on_all_five_pairs():
    from ctx.experiments.regime_report import target_reading

    ce = _ce_finals("scarce", [70.0, 72.0, 71.0, 69.0, 73.0])  # CE mean 71: 29 points of error
    cx = [{**r, "variant": "contextrast", "miou": r["miou"] + 1.5} for r in ce]
    cx[0]["miou"] += 1.0  # diffs 2.5, 1.5, 1.5, 1.5, 1.5: mean +1.7, interval above 0
    assert "not decided yet, 2 of 5 pairs in" in target_reading(ce + cx[:2], "scarce")
    text = target_reading(ce + cx, "scarce")
    assert "**met**" in text and "+1.70 [" in text
    assert f"cuts {100 * 1.7 / 29:.1f} % of CE's remaining error (< 17 %)" in text
    assert "`ccl` waits for its runs (0 of 5)" in text
    ccl = [{**r, "variant": "ccl", "miou": r["miou"] + 0.5} for r in cx]  # ahead of Contextrast
    ce_time = [{**r, "variant": "ce_time", "miou": r["miou"] + 0.1} for r in ce]
    text = target_reading(ce + cx + ccl + ce_time, "scarce")
    assert "not ahead of `ccl` (73.20; Contextrast − `ccl` = -0.50 [-0.50, -0.50] (n=5))" in text
    assert "ahead of `ce_time` (71.10; Contextrast − `ce_time` = +1.60 [" in text
    small = [{**r, "miou": r["miou"] - 1.0} for r in cx]  # mean +0.7: short of +1.0
    assert "**missed**" in target_reading(ce + small, "scarce")
    noisy = [{**r, "miou": r["miou"] + d} for r, d in zip(cx, [8.0, -6.0, 0, 0, 0], strict=True)]
    assert "**missed**" in target_reading(ce + noisy, "scarce")  # mean +1.9, interval spans 0


def test_readme_study_prose_quotes_only_numbers_the_results_files_hold():
    """The hand-written paragraphs around the report's block (README's Results, up to the
    ablation) may quote a result only as the results files state it: every 2-decimal number is
    some number of results/*.md or a shipped manifest, rounded; every paired interval is one
    that results/regimes.md or an ablation report prints. Catches a paragraph left behind when the results move."""
    import re

    from ctx.resources import project_root

    root = project_root()
    readme = (root / "README.md").read_text().replace("−", "-")
    prose = readme[readme.index("## Results") : readme.index("### The ablation")]
    files = [*(root / "results").rglob("*.md"), *(root / "data").rglob("manifest.json")]
    source = " ".join(p.read_text() for p in files).replace("−", "-")
    held = [float(x) for x in re.findall(r"[+-]?\d+\.\d+", source)]
    quoted = set(re.findall(r"(?<![\d.])[+-]?\d+\.\d{2}(?!\d)", prose))
    assert len(quoted) > 20  # the section was found and quotes results
    stray = [q for q in quoted if not any(abs(round(h, 2) - float(q)) < 1e-9 for h in held)]
    assert not stray, f"README quotes numbers no results file holds: {sorted(stray)}"
    interval = r"[+-]\d+\.\d{2} \[[+-]\d+\.\d{2}, [+-]\d+\.\d{2}\]"
    report = (root / "results" / "regimes.md").read_text()
    # the ablation reports print "Δ ± std | [lo, hi]": the same interval, quoted "Δ [lo, hi]"
    row = r"\| ([+-]\d+\.\d{2}) ± [\d.]+(?: \(\d+ seeds\))? \| (\[[^]]+\])"
    ablations = [p.read_text() for p in (root / "results").rglob("ablation.md")]
    report += " ".join(f"{m} {i}" for text in ablations for m, i in re.findall(row, text))
    assert not [i for i in set(re.findall(interval, prose)) if i not in report]
