"""Every clock of the agent: the one module that reads the time (a unit test holds the
rest of ``agent/`` to that).

This module owns:

* The latency harness, TFLite ``benchmark_model``'s protocol (its defaults are
  ``Protocol``'s: 1 warmup run and 0.5 s, at least 50 runs and 1 s, at most 150 s), for
  runtimes timed call by call (``Runtime.timing == "invoke"``): ``benchmark`` sets
  the inputs once (not timed), times the first inference on its own, then warms up
  (at least ``warmup_runs`` runs *and* at least ``warmup_seconds``), then measures (at
  least ``measured_runs`` runs *and* at least ``min_seconds``, stopping once
  ``max_seconds`` have passed, always at least one run). Only ``runtime.invoke()`` is
  inside the timed region (``invoke_ms``, with ``time.perf_counter_ns``). Count, mean,
  std, min and max cover every run; the raw samples kept (and the percentiles) are
  every run up to 2 x ``max_runs`` (default 20,000), else an evenly spaced subsample
  (every ``samples_stride``-th run): a model that runs in microseconds would otherwise
  keep millions.
* Adaptive repetition: with ``Protocol.target_ci`` set, once ``measured_runs`` and
  ``min_seconds`` are done ``benchmark`` keeps measuring until the 95% interval of p50
  (``edgefarm.shared.stats.quantile_ci`` over the kept samples, the ones posted) is
  within +-``target_ci`` of p50, or ``max_seconds`` have passed. The interval is checked
  at geometric checkpoints (every ``CHECKPOINT_GROWTH`` x more runs), not after every
  run, so its cost stays a few sorts however long the run. ``BenchResult`` says what
  stopped the measurement and the interval reached.
* ``benchmark_batch``: the protocol for runtimes that run a whole batch in another
  process (``Runtime.timing == "batch"``, SNPE's ``snpe-net-run``): ``1 + warmup_runs +
  measured_runs`` inferences of the same input in one batch, timed by the runtime
  itself (its diagnostic log, not process wall time): the first inference, the warmup
  (discarded) and the measured samples. It is count-based: ``min_seconds`` and
  ``max_seconds`` cannot steer a batch fixed before it starts (the result says so).
  With ``target_ci``, further batches of the same size (their first inference and
  warmup discarded too) are run while the interval is wider than the target and
  ``max_seconds`` has not passed.
* ``load_runtime``: the init time (construction + ``load``).
* ``Stopwatch``: the evaluation pipeline's stage times and the wall times of a whole
  evaluation, a latency run or an SNPE process.
* ``Deadline``: the worker's hard timeout of a run, on the monotonic clock.
* ``wait``: the thermal gate's polls and cool-downs (``edgefarm.agent.thermal``).

The statistics (``edgefarm.agent.stats``, numpy) are imported when first computed, so
the worker's service process, which only needs a ``Deadline``, does not load numpy.
"""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Type

from edgefarm.shared.contract.schemas import RunSettings

from .errors import Cancelled
from .runtimes.base import LoadOptions, Runtime

__all__ = ["BenchResult", "Cancelled", "Deadline", "Protocol", "Stopwatch", "benchmark",
           "benchmark_batch", "invoke_ms", "load_runtime", "p50_half_width_ratio", "wait"]

ProgressCallback = Callable[[int, str], None]
StopCheck = Callable[[], Any]

#: Seconds between two ``progress`` calls, at least.
PROGRESS_INTERVAL_SECONDS = 0.5
#: With ``target_ci``, the p50 interval is checked again once the run count has grown this much.
CHECKPOINT_GROWTH = 1.25


_SETTINGS_DEFAULTS = RunSettings()


@dataclass
class Protocol:
    """How many runs and how long. The defaults are the contract's ``RunSettings``
    defaults (benchmark_model's); ``max_runs`` caps the raw samples kept and is not a
    setting."""

    warmup_runs: int = _SETTINGS_DEFAULTS.warmup_runs
    warmup_seconds: float = _SETTINGS_DEFAULTS.warmup_seconds
    measured_runs: int = _SETTINGS_DEFAULTS.measured_runs
    min_seconds: float = _SETTINGS_DEFAULTS.min_seconds
    max_seconds: float = _SETTINGS_DEFAULTS.max_seconds
    max_runs: Optional[int] = 20000  # never below measured_runs; None: no cap
    target_ci: Optional[float] = None  # relative half-width of the p50 interval to reach

    @classmethod
    def from_settings(cls, settings: RunSettings) -> "Protocol":
        """The protocol a run's settings ask for (a dict is read as ``RunSettings``, its
        missing fields defaulting); ``max_runs`` keeps its default."""
        if not isinstance(settings, RunSettings):
            settings = RunSettings.model_validate(settings)
        return cls(warmup_runs=settings.warmup_runs, warmup_seconds=settings.warmup_seconds,
                   measured_runs=settings.measured_runs, min_seconds=settings.min_seconds,
                   max_seconds=settings.max_seconds, target_ci=settings.target_ci)


@dataclass
class BenchResult:
    first_inference_ms: float
    warmup_count: int
    samples_ms: List[float]
    stats: dict
    wall_seconds: float
    warmup_mean_ms: Optional[float] = None
    samples_stride: int = 1  # the posted samples are every k-th run when there are very many
    stopped_by: Optional[str] = None  # "measured_runs", "target" or "max_seconds"
    achieved_ci: Optional[float] = None  # the p50 interval's relative half-width (with target_ci)


class Stopwatch:
    """Time since it started, and laps: stage times of the evaluation and wall times."""

    def __init__(self) -> None:
        self._start = self._lap = time.perf_counter()

    def lap_ms(self) -> float:
        """Milliseconds since the previous lap (or the start); the next lap starts now."""
        now = time.perf_counter()
        elapsed, self._lap = now - self._lap, now
        return elapsed * 1e3

    def seconds(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self._start


class Deadline:
    """A moment ``seconds`` from now on the monotonic clock (immune to clock changes)."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def passed(self) -> bool:
        return time.monotonic() > self._end


def wait(seconds: float) -> None:
    """Sleep ``seconds`` (nothing for zero or less)."""
    if seconds > 0:
        time.sleep(seconds)


def p50_half_width_ratio(samples: Sequence[float]) -> Optional[float]:
    """The 95% interval of p50 as a share of p50 (``target_ci``'s measure); None when the
    samples are too few for both bounds."""
    from edgefarm.shared.stats import quantile_ci

    return quantile_ci(samples, 0.5, 0.95).half_width_ratio()


def invoke_ms(runtime: Runtime) -> float:
    """One ``invoke()``, in milliseconds; nothing else is inside the timed region."""
    start = time.perf_counter_ns()
    runtime.invoke()
    return (time.perf_counter_ns() - start) / 1e6


def load_runtime(runtime_cls: Type[Runtime], model_path: Path,
                 options: Optional[LoadOptions] = None) -> Tuple[Runtime, float]:
    """A loaded runtime and its init time in ms (construction + ``load``)."""
    watch = Stopwatch()
    runtime = runtime_cls()
    runtime.load(Path(model_path), options or LoadOptions())
    return runtime, watch.lap_ms()


class _Pacer:
    """Checks for cancellation and reports progress when the phase changes and at most
    every PROGRESS_INTERVAL_SECONDS within a phase."""

    def __init__(self, progress: Optional[ProgressCallback], should_stop: Optional[StopCheck]):
        self.progress, self.should_stop = progress, should_stop
        self.last_report = time.perf_counter()
        self.phase: Optional[str] = None

    def between_runs(self, done: int, phase: str) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled(f"cancelled during the latency benchmark ({phase}, after {done} runs)")
        if self.progress is None:
            return
        now = time.perf_counter()
        if phase != self.phase or now - self.last_report >= PROGRESS_INTERVAL_SECONDS:
            self.last_report, self.phase = now, phase
            self.progress(done, phase)


def _warm_up(runtime: Runtime, protocol: Protocol, pacer: _Pacer) -> Tuple[int, float]:
    """(run count, total ms) of the warmup; its samples are not kept."""
    count, total_ms = 0, 0.0
    start = time.perf_counter()
    while count < protocol.warmup_runs or time.perf_counter() - start < protocol.warmup_seconds:
        pacer.between_runs(count, "warmup")
        total_ms += invoke_ms(runtime)
        count += 1
    return count, total_ms


class _Samples:
    """Per-run times: exact count, mean, std, min and max over every run; the raw
    samples kept are every run up to ``2 * cap``, then every k-th (k doubling), so a
    model that runs in microseconds cannot fill the memory."""

    def __init__(self, cap: Optional[int]):
        self.cap, self.stride, self.count = cap, 1, 0
        self.kept: List[float] = []
        self.total = self.total_sq = 0.0
        self.low, self.high = float("inf"), float("-inf")

    def add(self, value: float) -> None:
        if self.count % self.stride == 0:
            self.kept.append(value)
        self.count += 1
        self.total += value
        self.total_sq += value * value
        self.low, self.high = min(self.low, value), max(self.high, value)
        if self.cap is not None and len(self.kept) >= 2 * self.cap:
            self.kept, self.stride = self.kept[::2], self.stride * 2

    def stats(self) -> dict:
        from .stats import latency_stats

        stats = latency_stats(self.kept)
        if self.stride > 1:  # percentiles come from the evenly spaced subsample
            mean = self.total / self.count
            variance = max(self.total_sq / self.count - mean * mean, 0.0)
            stats.update(count=self.count, mean=mean, std=variance ** 0.5, min=self.low, max=self.high)
        return stats


def _measure(runtime: Runtime, protocol: Protocol, pacer: _Pacer) -> Tuple[_Samples, str, Optional[float]]:
    """(the samples, what stopped the measurement, the p50 interval's relative half-width
    when ``target_ci`` is set)."""
    cap = None if protocol.max_runs is None else max(protocol.max_runs, protocol.measured_runs)
    samples = _Samples(cap)
    target, checkpoint, achieved = protocol.target_ci, 0, None
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if samples.count and elapsed >= protocol.max_seconds:
            stopped_by = "max_seconds"
            break
        if samples.count >= protocol.measured_runs and elapsed >= protocol.min_seconds:
            if target is None:
                stopped_by = "measured_runs"
                break
            if samples.count >= checkpoint:
                achieved = p50_half_width_ratio(samples.kept)
                if achieved is not None and achieved <= target:
                    return samples, "target", achieved
                checkpoint = int(samples.count * CHECKPOINT_GROWTH) + 1
        pacer.between_runs(samples.count, "measure")
        samples.add(invoke_ms(runtime))
    if target is not None:
        achieved = p50_half_width_ratio(samples.kept)
    return samples, stopped_by, achieved


def benchmark(runtime: Runtime, inputs: Sequence[Any], protocol: Optional[Protocol] = None,
              progress: Optional[ProgressCallback] = None,
              should_stop: Optional[StopCheck] = None) -> BenchResult:
    """Run the latency protocol on a loaded runtime.

    ``progress(done, phase)`` (phase "first", "warmup" or "measure") is called as each
    phase starts and at most every 0.5 s within it; ``should_stop()`` is checked before
    every run and a truthy answer raises ``Cancelled``.
    """
    protocol = protocol or Protocol()
    wall = Stopwatch()
    pacer = _Pacer(progress, should_stop)
    runtime.set_inputs(list(inputs))
    pacer.between_runs(0, "first")
    first_ms = invoke_ms(runtime)
    warmup_count, warmup_ms = _warm_up(runtime, protocol, pacer)
    samples, stopped_by, achieved = _measure(runtime, protocol, pacer)
    return BenchResult(
        first_inference_ms=first_ms, warmup_count=warmup_count, samples_ms=samples.kept,
        stats=samples.stats(), samples_stride=samples.stride, wall_seconds=wall.seconds(),
        warmup_mean_ms=warmup_ms / warmup_count if warmup_count else None,
        stopped_by=stopped_by, achieved_ci=achieved,
    )


def _run_batch(runtime: Runtime, inputs: Sequence[Any], count: int) -> Tuple[List[float], Any]:
    run = runtime.run_batch([list(inputs)] * count, keep_outputs=False)
    run.close()
    times = list(run.latencies_ms)
    if len(times) != count:
        raise RuntimeError(f"{runtime.name} reported {len(times)} inference times for {count} inferences")
    return times, run


def benchmark_batch(runtime: Runtime, inputs: Sequence[Any], protocol: Protocol,
                    progress: Optional[ProgressCallback] = None
                    ) -> Tuple[BenchResult, Optional[float], dict]:
    """(BenchResult, the runtime's own init time in ms or None, the batch's details)."""
    from .stats import latency_stats

    warmup = max(int(protocol.warmup_runs), 0)
    count = 1 + warmup + max(int(protocol.measured_runs), 1)
    if progress is not None:
        progress(0, "measure")
    wall = Stopwatch()
    times, run = _run_batch(runtime, inputs, count)
    warm, samples = times[1:1 + warmup], times[1 + warmup:]
    batches, stopped_by, achieved = 1, "measured_runs", None
    if protocol.target_ci is not None:
        achieved = p50_half_width_ratio(samples)
        stopped_by = "target" if achieved is not None and achieved <= protocol.target_ci else "max_seconds"
        while stopped_by != "target" and wall.seconds() < protocol.max_seconds:
            if progress is not None:
                progress(len(samples), "measure")
            samples += _run_batch(runtime, inputs, count)[0][1 + warmup:]
            batches += 1
            achieved = p50_half_width_ratio(samples)
            if achieved is not None and achieved <= protocol.target_ci:
                stopped_by = "target"
    bench = BenchResult(
        first_inference_ms=times[0], warmup_count=warmup, samples_ms=samples,
        stats=latency_stats(samples), wall_seconds=wall.seconds(),
        warmup_mean_ms=sum(warm) / len(warm) if warm else None,
        stopped_by=stopped_by, achieved_ci=achieved,
    )
    protocol_text = f"count-based: {count} inferences in one batch (min_seconds/max_seconds do not apply)"
    if batches > 1:
        protocol_text = (f"count-based: {batches} batches of {count} inferences, each batch's first "
                         f"{1 + warmup} discarded, until the p50 interval met target_ci or "
                         "max_seconds passed")
    details = dict(run.details, latency_protocol=protocol_text)
    return bench, run.init_ms, details
