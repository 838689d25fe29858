"""A run's latency measurement, repeated when it cannot be trusted, every attempt recorded.

``measure`` wraps the strategy's latency protocol (``edgefarm.agent.clock``) in the
thermal gate (``edgefarm.agent.thermal``): wait until the device is ready, sample
temperature and frequency while measuring, and judge whether the measurement was
throttled. It then measures again:

* once, after ``cooldown_seconds`` and a new wait at the gate, when the measurement was
  throttled and the job asks for it (``RunSettings.rerun_throttled``);
* up to ``cv_reruns`` times when the job sets ``target_ci`` and the coefficient of
  variation (std / mean) of the measurement stays above ``cv_threshold`` (Phoronix
  Test Suite re-runs above 3.5%): a noisy device (a background task, a thermal swing)
  rather than a noisy model.

The measurement kept is always the last one: each earlier one is recorded as an
``Attempt`` (why it was not kept, its count, p50, CV and its wait at the gate) in ``RunResult.repetition``,
never hidden, and the last is the one taken on the device in the best state the agent
could wait for. Reruns are bounded, so a device that stays noisy or hot still gives a
result, which then says so (``Environment.throttled``, its CV, the attempts).
"""

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional

from .clock import BenchResult, Protocol, wait
from .stats import coefficient_of_variation
from .thermal import Sampler, ThermalConfig, throttle_flags, throttle_verdict, wait_until_ready


@dataclass
class RepetitionConfig:
    """The ``[repetition]`` table of ``agent.toml``."""

    cv_threshold: float = 0.035
    cv_reruns: int = 2

    @classmethod
    def from_dict(cls, data: Optional[Dict[str, Any]]) -> "RepetitionConfig":
        data = dict(data or {})
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"[repetition]: unknown keys {', '.join(unknown)}; "
                             "known: cv_reruns, cv_threshold")
        config = cls(**data)
        if isinstance(config.cv_threshold, bool) or not isinstance(config.cv_threshold, (int, float)) \
                or config.cv_threshold <= 0:
            raise ValueError("[repetition]: cv_threshold must be a number above 0")
        if isinstance(config.cv_reruns, bool) or not isinstance(config.cv_reruns, int) \
                or not 0 <= config.cv_reruns <= 10:
            raise ValueError("[repetition]: cv_reruns must be an integer from 0 to 10")
        return config

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class Measured:
    """The kept measurement with its gate, trace and verdict, and the repetition record."""

    bench: BenchResult
    runtime_init_ms: Optional[float]
    extra: Dict[str, Any]
    gating: Optional[Dict[str, Any]] = None
    trace: List[Dict[str, Any]] = field(default_factory=list)
    throttled: Optional[bool] = None
    throttle_reason: Optional[str] = None
    repetition: Optional[Dict[str, Any]] = None


def _attempt(reason: str, measured: Measured) -> Dict[str, Any]:
    stats = measured.bench.stats
    cv = coefficient_of_variation(stats)
    return {"reason": reason, "count": int(stats["count"]), "p50": float(stats["p50"]),
            "cv": cv if math.isfinite(cv) else None, "throttled": measured.throttled,
            "gating": measured.gating}


def _measure_once(latency: Callable[[], Any], thermal: ThermalConfig,
                  sleep: Callable[[float], None]) -> Measured:
    if not thermal.enabled:
        bench, init_ms, extra = latency()
        return Measured(bench, init_ms, extra)
    gating = wait_until_ready(thermal, sleep=sleep)
    flags_before = throttle_flags(thermal)
    sampler = Sampler(thermal).start()
    try:
        bench, init_ms, extra = latency()
    finally:
        trace = sampler.stop()
    throttled, why = throttle_verdict(thermal, trace, gating.get("governor"), flags_before,
                                      throttle_flags(thermal))
    return Measured(bench, init_ms, extra, gating, trace, throttled, why)


def measure(latency: Callable[[], Any], protocol: Protocol, thermal: ThermalConfig,
            repetition: RepetitionConfig, rerun_throttled: bool = False,
            sleep: Callable[[float], None] = wait) -> Measured:
    """Measure with ``latency()`` (the strategy's protocol: ``(BenchResult, init ms, extra)``),
    re-measuring a throttled or noisy measurement as the settings ask; see the module."""
    attempts: List[Dict[str, Any]] = []
    throttle_reruns = 1 if rerun_throttled else 0
    cv_reruns = repetition.cv_reruns if protocol.target_ci is not None else 0
    while True:
        measured = _measure_once(latency, thermal, sleep)
        cv = coefficient_of_variation(measured.bench.stats)
        if measured.throttled and throttle_reruns:
            throttle_reruns -= 1
            attempts.append(_attempt(f"throttled: {measured.throttle_reason}; measured again after "
                                     f"a {thermal.cooldown_seconds:g} s cool-down", measured))
            sleep(thermal.cooldown_seconds)
            continue
        if cv > repetition.cv_threshold and cv_reruns:
            cv_reruns -= 1
            attempts.append(_attempt(f"coefficient of variation {cv:.2%} above "
                                     f"{repetition.cv_threshold:.2%}", measured))
            continue
        break
    if protocol.target_ci is not None or attempts:
        achieved = measured.bench.achieved_ci
        target = protocol.target_ci
        measured.repetition = {
            "target_ci": target, "achieved_ci": achieved,
            "met": None if target is None else achieved is not None and achieved <= target,
            "stopped_by": measured.bench.stopped_by, "attempts": attempts,
        }
    return measured
