"""Thermal and frequency gating of a measured run.

A device that is still hot from the previous run, or whose governor is not the one its
configuration expects, measures something else than the model. This module owns:

* ``ThermalConfig``: the agent's ``[thermal]`` settings (``edgefarm.agent.config``).
* ``wait_until_ready``: before a measured run, poll the sensors until the SoC temperature
  is below ``start_temp_c`` (or has *stopped falling*: it fell less than
  ``settle_delta_c`` over the last ``settle_seconds``, so waiting longer would not help)
  and the governor and the fastest core's frequency are what the configuration expects,
  for at most ``max_wait_seconds``. The answer is the result's
  ``edgefarm.shared.contract.schemas.Gating``; a wait that ran out says so
  (``ready: false``) and the run goes ahead.
* ``Sampler``: during the run, a background thread samples temperature and per-CPU
  frequency every ``sample_interval_seconds`` into ``Environment.trace`` (at most
  ``MAX_TRACE`` points: when full, every other point is dropped and the interval doubles).
* ``throttle_verdict``: a run is throttled when the fastest core's frequency fell below
  its starting value by more than ``freq_drop_margin`` (only under a fixed governor:
  "performance", "userspace" or the expected one, where the frequency is not supposed to
  move), when the temperature reached ``throttle_temp_c``, or when the firmware's
  throttle bits (sysfs ``get_throttled`` or ``vcgencmd get_throttled``) say so.

Sensors are read through ``edgefarm.agent.sysinfo`` below ``sysfs_root``, so tests point
the agent at a fake tree. Time is passed in (``now``, ``sleep``), defaulting to
``edgefarm.agent.clock``; pure Python.
"""

import threading
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import sysinfo
from .clock import Stopwatch, wait

#: Most points a run's trace keeps (the contract allows 10,000).
MAX_TRACE = 1000
#: Governors under which the frequency is not supposed to move on its own.
FIXED_GOVERNORS = ("performance", "userspace")


@dataclass
class ThermalConfig:
    """The ``[thermal]`` table of ``agent.toml``; every key is optional."""

    enabled: bool = True
    sysfs_root: str = "/"
    start_temp_c: float = 60.0  # wait until the SoC is below this ...
    settle_seconds: float = 15.0  # ... or fell less than settle_delta_c over this long
    settle_delta_c: float = 0.5
    max_wait_seconds: float = 120.0
    poll_seconds: float = 1.0
    expected_governor: Optional[str] = None
    expected_min_freq_khz: Optional[int] = None  # the fastest core at least this
    freq_drop_margin: float = 0.10  # a drop of more than 10% below the start is throttling
    throttle_temp_c: float = sysinfo.HOT_CELSIUS
    sample_interval_seconds: float = 0.5
    cooldown_seconds: float = 30.0  # before re-running a throttled measurement
    vcgencmd: str = "vcgencmd"  # "" never runs it

    @classmethod
    def from_dict(cls, data: Optional[Dict[str, Any]]) -> "ThermalConfig":
        """The settings of a ``[thermal]`` table; ValueError on an unknown key or a bad value."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"[thermal]: unknown keys {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        config = cls(**data)
        numbers = ("settle_seconds", "settle_delta_c", "max_wait_seconds", "poll_seconds",
                   "freq_drop_margin", "sample_interval_seconds", "cooldown_seconds")
        for name in numbers + ("start_temp_c", "throttle_temp_c"):
            value = getattr(config, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"[thermal]: {name} must be a number, not {value!r}")
            if name in numbers and value < 0:
                raise ValueError(f"[thermal]: {name} must not be negative, not {value!r}")
        if config.sample_interval_seconds == 0 or config.poll_seconds == 0:
            raise ValueError("[thermal]: poll_seconds and sample_interval_seconds must be above 0")
        if not 0 <= config.freq_drop_margin < 1:
            raise ValueError("[thermal]: freq_drop_margin must be in [0, 1)")
        return config

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class Reading:
    """One look at the sensors."""

    temp_c: Optional[float]
    governor: Optional[str]
    freq_khz: Optional[List[int]]

    @property
    def top_freq_khz(self) -> Optional[int]:
        return max(self.freq_khz) if self.freq_khz else None


def read_sensors(config: ThermalConfig) -> Reading:
    root = config.sysfs_root
    return Reading(sysinfo.read_temperature_c(root), sysinfo.read_governor(root),
                   sysinfo.read_freq_khz(root))


def _not_ready(config: ThermalConfig, reading: Reading) -> List[str]:
    """Why the device is not ready, apart from the temperature."""
    reasons = []
    if config.expected_governor and reading.governor != config.expected_governor:
        reasons.append(f"governor {reading.governor} is not {config.expected_governor}")
    top = reading.top_freq_khz
    if config.expected_min_freq_khz and (top is None or top < config.expected_min_freq_khz):
        reasons.append(f"the fastest core runs at {top} kHz, below {config.expected_min_freq_khz} kHz")
    return reasons


def _stopped_falling(history: List[Tuple[float, float]], seconds: float, delta: float) -> bool:
    """Whether the temperature fell less than ``delta`` over the last ``seconds``."""
    t_now, temp_now = history[-1]
    earlier = [temp for t, temp in history if t <= t_now - seconds]
    return bool(earlier) and earlier[-1] - temp_now < delta


def _temperature_check(config: ThermalConfig, history: List[Tuple[float, float]], elapsed: float,
                       temp_c: Optional[float]) -> Tuple[Optional[str], Optional[str]]:
    """(why the temperature is not ready, or a note when it stopped falling above the
    threshold); (None, None) when it is below the threshold or unknown."""
    if temp_c is None or temp_c < config.start_temp_c:
        return None, None
    history.append((elapsed, temp_c))
    if _stopped_falling(history, config.settle_seconds, config.settle_delta_c):
        return None, (f"the temperature stopped falling at {temp_c:g} °C (less than "
                      f"{config.settle_delta_c:g} °C in {config.settle_seconds:g} s)")
    return f"temperature {temp_c:g} °C is not below {config.start_temp_c:g} °C", None


def wait_until_ready(config: ThermalConfig, now: Optional[Callable[[], float]] = None,
                     sleep: Callable[[float], None] = wait) -> Dict[str, Any]:
    """Wait (bounded) until the device is ready to measure; the ``Gating`` dict."""
    now = now or Stopwatch().seconds
    start = now()
    reading = read_sensors(config)
    history: List[Tuple[float, float]] = []
    polls = 0
    gating = {"start_temp_c": reading.temp_c, "threshold_temp_c": config.start_temp_c,
              "expected_governor": config.expected_governor}
    while True:
        elapsed = now() - start
        hot, note = _temperature_check(config, history, elapsed, reading.temp_c)
        reasons = ([hot] if hot else []) + _not_ready(config, reading)
        if not reasons or elapsed >= config.max_wait_seconds:
            break
        sleep(min(config.poll_seconds, config.max_wait_seconds - elapsed))
        polls += 1
        reading = read_sensors(config)
    if reasons:
        reason = f"gave up after {elapsed:.1f} s: {'; '.join(reasons)}"
    else:
        reason = note or (f"ready after {elapsed:.1f} s" if polls else "ready at once")
    gating.update(waited_seconds=round(elapsed, 3), ready=not reasons, reason=reason,
                  governor=reading.governor, end_temp_c=reading.temp_c, freq_khz=reading.freq_khz)
    return gating


class Sampler:
    """Samples temperature and per-CPU frequency on a background thread while a run measures;
    ``stop()`` gives the trace (``EnvironmentSample`` dicts, the first taken at the start)."""

    def __init__(self, config: ThermalConfig, max_points: int = MAX_TRACE) -> None:
        self.config, self.max_points = config, max_points
        self.interval = config.sample_interval_seconds
        self.trace: List[Dict[str, Any]] = []
        self._stop = threading.Event()
        self._watch = Stopwatch()
        self._thread = threading.Thread(target=self._loop, name="thermal-sampler", daemon=True)

    def start(self) -> "Sampler":
        self._sample()  # the starting values, before the run begins
        self._thread.start()
        return self

    def stop(self) -> List[Dict[str, Any]]:
        self._stop.set()
        self._thread.join()
        self._sample()
        return list(self.trace)

    def _sample(self) -> None:
        reading = read_sensors(self.config)
        if reading.temp_c is None and not reading.freq_khz:
            return  # no sensor on this device: no trace
        self.trace.append({"t": round(self._watch.seconds(), 4), "temp_c": reading.temp_c,
                           "freq_khz": reading.freq_khz})
        if len(self.trace) >= self.max_points:
            self.trace = self.trace[::2]
            self.interval *= 2

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()


def throttle_verdict(config: ThermalConfig, trace: List[Dict[str, Any]], governor: Optional[str],
                     flags_before: Optional[int] = None,
                     flags_after: Optional[int] = None) -> Tuple[Optional[bool], Optional[str]]:
    """(throttled, why) of a run from its trace; throttled is None without any reading."""
    signs: List[bool] = []
    reasons: List[str] = []
    tops = [max(p["freq_khz"]) for p in trace if p.get("freq_khz")]
    fixed = governor in FIXED_GOVERNORS or (governor is not None and governor == config.expected_governor)
    if tops and fixed:
        floor = tops[0] * (1.0 - config.freq_drop_margin)
        lowest = min(tops)
        signs.append(lowest < floor)
        if lowest < floor:
            reasons.append(f"the fastest core fell from {tops[0]} to {lowest} kHz "
                           f"(more than {config.freq_drop_margin:.0%} below its start)")
    temps = [p["temp_c"] for p in trace if p.get("temp_c") is not None]
    if temps:
        signs.append(max(temps) >= config.throttle_temp_c)
        if max(temps) >= config.throttle_temp_c:
            reasons.append(f"the temperature reached {max(temps):g} °C "
                           f"(throttle point {config.throttle_temp_c:g} °C)")
    firmware = sysinfo.firmware_throttled(flags_before, flags_after)
    if firmware is not None:
        signs.append(firmware)
        if firmware:
            reasons.append(f"the firmware reports throttling ({hex(flags_after or flags_before or 0)})")
    if not signs:
        return None, None
    return any(signs), "; ".join(reasons) or None


def throttle_flags(config: ThermalConfig) -> Optional[int]:
    """The firmware throttle bits now (sysfs, else ``vcgencmd``), None without either."""
    return sysinfo.read_throttled_flags(config.sysfs_root, config.vcgencmd)
