"""The order-statistic interval of a quantile against SciPy's ``quantile_test`` (the
reference implementation, used in the tests only)."""

import math
import random

import pytest

from edgefarm.shared.stats import quantile_ci
from edgefarm.shared.stats.quantiles import binomial_ranks

stats = pytest.importorskip("scipy.stats")
np = pytest.importorskip("numpy")


@pytest.mark.parametrize("n", [1, 5, 6, 7, 10, 31, 100, 1001, 20000])
@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_bounds_are_scipys_order_statistics(n, q, confidence):
    rng = np.random.default_rng(n)
    samples = rng.lognormal(size=n)
    ours = quantile_ci(samples.tolist(), q=q, confidence=confidence)
    theirs = stats.quantile_test(samples, q=0, p=q).confidence_interval(confidence)
    for mine, reference in ((ours.low, theirs.low), (ours.high, theirs.high)):
        if math.isnan(reference):
            assert mine is None
        else:
            assert mine == reference
    assert ours.estimate == pytest.approx(float(np.percentile(samples, q * 100)), abs=1e-12)


def test_worked_example_median_of_eleven():
    # n = 11, 95%: the interval of the median is [x(2), x(10)] in 1-based ranks
    # (P(K <= 1) = 0.0059 < 0.025 <= P(K <= 2) = 0.0327), the textbook answer.
    assert binomial_ranks(11, 0.5, 0.95) == (1, 9)


def test_the_interval_covers_the_median_at_least_as_often_as_promised():
    rng = random.Random(7)
    covered = 0
    trials = 400
    for _ in range(trials):
        samples = [rng.expovariate(1.0) for _ in range(40)]
        interval = quantile_ci(samples)
        covered += interval.low <= math.log(2) <= interval.high
    assert covered / trials >= 0.93


def test_half_width_ratio_is_relative_to_the_estimate():
    interval = quantile_ci([float(v) for v in range(90, 111)])
    assert interval.estimate == 100.0
    ratio = interval.half_width_ratio()
    assert ratio == pytest.approx(max(100 - interval.low, interval.high - 100) / 100)
    assert 0 < ratio < 0.1


def test_no_sample_is_an_error():
    with pytest.raises(ValueError):
        quantile_ci([])
