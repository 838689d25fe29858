"""Intervals and paired tests of proportions (top-1/top-5 accuracy), pure Python.

* ``wilson``: the Wilson score interval of ``successes / n`` (Wilson 1927), the interval
  with close-to-nominal coverage even near 0 or 1 and for small n, where the textbook
  normal (Wald) interval fails.
* ``mcnemar_exact``: McNemar's exact test of two classifiers on the same samples: under
  "no difference" each of the ``b + c`` discordant samples (right in one result, wrong in
  the other) is equally likely to favour either, so ``b ~ Binomial(b + c, 1/2)`` and the
  two-sided p-value is ``min(1, 2 * P(X <= min(b, c)))`` (SciPy's ``binomtest(b, b + c)``).
* ``paired_difference``: the accuracy difference of two flag sets with the interval that
  matches McNemar's exact test: the Clopper-Pearson interval of the share of discordant
  samples that favour the new result, scaled to the difference ``(c - b) / n``. It excludes
  zero exactly when the exact test rejects at ``1 - confidence``.

Binomial tails are summed in log space (``lgamma``), so n of a million costs milliseconds.
"""

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Optional, Sequence

from .quantiles import Interval


def normal_quantile(confidence: float) -> float:
    """The two-sided standard normal critical value (1.96 at 0.95)."""
    _check_confidence(confidence)
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson(successes: float, n: int, confidence: float = 0.95) -> Interval:
    """The proportion ``successes / n`` with its Wilson score interval."""
    if n < 1:
        raise ValueError("a proportion needs at least one trial")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in 0..{n}, not {successes}")
    z = normal_quantile(confidence)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(estimate=p, low=max(0.0, centre - half), high=min(1.0, centre + half),
                    confidence=confidence, method="Wilson score")


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    head = math.lgamma(n + 1)
    terms = [head - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
             for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact p-value of McNemar's test: ``b`` samples right only in the first
    result, ``c`` right only in the second."""
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be non-negative")
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * binomial_cdf(min(b, c), n, 0.5))


def clopper_pearson(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """The exact (Clopper-Pearson) interval of a proportion, by bisection on the binomial
    tails."""
    if n < 1:
        raise ValueError("a proportion needs at least one trial")
    _check_confidence(confidence)
    alpha = (1.0 - confidence) / 2.0
    low = 0.0 if successes == 0 else _bisect(
        lambda p: 1.0 - binomial_cdf(successes - 1, n, p) >= alpha)
    high = 1.0 if successes == n else 1.0 - _bisect(
        lambda q: binomial_cdf(successes, n, 1.0 - q) >= alpha)
    return Interval(estimate=successes / n, low=low, high=high, confidence=confidence,
                    method="Clopper-Pearson")


def _bisect(reached) -> float:
    """The smallest p in (0, 1) with ``reached(p)`` true (``reached`` is monotone)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        if reached(mid):
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2.0


@dataclass(frozen=True)
class PairedCounts:
    """Two flag sets over the same samples: ``b`` right only in base, ``c`` right only in
    new, ``n`` samples."""

    n: int
    base_correct: int
    new_correct: int
    b: int
    c: int


def paired_counts(base: Sequence[bool], new: Sequence[bool]) -> PairedCounts:
    if len(base) != len(new):
        raise ValueError(f"paired flag sets differ in length: {len(base)} and {len(new)}")
    b = sum(1 for x, y in zip(base, new) if x and not y)
    c = sum(1 for x, y in zip(base, new) if y and not x)
    return PairedCounts(n=len(base), base_correct=sum(1 for x in base if x),
                        new_correct=sum(1 for y in new if y), b=b, c=c)


def paired_difference(counts: PairedCounts, confidence: float = 0.95) -> Interval:
    """``new - base`` accuracy with the interval of McNemar's exact test (module docstring)."""
    if counts.n < 1:
        raise ValueError("a paired difference needs at least one sample")
    discordant = counts.b + counts.c
    estimate = (counts.c - counts.b) / counts.n
    if discordant == 0:
        return Interval(estimate=0.0, low=0.0, high=0.0, confidence=confidence,
                        method="McNemar exact (no discordant samples)")
    share = clopper_pearson(counts.c, discordant, confidence)
    scale = discordant / counts.n
    low: Optional[float] = scale * (2.0 * share.low - 1.0) if share.low is not None else None
    high: Optional[float] = scale * (2.0 * share.high - 1.0) if share.high is not None else None
    return Interval(estimate=estimate, low=low, high=high, confidence=confidence,
                    method="McNemar exact (Clopper-Pearson on discordant samples)")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError("the confidence level must be strictly between 0 and 1")
