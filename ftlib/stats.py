"""Statistics over seeds, in one place: the sample standard deviation, Student-t intervals for any number of seeds,
paired differences with their interval, a verdict word for an interval, McNemar's exact test on paired counts, and an
accuracy's standard error and Wilson interval on n items, and the range of counts a blind guesser scores.

Standard library only (no scipy): Student's t quantile is found exactly by bisection on its distribution function,
written with the regularized incomplete beta function.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist, fmean, stdev

__all__ = ["Paired", "chance_range", "interval", "mcnemar_exact", "paired_differences", "proportion_interval",
           "sample_std", "standard_error", "t_quantile", "verdict"]


def _check_values(values: Sequence[float], name: str, least: int) -> list[float]:
    values = list(values)
    if len(values) < least:
        raise ValueError(f"{name} has {len(values)} value(s); give at least {least}")
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ValueError(f"{name} must hold finite numbers, got {values!r}")
    return [float(v) for v in values]


def _check_level(level: float) -> None:
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise ValueError(f"level={level!r} is not allowed: give a confidence level between 0 and 1 (e.g. 0.95)")


def sample_std(values: Sequence[float]) -> float:
    """The sample standard deviation (n - 1 in the denominator) of at least two finite values."""
    return stdev(_check_values(values, "values", 2))


def _incomplete_beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz's method)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 10_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            if numerator == 0.0:  # a whole-number b ends the fraction: it is exact here
                return fraction
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
            if abs(c * d - 1.0) < 1e-16:
                return fraction
    return fraction


def _regularized_beta(a: float, b: float, x: float, y: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and x + y = 1 (both given, so that
    neither loses digits to the subtraction)."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    if x < (a + 1) / (a + b + 2):  # where the fraction converges fast; otherwise use I_x(a, b) = 1 - I_y(b, a)
        return math.exp(log_front) * _incomplete_beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _incomplete_beta_fraction(b, a, y) / b


def _t_upper_tail(t: float, df: int) -> float:
    """P(T > t) for t >= 0 under Student's t with ``df`` degrees of freedom: I_x(df/2, 1/2) / 2, x = df/(df+t²)."""
    return _regularized_beta(df / 2, 0.5, df / (df + t * t), t * t / (df + t * t)) / 2


def t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile of Student's t with ``df`` degrees of freedom (e.g. 0.975, 2 -> 4.303).

    Exact to about 1e-12 (relative): bisection on t of the upper tail P(T > t) = I_x(df/2, 1/2) / 2.
    """
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"df={df!r} is not allowed: give a whole number of degrees of freedom, 1 or more")
    if isinstance(probability, bool) or not isinstance(probability, numbers.Real) or not 0 < probability < 1:
        raise ValueError(f"probability={probability!r} is not allowed: give a number between 0 and 1")
    if probability == 0.5:
        return 0.0
    tail = min(probability, 1 - probability)  # P(T > |t|), the same for both signs
    low, high = 0.0, 1.0
    while _t_upper_tail(high, df) > tail:  # the tail shrinks as t grows: bracket the quantile
        low, high = high, 2 * high
    while high - low > 1e-15 * high:
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if _t_upper_tail(middle, df) > tail else (low, middle)
    t = (low + high) / 2
    return t if probability > 0.5 else -t


def interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean of ``values`` (e.g. per-seed differences) and the half-width of its ``level`` confidence interval
    (Student's t with n - 1 degrees of freedom, the sample standard deviation; any n >= 2).

    A mean smaller than the half-width is inside the seed-to-seed spread: not resolved by these seeds. One value
    alone gives an infinite half-width.
    """
    _check_level(level)
    values = _check_values(values, "values", 1)
    if len(values) < 2:
        return values[0], math.inf
    error = stdev(values) / math.sqrt(len(values))
    return fmean(values), t_quantile((1 + level) / 2, len(values) - 1) * error


@dataclass(frozen=True)
class Paired:
    """Per-pair differences ``first - second``, their mean and the half-width of its confidence interval."""

    differences: tuple[float, ...]
    mean: float
    half: float

    @property
    def resolved(self) -> bool:
        """Whether the interval leaves out zero (the mean lies farther from zero than the half-width)."""
        return abs(self.mean) > self.half


def paired_differences(first: Sequence[float], second: Sequence[float], level: float = 0.95) -> Paired:
    """Pair ``first`` and ``second`` in order (e.g. by seed): the differences, their mean and its :func:`interval`."""
    first, second = _check_values(first, "first", 1), _check_values(second, "second", 1)
    if len(first) != len(second):
        raise ValueError(f"first has {len(first)} values but second has {len(second)}; pair them one to one")
    differences = tuple(a - b for a, b in zip(first, second))
    mean, half = interval(differences, level)
    return Paired(differences, mean, half)


def verdict(differences: Sequence[float], above: str = "helps", below: str = "hurts",
            unresolved: str = "not resolved at this scale", level: float = 0.95) -> tuple[float, float, str]:
    """:func:`interval` of per-seed differences and a word for it: ``above`` or ``below`` zero where the mean lies
    outside its half-width, else ``unresolved``."""
    mean, half = interval(differences, level)
    return mean, half, (above if mean > 0 else below) if abs(mean) > half else unresolved


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """McNemar's exact test on two models scored on the same items: the two-sided p-value of ``only_first`` items
    right for the first model alone against ``only_second`` for the second alone, under "either is as likely"
    (a binomial with p = 1/2 on the discordant items). Items both get right or both wrong carry no information."""
    for name, count in (("only_first", only_first), ("only_second", only_second)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{name}={count!r} is not allowed: give a count of items, a whole number 0 or more")
    n, fewer = only_first + only_second, min(only_first, only_second)
    if 2 * fewer == n:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(fewer + 1)) / 2 ** n)


def standard_error(proportion: float, n: int) -> float:
    """The standard error of an accuracy ``proportion`` measured on ``n`` items: sqrt(p (1 - p) / n)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} is not allowed: give the number of items scored, a whole number 1 or more")
    if not 0 <= proportion <= 1:
        raise ValueError(f"proportion={proportion!r} is not allowed: give a share from 0 to 1")
    return math.sqrt(proportion * (1 - proportion) / n)


def proportion_interval(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's ``level`` interval ``(low, high)`` for an accuracy of ``correct`` of ``n`` items: where the true
    accuracy lies, given how few items measured it (sound for small ``n`` and for 0 or ``n`` correct)."""
    _check_level(level)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} is not allowed: give the number of items scored, a whole number 1 or more")
    if isinstance(correct, bool) or not isinstance(correct, int) or not 0 <= correct <= n:
        raise ValueError(f"correct={correct!r} is not allowed: give a whole number from 0 to n={n}")
    z = NormalDist().inv_cdf((1 + level) / 2)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def chance_range(n: int, chance: float, level: float = 0.95) -> tuple[int, int]:
    """The counts ``(low, high)`` a blind guesser right with probability ``chance`` on each of ``n`` items scores
    ``level`` of the time: the binomial's central range (each tail outside it holds at most ``(1 - level) / 2``)."""
    _check_level(level)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} is not allowed: give the number of items scored, a whole number 1 or more")
    if not 0 < chance < 1:
        raise ValueError(f"chance={chance!r} is not allowed: give a probability strictly between 0 and 1")
    tail = (1 - level) / 2
    mass = [math.comb(n, k) * chance ** k * (1 - chance) ** (n - k) for k in range(n + 1)]
    low = next(k for k in range(n + 1) if sum(mass[:k + 1]) > tail)
    high = next(k for k in range(n, -1, -1) if sum(mass[k:]) > tail)
    return low, high
