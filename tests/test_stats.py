"""The studies' statistics: mean ± std, differences paired by seed, the t-interval (vs scipy)."""

import math

import pytest
from scipy import stats as scipy_stats

from ctx.experiments import stats


def test_mean_std_of_one_value_has_no_std():
    assert stats.mean_std([2.0, 4.0]) == (3.0, pytest.approx(2**0.5))
    mean, std = stats.mean_std([5.0])
    assert mean == 5.0 and math.isnan(std)


def test_paired_diffs_keep_only_shared_seeds_in_seed_order():
    assert stats.paired_diffs({2: 5.0, 0: 1.0, 3: 9.0}, {0: 0.5, 2: 4.0}) == [0.5, 1.0]


def test_t_interval_matches_scipy():
    values = [1.0, 3.0, 2.5, -0.5]
    lo, hi = stats.t_interval(values)
    want = scipy_stats.t.interval(
        0.95, len(values) - 1, loc=sum(values) / 4, scale=scipy_stats.sem(values)
    )
    assert (lo, hi) == pytest.approx(want)
    assert all(math.isnan(x) for x in stats.t_interval([1.0]))


def test_pm_drops_a_missing_std():
    assert stats.pm(2.0, 0.5, "+.2f") == "+2.00 ± 0.50"
    assert stats.pm(2.0, math.nan) == "2.00"
