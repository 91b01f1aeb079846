"""The statistics both study reports use (ablation_report, regime_report): mean ± std over
seeds, and differences to a baseline paired by seed with a two-sided t-interval. Pairing by seed
removes the seed-to-seed spread both runs share (same initial weights and batches)."""

from __future__ import annotations

import math
import statistics


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of `values` (the std is NaN for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def paired_diffs(a: dict[int, float], b: dict[int, float]) -> list[float]:
    """a[s] - b[s] for every seed s in both (seed -> value maps), in seed order."""
    return [a[s] - b[s] for s in sorted(a) if s in b]


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """The two-sided `level` t-interval (lo, hi) of the mean of `values` (NaN for one value)."""
    mean, sd = mean_std(values)
    half = math.nan
    if len(values) > 1:
        from scipy.stats import t

        half = float(t.ppf(0.5 + level / 2, len(values) - 1)) * sd / math.sqrt(len(values))
    return mean - half, mean + half


def pm(mean: float, std: float, fmt: str = ".2f") -> str:
    """ "mean ± std" (just the mean when std is NaN)."""
    return f"{mean:{fmt}}" + ("" if std != std else f" ± {std:.2f}")
