"""edgefarm.agent.clock: the latency protocol, what is timed, cancellation, load time."""

import ast
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import pytest

from edgefarm.agent import clock
from edgefarm.agent.clock import Protocol, benchmark, load_runtime
from edgefarm.agent.errors import Cancelled
from edgefarm.agent.runtimes.base import LoadOptions, Runtime
from edgefarm.shared.contract.schemas import RunSettings


class FakeRuntime(Runtime):
    """Counts calls; ``invoke`` sleeps ``invoke_s`` (the first one ``first_s`` when set)."""

    name = "fake"

    def __init__(self, invoke_s: float = 0.0, set_inputs_s: float = 0.0, first_s: Optional[float] = None,
                 load_s: float = 0.0):
        self.invoke_s, self.set_inputs_s, self.first_s, self.load_s = invoke_s, set_inputs_s, first_s, load_s
        self.invocations = 0
        self.set_inputs_calls: List[list] = []

    def load(self, model_path, options):
        time.sleep(self.load_s)

    def set_inputs(self, arrays):
        time.sleep(self.set_inputs_s)
        self.set_inputs_calls.append(list(arrays))

    def invoke(self):
        delay = self.first_s if self.invocations == 0 and self.first_s is not None else self.invoke_s
        self.invocations += 1
        if delay:
            time.sleep(delay)


def fast(**overrides) -> Protocol:
    """A protocol with no time minimums, so run counts decide."""
    values = dict(warmup_runs=1, warmup_seconds=0.0, measured_runs=50, min_seconds=0.0, max_seconds=30.0)
    values.update(overrides)
    return Protocol(**values)


def test_protocol_defaults_are_benchmark_models():
    protocol = Protocol()
    assert (protocol.warmup_runs, protocol.warmup_seconds) == (1, 0.5)
    assert (protocol.measured_runs, protocol.min_seconds, protocol.max_seconds) == (50, 1.0, 150.0)


def test_protocol_from_run_settings_and_from_a_partial_dict():
    settings = RunSettings(warmup_runs=3, measured_runs=7, min_seconds=0.25, max_seconds=9.0)
    assert Protocol.from_settings(settings) == Protocol(3, 0.5, 7, 0.25, 9.0)
    assert Protocol.from_settings({"measured_runs": 12}) == Protocol(measured_runs=12)


def test_fast_runs_stop_at_exactly_measured_runs_when_min_seconds_is_met():
    runtime = FakeRuntime()
    result = benchmark(runtime, [], fast(warmup_runs=4))
    assert len(result.samples_ms) == result.stats["count"] == 50
    assert result.warmup_count == 4
    assert runtime.invocations == 1 + 4 + 50  # first inference, warmup, measured


def test_measures_at_least_min_seconds_when_runs_are_few():
    runtime = FakeRuntime(invoke_s=0.001)
    result = benchmark(runtime, [], fast(measured_runs=5, min_seconds=0.3))
    assert len(result.samples_ms) > 5
    assert sum(result.samples_ms) >= 0.3 * 1000 * 0.9  # nearly all of the 0.3 s is inside invoke
    assert result.wall_seconds >= 0.3


def test_at_least_measured_runs_even_past_min_seconds():
    result = benchmark(FakeRuntime(invoke_s=0.005), [], fast(measured_runs=60, min_seconds=0.05))
    assert len(result.samples_ms) == 60


def test_max_seconds_caps_measurement_before_measured_runs():
    start = time.perf_counter()
    result = benchmark(FakeRuntime(invoke_s=0.02), [], fast(measured_runs=1000, max_seconds=0.2))
    assert 5 <= len(result.samples_ms) < 20
    assert time.perf_counter() - start < 2.0


def test_at_least_one_run_even_when_max_seconds_is_tiny():
    result = benchmark(FakeRuntime(invoke_s=0.01), [], fast(max_seconds=1e-9))
    assert len(result.samples_ms) == 1
    assert result.stats["count"] == 1


def test_many_fast_runs_keep_min_seconds_and_a_bounded_subsample():
    result = benchmark(FakeRuntime(), [], fast(min_seconds=1.0, max_runs=300))
    stats = result.stats
    assert result.wall_seconds >= 1.0  # min_seconds honoured, as benchmark_model does
    assert stats["count"] > 2 * 300 and result.samples_stride > 1
    assert 300 <= len(stats["samples"]) < 600
    assert len(stats["samples"]) == len(result.samples_ms)
    assert stats["min"] <= stats["p50"] <= stats["max"]

def test_warmup_lasts_at_least_warmup_seconds():
    result = benchmark(FakeRuntime(invoke_s=0.001), [], fast(warmup_runs=1, warmup_seconds=0.2))
    assert result.warmup_count > 20
    assert result.warmup_count * result.warmup_mean_ms >= 0.2 * 1000 * 0.9


def test_warmup_runs_at_least_warmup_runs():
    runtime = FakeRuntime()
    result = benchmark(runtime, [], fast(warmup_runs=7, warmup_seconds=0.0))
    assert result.warmup_count == 7


def test_only_invoke_is_timed_not_set_inputs():
    runtime = FakeRuntime(set_inputs_s=0.05)
    result = benchmark(runtime, [np.zeros(3)], fast())
    assert len(runtime.set_inputs_calls) == 1  # inputs are set once, before timing
    assert max(result.samples_ms) < 20.0
    assert result.first_inference_ms < 20.0
    assert result.wall_seconds >= 0.05  # the sleep did happen, just outside the timed region


def test_first_inference_is_reported_apart_from_the_samples():
    result = benchmark(FakeRuntime(first_s=0.06), [], fast())
    assert result.first_inference_ms >= 60.0
    assert max(result.samples_ms) < 30.0


def test_samples_measure_invoke_time():
    result = benchmark(FakeRuntime(invoke_s=0.004), [], fast(measured_runs=20))
    assert 4.0 <= result.stats["p50"] < 40.0
    assert result.stats["min"] >= 4.0


def test_should_stop_raises_cancelled_between_runs():
    runtime = FakeRuntime()
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 10

    with pytest.raises(Cancelled, match="cancelled"):
        benchmark(runtime, [], fast(measured_runs=1000), should_stop=should_stop)
    assert runtime.invocations == 10
    assert clock.Cancelled is Cancelled


def test_should_stop_false_lets_the_run_finish():
    result = benchmark(FakeRuntime(), [], fast(), should_stop=lambda: False)
    assert len(result.samples_ms) == 50


def test_progress_is_reported_with_phases_and_not_too_often(monkeypatch):
    monkeypatch.setattr(clock, "PROGRESS_INTERVAL_SECONDS", 0.05)
    reports = []
    result = benchmark(FakeRuntime(invoke_s=0.002), [], fast(warmup_seconds=0.2, min_seconds=0.3),
                       progress=lambda done, phase: reports.append((time.perf_counter(), done, phase)))
    phases = [phase for _, _, phase in reports]
    assert "warmup" in phases and "measure" in phases
    starts = {phase: done for _, done, phase in reversed(reports)}  # each phase's first report
    assert starts == {"first": 0, "warmup": 0, "measure": 0}  # a phase is reported as it starts
    gaps = [b[0] - a[0] for a, b in zip(reports, reports[1:]) if a[2] == b[2]]
    assert min(gaps) >= 0.05 * 0.95
    assert len(reports) <= result.wall_seconds / 0.05 + 3
    measured = [done for _, done, phase in reports if phase == "measure"]
    assert measured == sorted(measured)


def test_load_runtime_times_construction_and_load():
    class SlowLoad(FakeRuntime):
        def __init__(self):
            super().__init__(load_s=0.03)

    runtime, init_ms = load_runtime(SlowLoad, "model.tflite", LoadOptions())
    assert isinstance(runtime, SlowLoad)
    assert 30.0 <= init_ms < 1000.0


# ---------------------------------------------------------------- one clock module

CLOCK_CALLS = {"perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns"}


def clock_reads(path: Path) -> List[str]:
    """``file:line name`` of every use of a clock function in the file's code (not its text)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in CLOCK_CALLS:
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.Name) and node.id in CLOCK_CALLS:
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.ImportFrom) and node.module == "time":
            found += [(node.lineno, alias.name) for alias in node.names if alias.name in CLOCK_CALLS]
    return [f"{path.name}:{line} {name}" for line, name in sorted(found)]


def test_only_the_clock_module_reads_the_clocks_in_the_agent():
    agent = Path(clock.__file__).resolve().parent
    assert clock_reads(agent / "clock.py")  # the check sees them where they are
    offenders = [read for path in sorted(agent.rglob("*.py")) if path != agent / "clock.py"
                 for read in clock_reads(path)]
    assert offenders == []
