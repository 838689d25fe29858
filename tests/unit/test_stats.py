"""edgefarm.agent.stats: latency statistics against numpy and hand-computed values."""

import math

import numpy as np
import pytest

from edgefarm.agent.stats import coefficient_of_variation, latency_stats, percentiles
from edgefarm.shared.contract.schemas import LatencyStats

KNOWN = [12.0, 10.0, 11.0, 15.0, 10.5, 30.0, 9.5, 10.0, 11.5, 13.0]


def test_percentiles_match_numpy_linear_interpolation():
    stats = latency_stats(KNOWN)
    for name, point in (("p50", 50), ("p90", 90), ("p99", 99)):
        assert stats[name] == pytest.approx(float(np.percentile(KNOWN, point)))
    # by hand: sorted 9.5 10 10 10.5 11 11.5 12 13 15 30; p50 = (11 + 11.5) / 2
    assert stats["p50"] == pytest.approx(11.25)
    # p90: rank 0.9 * 9 = 8.1 -> 15 + 0.1 * (30 - 15)
    assert stats["p90"] == pytest.approx(16.5)


def test_mean_min_max_count_and_samples_in_run_order():
    stats = latency_stats(KNOWN)
    assert stats["count"] == 10
    assert stats["mean"] == pytest.approx(sum(KNOWN) / 10)
    assert stats["min"] == 9.5 and stats["max"] == 30.0
    assert stats["samples"] == KNOWN


def test_std_is_the_population_standard_deviation():
    stats = latency_stats([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert stats["std"] == pytest.approx(2.0)  # the textbook population example; sample std is 2.14
    assert latency_stats(KNOWN)["std"] == pytest.approx(float(np.std(KNOWN, ddof=0)))


def test_single_sample():
    stats = latency_stats([42.5])
    assert stats["count"] == 1
    assert stats["std"] == 0.0
    assert stats["min"] == stats["max"] == stats["p50"] == stats["p90"] == stats["p99"] == 42.5


def test_keep_samples_false_drops_only_the_samples():
    stats = latency_stats(KNOWN, keep_samples=False)
    assert stats["samples"] == []
    assert stats["count"] == 10 and stats["p90"] == pytest.approx(16.5)


def test_result_is_a_valid_wire_latency_stats():
    parsed = LatencyStats(**latency_stats(KNOWN))
    assert parsed.p99 == pytest.approx(float(np.percentile(KNOWN, 99)))
    assert all(isinstance(v, float) for v in parsed.samples)


def test_accepts_any_sequence_of_numbers():
    assert latency_stats((1, 2, 3))["mean"] == pytest.approx(2.0)
    assert latency_stats(np.array([1.0, 3.0]))["p50"] == pytest.approx(2.0)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")]])
def test_refuses_empty_or_non_finite_samples(bad):
    with pytest.raises(ValueError):
        latency_stats(bad)


def test_percentiles_helper_and_coefficient_of_variation():
    assert percentiles([1.0, 2.0, 3.0, 4.0], [0, 25, 100]) == pytest.approx([1.0, 1.75, 4.0])
    stats = latency_stats([9.0, 11.0])
    assert coefficient_of_variation(stats) == pytest.approx(0.1)
    assert math.isinf(coefficient_of_variation({"mean": 0.0, "std": 0.0}))
