"""Adaptive repetition: ``target_ci`` in the latency protocol (``edgefarm.agent.clock``)
and the re-measurement of throttled or noisy measurements, recorded as attempts
(``edgefarm.agent.repetition``), on a fake sysfs tree."""

import math
from typing import List

import pytest

from edgefarm.agent import clock
from edgefarm.agent.clock import BenchResult, Protocol, benchmark, benchmark_batch
from edgefarm.agent.repetition import RepetitionConfig, measure
from edgefarm.agent.runtimes.base import BatchRun
from edgefarm.agent.stats import coefficient_of_variation, latency_stats
from edgefarm.agent.thermal import ThermalConfig
from edgefarm.shared.contract.schemas import Repetition
from edgefarm.shared.stats import quantile_ci
from tests.support.sysfs import FakeSysfs
from tests.unit.test_clock import FakeRuntime


def fast(**overrides) -> Protocol:
    values = dict(warmup_runs=1, warmup_seconds=0.0, measured_runs=20, min_seconds=0.0, max_seconds=30.0)
    values.update(overrides)
    return Protocol(**values)


def ratio(samples: List[float]) -> float:
    return quantile_ci(samples, 0.5, 0.95).half_width_ratio()


def test_a_reachable_target_stops_the_measurement_at_the_target():
    result = benchmark(FakeRuntime(invoke_s=0.002), [], fast(target_ci=0.25))
    assert result.stopped_by == "target"
    assert result.achieved_ci == ratio(result.samples_ms) <= 0.25
    assert result.stats["count"] == len(result.samples_ms) >= 20


def test_an_unreachable_target_runs_until_max_seconds_and_says_so():
    result = benchmark(FakeRuntime(invoke_s=0.001), [], fast(target_ci=1e-9, max_seconds=0.3))
    assert result.stopped_by == "max_seconds" and result.wall_seconds >= 0.3
    assert result.stats["count"] > 20
    assert result.achieved_ci == ratio(result.samples_ms) > 1e-9


def test_the_interval_is_checked_at_geometric_checkpoints(monkeypatch):
    checks = []
    real = clock.p50_half_width_ratio
    monkeypatch.setattr(clock, "p50_half_width_ratio", lambda s: checks.append(len(s)) or real(s))
    result = benchmark(FakeRuntime(), [], fast(target_ci=1e-9, max_seconds=0.3, max_runs=None))
    count = result.stats["count"]
    # an instant invoke: many runs in 0.3 s (1,000s alone; 643 once beside the other test
    # worker), enough for several checkpoints past the 20 measured runs
    assert count > 200
    assert len(checks) <= math.log(count / 20) / math.log(clock.CHECKPOINT_GROWTH) + 3
    assert all(b >= a * clock.CHECKPOINT_GROWTH for a, b in zip(checks[:-2], checks[1:-1]))


def test_without_a_target_nothing_changes():
    result = benchmark(FakeRuntime(), [], fast())
    assert result.stopped_by == "measured_runs" and result.achieved_ci is None
    assert result.stats["count"] == 20


class BatchFake(FakeRuntime):
    """A batch runtime whose times alternate 10 and 10 + spread ms."""

    timing = "batch"

    def __init__(self, spread: float):
        super().__init__()
        self.spread, self.batches = spread, 0

    def run_batch(self, batch, keep_outputs=True):
        self.batches += 1
        times = [10.0 + (self.spread if i % 2 else 0.0) for i in range(len(batch))]
        return BatchRun(outputs=[], latencies_ms=times)


def test_batches_are_added_until_the_target_or_max_seconds():
    steady = BatchFake(spread=0.0)
    bench, _, details = benchmark_batch(steady, [], fast(measured_runs=10, target_ci=0.01))
    assert (steady.batches, bench.stopped_by, bench.achieved_ci) == (1, "target", 0.0)
    noisy = BatchFake(spread=5.0)
    bench, _, details = benchmark_batch(noisy, [], fast(measured_runs=10, target_ci=0.01, max_seconds=0.05))
    assert noisy.batches > 1 and bench.stopped_by == "max_seconds"
    assert len(bench.samples_ms) == 10 * noisy.batches and bench.achieved_ci == ratio(bench.samples_ms)
    assert f"{noisy.batches} batches of 12 inferences" in details["latency_protocol"]


# ---------------------------------------------------------------- attempts


def bench_of(samples: List[float], stopped_by: str = "measured_runs") -> BenchResult:
    return BenchResult(first_inference_ms=1.0, warmup_count=1, samples_ms=samples,
                       stats=latency_stats(samples), wall_seconds=0.1, stopped_by=stopped_by,
                       achieved_ci=ratio(samples))


QUIET = [10.0, 10.1, 10.0, 10.1, 10.05, 10.0, 10.1, 10.0]
NOISY = [10.0, 14.0, 9.0, 15.0, 10.0, 13.0, 9.5, 16.0]


def test_a_throttled_measurement_is_measured_again_once_after_a_cool_down(tmp_path):
    sysfs = FakeSysfs(tmp_path)
    thermal = ThermalConfig(sysfs_root=str(tmp_path), vcgencmd="", cooldown_seconds=30.0,
                            sample_interval_seconds=0.005)
    calls, sleeps = [], []

    def latency():
        calls.append(len(calls))
        if len(calls) == 1:  # the frequency drops during the first measurement
            sysfs.set_freq([1000000, 1000000])
        return bench_of(NOISY if len(calls) == 1 else QUIET), None, {}

    def sleep(seconds):
        sleeps.append(seconds)
        sysfs.set_freq([1500000, 1500000])  # cooled down: full speed again

    measured = measure(latency, fast(), thermal, RepetitionConfig(), rerun_throttled=True, sleep=sleep)
    assert len(calls) == 2 and sleeps == [30.0]
    assert measured.bench.samples_ms == QUIET and measured.throttled is False
    assert measured.gating["ready"] is True and measured.trace[0]["freq_khz"] == [1500000, 1500000]
    repetition = Repetition.model_validate(measured.repetition)
    assert repetition.target_ci is None and repetition.met is None and len(repetition.attempts) == 1
    attempt = repetition.attempts[0]
    assert attempt.throttled is True and attempt.count == len(NOISY)
    assert attempt.p50 == latency_stats(NOISY)["p50"]
    assert attempt.cv == pytest.approx(coefficient_of_variation(latency_stats(NOISY)))
    assert attempt.reason == ("throttled: the fastest core fell from 1500000 to 1000000 kHz (more than "
                              "10% below its start); measured again after a 30 s cool-down")


def test_a_throttled_measurement_is_kept_and_flagged_when_the_job_does_not_ask(tmp_path):
    sysfs = FakeSysfs(tmp_path)
    thermal = ThermalConfig(sysfs_root=str(tmp_path), vcgencmd="")

    def latency():
        sysfs.set_freq([1000000, 1000000])
        return bench_of(QUIET), None, {}

    measured = measure(latency, fast(), thermal, RepetitionConfig(), rerun_throttled=False)
    assert measured.throttled is True and measured.repetition is None


@pytest.mark.parametrize("series, attempts", [([NOISY, QUIET], 1), ([NOISY, NOISY, NOISY], 2)])
def test_a_high_coefficient_of_variation_is_measured_again_a_bounded_number_of_times(series, attempts):
    calls = []

    def latency():
        calls.append(1)
        return bench_of(series[len(calls) - 1], stopped_by="max_seconds"), None, {}

    measured = measure(latency, fast(target_ci=0.01), ThermalConfig(enabled=False),
                       RepetitionConfig(cv_threshold=0.035, cv_reruns=2))
    assert len(calls) == len(series) and measured.bench.samples_ms == series[-1]
    repetition = Repetition.model_validate(measured.repetition)
    assert len(repetition.attempts) == attempts
    assert repetition.attempts[0].reason.startswith("coefficient of variation ")
    assert repetition.attempts[0].reason.endswith("% above 3.50%")
    assert repetition.stopped_by == "max_seconds" and repetition.achieved_ci == ratio(series[-1])
    assert repetition.met is (ratio(series[-1]) <= 0.01)  # the quiet one met it at the end


def test_without_target_ci_a_noisy_measurement_is_not_repeated():
    calls = []

    def latency():
        calls.append(1)
        return bench_of(NOISY), None, {}

    measured = measure(latency, fast(), ThermalConfig(enabled=False), RepetitionConfig())
    assert len(calls) == 1 and measured.repetition is None and measured.gating is None


@pytest.mark.parametrize("table, message", [
    ({"cv_reruns": 11}, "cv_reruns"), ({"cv_threshold": 0}, "cv_threshold"), ({"cv": 1}, "unknown keys cv"),
])
def test_bad_repetition_settings_are_refused(table, message):
    with pytest.raises(ValueError, match=message):
        RepetitionConfig.from_dict(table)


def test_the_kept_measurement_decides_whether_the_run_was_throttled():
    from edgefarm.agent.execute import _environment
    from edgefarm.agent.repetition import Measured

    delta = {"throttled": True, "throttled_flags": "0x50000", "temp_c_before": 50.0}  # since boot
    kept = Measured(bench_of(QUIET), None, {}, gating={"ready": True}, trace=[{"t": 0, "temp_c": 50.0}],
                    throttled=False)
    env = _environment(dict(delta), kept)
    assert env.throttled is False and env.gating.ready is True and env.trace[0].temp_c == 50.0
    assert _environment(dict(delta), Measured(bench_of(QUIET), None, {})).throttled is True  # no gate
