"""Distribution-free confidence intervals of quantiles from order statistics.

For n independent samples of a continuous distribution, the number K of samples below its
q-quantile is Binomial(n, q). With ``a = (1 - confidence) / 2``, the interval
``[x(l), x(u)]`` of the sorted samples with

* ``l`` = the smallest k with P(K <= k) >= a, minus one (0-based index), and
* ``u`` = the smallest k with P(K > k) <= a (0-based index),

covers the quantile with probability at least ``confidence``, whatever the distribution.
These are the indices of SciPy's ``quantile_test(...).confidence_interval()`` (two-sided),
which the unit tests compare with. When n is too small for the level (for the median at 95%,
n < 6) a bound does not exist and is None.

The binomial distribution is summed in log space over a window of +-12 standard deviations
around its mean (the mass outside is below 1e-30), so an interval over 100,000 samples
costs a few hundred ``lgamma`` calls plus the sort.
"""

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple


@dataclass(frozen=True)
class Interval:
    """``estimate`` with its ``[low, high]`` interval at ``confidence``; a bound is None when
    the data cannot give it (too few samples)."""

    estimate: float
    low: Optional[float]
    high: Optional[float]
    confidence: float
    method: str

    def half_width_ratio(self) -> Optional[float]:
        """The larger distance from the estimate to a bound, relative to the estimate (the
        ``target_ci`` measure: 0.01 = within +-1%); None without both bounds or at 0."""
        if self.low is None or self.high is None or self.estimate == 0:
            return None
        return max(self.estimate - self.low, self.high - self.estimate) / abs(self.estimate)

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high,
                "confidence": self.confidence, "method": self.method}


def _log_pmf(n: int, p: float, k: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p))


def binomial_ranks(n: int, q: float, confidence: float) -> Tuple[Optional[int], Optional[int]]:
    """0-based indices (low, high) of the order statistics bounding the q-quantile of n
    samples at ``confidence``; None where the bound does not exist."""
    if n < 1:
        raise ValueError("a quantile interval needs at least one sample")
    if not 0.0 < q < 1.0:
        raise ValueError("the quantile must be strictly between 0 and 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError("the confidence level must be strictly between 0 and 1")
    alpha = (1.0 - confidence) / 2.0
    sd = math.sqrt(n * q * (1.0 - q))
    first = max(0, int(n * q - 12 * sd) - 1)
    last = min(n, int(n * q + 12 * sd) + 2)
    cdf: List[float] = []
    total = 0.0
    for k in range(first, last + 1):
        total += math.exp(_log_pmf(n, q, k))
        cdf.append(total)
    # ppf(alpha): smallest k with cdf(k) >= alpha
    ppf = next((first + i for i, c in enumerate(cdf) if c >= alpha), last)
    # isf(alpha): smallest k with 1 - cdf(k) <= alpha
    isf = next((first + i for i, c in enumerate(cdf) if 1.0 - c <= alpha), last)
    low = ppf - 1
    high = isf
    return (low if low >= 0 else None), (high if high < n else None)


def quantile_ci(samples: Sequence[float], q: float = 0.5, confidence: float = 0.95,
                presorted: bool = False) -> Interval:
    """The q-quantile of ``samples`` (linear interpolation, numpy's default, as the reported
    p50/p90/p99) with its order-statistic interval at ``confidence``."""
    ordered = list(samples) if presorted else sorted(samples)
    n = len(ordered)
    if n == 0:
        raise ValueError("a quantile interval needs at least one sample")
    position = q * (n - 1)
    below = int(math.floor(position))
    above = min(below + 1, n - 1)
    estimate = ordered[below] + (ordered[above] - ordered[below]) * (position - below)
    low, high = binomial_ranks(n, q, confidence)
    return Interval(estimate=float(estimate),
                    low=None if low is None else float(ordered[low]),
                    high=None if high is None else float(ordered[high]),
                    confidence=confidence, method="order statistics (binomial)")
