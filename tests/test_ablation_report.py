"""The ablation report: per-variant summaries, the paired column, the figure."""

import pytest

from ctx.experiments import ablation_report


def test_summarise_pairs_differences_by_seed():
    runs = [
        {
            "variant": v,
            "seed": s,
            "miou": m,
            "boundary_miou": m - 3,
            "steps": 10,
            "train_seconds": 60,
        }
        for v, s, m in [
            ("ce", 0, 70.0),
            ("ce", 1, 80.0),
            ("contextrast", 0, 71.0),
            ("contextrast", 1, 83.0),
            ("contextrast", 2, 50.0),  # no ce seed 2: left out of the pairing
            ("ccl", 1, 79.0),
        ]
    ]
    rows = {r["variant"]: r for r in ablation_report.summarise(runs)}
    assert rows["ce"]["paired"] is None and rows["ce"]["miou"] == (75.0, pytest.approx(50**0.5))
    mean, std, n = rows["contextrast"]["paired"]
    assert (mean, n) == (2.0, 2) and std == pytest.approx(2**0.5)  # diffs +1, +3
    assert rows["ccl"]["paired"][0] == -1.0 and rows["ccl"]["paired"][2] == 1
    assert rows["contextrast"]["minutes"] == 1.0


def test_report_writes_the_paired_column(tmp_path):
    runs = [
        {"variant": v, "seed": s, "miou": m, "boundary_miou": m, "steps": 10, "train_seconds": 6}
        for v, s, m in [("ce", 0, 70.0), ("ce", 1, 80.0), ("bane", 0, 71.0), ("bane", 1, 83.0)]
    ]
    ablation_report.report({"runs": runs, "command": "C", "dataset": {"test_scenes": 5}}, tmp_path)
    table = (tmp_path / "ablation.md").read_text()
    # diffs +1, +3: mean 2, sd √2, t(0.975, 1) = 12.706: half-width 12.706 · √2 / √2
    assert (
        "| `bane` | PA loss, BANE negatives, no fusion | 2 | 77.00 ± 8.49 | +2.00 ± 1.41 | "
        "[-10.71, +14.71] |" in table
    )
    assert (tmp_path / "ablation.png").stat().st_size > 0
