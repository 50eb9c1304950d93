"""ftlib.stats against scipy and numpy (the reference implementations) at 2, 3, 6 and 12 seeds, and its errors."""

import math
import random

import numpy as np
import pytest
from scipy import stats as reference

from ftlib import stats

SEEDS = [2, 3, 6, 12]


def _values(n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed + n)
    return [rng.gauss(0.02, 0.03) for _ in range(n)]


@pytest.mark.parametrize("n", SEEDS)
def test_sample_std_is_numpys_with_one_degree_of_freedom_removed(n):
    values = _values(n)
    assert stats.sample_std(values) == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    assert stats.sample_std(values) > np.std(values)  # not the population std


@pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 11, 20, 30, 100, 1000])
@pytest.mark.parametrize("probability", [0.975, 0.95, 0.995, 0.9, 0.6, 0.025, 1e-6])
def test_t_quantile_is_scipys(probability, df):
    assert stats.t_quantile(probability, df) == pytest.approx(reference.t.ppf(probability, df), rel=1e-9)


def test_t_quantile_keeps_the_old_table_to_ten_degrees_of_freedom_and_is_wider_than_the_normal_after():
    old = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)  # lesson 02's table
    assert [round(stats.t_quantile(0.975, df), 3) for df in range(1, 11)] == list(old)
    assert stats.t_quantile(0.975, 11) == pytest.approx(2.201, abs=1e-3) and stats.t_quantile(0.975, 11) > 1.96
    assert stats.t_quantile(0.5, 4) == 0.0


@pytest.mark.parametrize("level", [0.95, 0.9, 0.99])
@pytest.mark.parametrize("n", SEEDS)
def test_interval_is_scipys_t_interval(n, level):
    values = _values(n)
    mean, half = stats.interval(values, level)
    low, high = reference.t.interval(level, n - 1, loc=np.mean(values), scale=reference.sem(values))
    assert mean == pytest.approx(np.mean(values), rel=1e-12, abs=1e-15)
    assert half == pytest.approx((high - low) / 2, rel=1e-9)


def test_interval_at_twelve_seeds_is_wider_than_the_normal_shortcut():
    values = _values(12)
    _, half = stats.interval(values)
    normal = 1.96 * np.std(values, ddof=1) / math.sqrt(12)
    assert half / normal == pytest.approx(reference.t.ppf(0.975, 11) / 1.96) and half / normal > 1.12


def test_one_value_gives_an_infinite_half_width():
    assert stats.interval([0.05]) == (0.05, math.inf)
    assert stats.verdict([0.05])[2] == "not resolved at this scale"  # one seed resolves nothing


@pytest.mark.parametrize("n", SEEDS)
def test_paired_differences_are_scipys_paired_t_interval(n):
    first, second = _values(n, 1), _values(n, 2)
    paired = stats.paired_differences(first, second)
    expected = np.subtract(first, second)
    assert paired.differences == pytest.approx(list(expected), rel=1e-12)
    assert paired.mean == pytest.approx(expected.mean(), rel=1e-12)
    interval = reference.ttest_rel(first, second).confidence_interval(0.95)
    assert paired.half == pytest.approx((interval.high - interval.low) / 2, rel=1e-9)
    assert paired.resolved == (interval.low > 0 or interval.high < 0)


def test_verdict_words_follow_the_interval():
    assert stats.verdict([0.10, 0.11, 0.12])[2] == "helps"  # the mean lies outside its 95% interval
    assert stats.verdict([-0.10, -0.11, -0.12], "higher", "lower")[2] == "lower"
    assert stats.verdict([0.10, -0.05, 0.02])[2] == "not resolved at this scale"
    mean, half, _ = stats.verdict([0.01, 0.02, 0.03])
    assert (mean, half) == stats.interval([0.01, 0.02, 0.03])


@pytest.mark.parametrize("n", SEEDS)
def test_verdict_agrees_with_scipys_one_sample_t_test(n):
    for seed in range(20):
        values = _values(n, seed)
        resolved = reference.ttest_1samp(values, 0).pvalue < 0.05
        assert (stats.verdict(values)[2] != "not resolved at this scale") == resolved


@pytest.mark.parametrize("only_first, only_second", [(0, 0), (1, 0), (5, 5), (9, 1), (20, 10), (10, 20), (3, 17),
                                                     (17, 7), (100, 70), (600, 500)])
def test_mcnemar_exact_is_scipys_two_sided_binomial_test(only_first, only_second):
    n = only_first + only_second
    expected = reference.binomtest(only_first, n, 0.5).pvalue if n else 1.0
    assert stats.mcnemar_exact(only_first, only_second) == pytest.approx(expected, rel=1e-12)
    fewer = min(only_first, only_second)
    assert stats.mcnemar_exact(only_first, only_second) == pytest.approx(min(1, 2 * reference.binom.cdf(fewer, n, 0.5)))


@pytest.mark.parametrize("call, name", [
    (lambda: stats.sample_std([0.1]), "values"),
    (lambda: stats.sample_std([0.1, math.nan]), "values"),
    (lambda: stats.interval([]), "values"),
    (lambda: stats.interval([0.1, 0.2], level=1.5), "level"),
    (lambda: stats.paired_differences([0.1, 0.2], [0.1]), "second"),
    (lambda: stats.paired_differences(["a"], [0.1]), "first"),
    (lambda: stats.t_quantile(0.975, 0), "df"),
    (lambda: stats.t_quantile(1.0, 3), "probability"),
    (lambda: stats.mcnemar_exact(-1, 3), "only_first"),
    (lambda: stats.mcnemar_exact(2, 1.5), "only_second"),
])
def test_bad_input_is_a_one_line_error_naming_it(call, name):
    with pytest.raises(ValueError, match=name) as error:
        call()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("n, chance", [(48, 1 / 8), (10, 0.5), (200, 0.1), (7, 0.9)])
def test_chance_range_is_scipys_central_binomial_range(n, chance):
    assert stats.chance_range(n, chance) == (int(reference.binom.ppf(0.025, n, chance)),
                                             int(reference.binom.isf(0.025, n, chance)))


@pytest.mark.parametrize("n, chance", [(0, 0.5), (True, 0.5), (10, 0.0), (10, 1.0), (10, -1)])
def test_chance_range_refuses_what_is_no_guesser(n, chance):
    with pytest.raises(ValueError, match="n=|chance="):
        stats.chance_range(n, chance)
