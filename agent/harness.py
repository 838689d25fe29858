"""The latency harness: the only place in the agent that times inference.

It follows TFLite ``benchmark_model`` (BRIEF section 4):

1. ``load_runtime`` times construction + ``load`` of the runtime (init time).
2. ``benchmark`` sets the inputs once (not timed), times the first inference on
   its own, then warms up (at least ``warmup_runs`` runs *and* at least
   ``warmup_seconds``), then measures (at least ``measured_runs`` runs *and* at
   least ``min_seconds``, stopping once ``max_seconds`` have passed, always at
   least one run). Count, mean, std, min and max cover every run; the raw
   samples kept (and the percentiles) are every run up to 2 x ``max_runs``
   (default 20,000), else an evenly spaced subsample (every ``samples_stride``-th
   run): a model that runs in microseconds would otherwise keep millions.
3. Only ``runtime.invoke()`` is inside the timed region, with
   ``time.perf_counter_ns``; the raw per-run samples are kept.

Also here: ``synthetic_inputs`` (random data shaped like the model's inputs, as
benchmark_model makes them) and the process memory readings
(``peak_rss_bytes``, ``current_rss_bytes``).
"""

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Type

import numpy as np

from .errors import Cancelled
from .runtimes.base import LoadOptions, Runtime, TensorInfo
from .stats import latency_stats

__all__ = ["BenchResult", "Cancelled", "Protocol", "benchmark", "current_rss_bytes",
           "load_runtime", "peak_rss_bytes", "synthetic_inputs"]

ProgressCallback = Callable[[int, str], None]
StopCheck = Callable[[], Any]

#: Seconds between two ``progress`` calls, at least.
PROGRESS_INTERVAL_SECONDS = 0.5


@dataclass
class Protocol:
    """How many runs and how long: the defaults are benchmark_model's."""

    warmup_runs: int = 1
    warmup_seconds: float = 0.5
    measured_runs: int = 50
    min_seconds: float = 1.0
    max_seconds: float = 150.0
    max_runs: Optional[int] = 20000  # never below measured_runs; None: no cap

    @classmethod
    def from_settings(cls, settings: Any) -> "Protocol":
        """From a ``RunSettings`` object or a dict with some of its fields; the rest default."""
        values = {}
        for name in ("warmup_runs", "warmup_seconds", "measured_runs", "min_seconds", "max_seconds",
                     "max_runs"):
            value = settings.get(name) if isinstance(settings, dict) else getattr(settings, name, None)
            if value is not None:
                values[name] = value
        return cls(**values)


@dataclass
class BenchResult:
    first_inference_ms: float
    warmup_count: int
    samples_ms: List[float]
    stats: dict
    wall_seconds: float
    warmup_mean_ms: Optional[float] = None
    samples_stride: int = 1  # the posted samples are every k-th run when there are very many


def load_runtime(runtime_cls: Type[Runtime], model_path: Path,
                 options: Optional[LoadOptions] = None) -> Tuple[Runtime, float]:
    """A loaded runtime and its init time in ms (construction + ``load``)."""
    start = time.perf_counter()
    runtime = runtime_cls()
    runtime.load(Path(model_path), options or LoadOptions())
    return runtime, (time.perf_counter() - start) * 1000.0


class _Pacer:
    """Checks for cancellation and reports progress at most every PROGRESS_INTERVAL_SECONDS."""

    def __init__(self, progress: Optional[ProgressCallback], should_stop: Optional[StopCheck]):
        self.progress, self.should_stop = progress, should_stop
        self.last_report = time.perf_counter()

    def between_runs(self, done: int, phase: str) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled(f"cancelled during the latency benchmark ({phase}, after {done} runs)")
        if self.progress is None:
            return
        now = time.perf_counter()
        if now - self.last_report >= PROGRESS_INTERVAL_SECONDS:
            self.last_report = now
            self.progress(done, phase)


def _timed_invoke(runtime: Runtime) -> float:
    """One ``invoke()``, in milliseconds; nothing else is inside the timed region."""
    start = time.perf_counter_ns()
    runtime.invoke()
    return (time.perf_counter_ns() - start) / 1e6


def _warm_up(runtime: Runtime, protocol: Protocol, pacer: _Pacer) -> Tuple[int, float]:
    """(run count, total ms) of the warmup; its samples are not kept."""
    count, total_ms = 0, 0.0
    start = time.perf_counter()
    while count < protocol.warmup_runs or time.perf_counter() - start < protocol.warmup_seconds:
        pacer.between_runs(count, "warmup")
        total_ms += _timed_invoke(runtime)
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
        stats = latency_stats(self.kept)
        if self.stride > 1:  # percentiles come from the evenly spaced subsample
            mean = self.total / self.count
            variance = max(self.total_sq / self.count - mean * mean, 0.0)
            stats.update(count=self.count, mean=mean, std=variance ** 0.5, min=self.low, max=self.high)
        return stats


def _measure(runtime: Runtime, protocol: Protocol, pacer: _Pacer) -> _Samples:
    cap = None if protocol.max_runs is None else max(protocol.max_runs, protocol.measured_runs)
    samples = _Samples(cap)
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if samples.count and elapsed >= protocol.max_seconds:
            break
        if samples.count >= protocol.measured_runs and elapsed >= protocol.min_seconds:
            break
        pacer.between_runs(samples.count, "measure")
        samples.add(_timed_invoke(runtime))
    return samples


def benchmark(runtime: Runtime, inputs: Sequence[Any], protocol: Optional[Protocol] = None,
              progress: Optional[ProgressCallback] = None,
              should_stop: Optional[StopCheck] = None) -> BenchResult:
    """Run the latency protocol on a loaded runtime.

    ``progress(done, phase)`` (phase "first", "warmup" or "measure") is called at most every
    0.5 s; ``should_stop()`` is checked before every run and a truthy answer raises
    ``Cancelled``.
    """
    protocol = protocol or Protocol()
    wall_start = time.perf_counter()
    pacer = _Pacer(progress, should_stop)
    runtime.set_inputs(list(inputs))
    pacer.between_runs(0, "first")
    first_ms = _timed_invoke(runtime)
    warmup_count, warmup_ms = _warm_up(runtime, protocol, pacer)
    samples = _measure(runtime, protocol, pacer)
    return BenchResult(
        first_inference_ms=first_ms, warmup_count=warmup_count, samples_ms=samples.kept,
        stats=samples.stats(), samples_stride=samples.stride,
        wall_seconds=time.perf_counter() - wall_start,
        warmup_mean_ms=warmup_ms / warmup_count if warmup_count else None,
    )


def _concrete_shape(shape: Sequence[int]) -> Tuple[int, ...]:
    """Dynamic dimensions (-1, 0 or None) become 1, as benchmark_model does by default."""
    return tuple(int(d) if d is not None and int(d) > 0 else 1 for d in shape)


def synthetic_inputs(tensor_infos: Sequence[TensorInfo], seed: int = 0) -> List[np.ndarray]:
    """Random data for each input: uniform over the whole range for integer types,
    [-1, 1) for floating types, 0/1 for bool. Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    arrays = []
    for info in tensor_infos:
        shape = _concrete_shape(info.shape)
        dtype = np.dtype(info.dtype)
        if dtype.kind == "f":
            arrays.append(rng.uniform(-1.0, 1.0, size=shape).astype(dtype))
        elif dtype.kind in "iu":
            limits = np.iinfo(dtype)
            arrays.append(rng.integers(limits.min, limits.max, size=shape, dtype=dtype, endpoint=True))
        elif dtype.kind == "b":
            arrays.append(rng.integers(0, 2, size=shape).astype(bool))
        else:
            raise ValueError(f"cannot make synthetic data for input {info.name!r} of type {info.dtype}")
    return arrays


def peak_rss_bytes() -> Optional[int]:
    """Peak resident set size of this process so far (approximate, as benchmark_model says);
    None where the ``resource`` module is missing (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS: bytes; Linux: KiB


def current_rss_bytes() -> Optional[int]:
    """Resident set size now, from /proc/self/statm; None where /proc is missing."""
    try:
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")
