"""edgefarm.agent.thermal on a fake sysfs tree in a temporary folder: the bounded wait
before a run (a temperature falling over time, the "stopped falling" rule, the governor),
the sampler during a run, and the throttle verdict (a frequency drop injected mid-run,
the throttle point, the firmware bits from ``vcgencmd``)."""

import stat
import threading
from pathlib import Path

import pytest

from edgefarm.agent import sysinfo
from edgefarm.agent.thermal import Sampler, ThermalConfig, throttle_verdict, wait_until_ready
from edgefarm.shared.contract.schemas import Environment, Gating
from tests.support.sysfs import FakeSysfs


class FakeTime:
    """A clock that moves only when the gate sleeps; ``on_tick(t)`` updates the sensors."""

    def __init__(self, on_tick=lambda t: None):
        self.t, self.on_tick, self.sleeps = 0.0, on_tick, []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        self.on_tick(self.t)


def config(root: Path, **overrides) -> ThermalConfig:
    values = dict(sysfs_root=str(root), start_temp_c=60.0, poll_seconds=1.0, settle_seconds=5.0,
                  settle_delta_c=0.5, max_wait_seconds=30.0, vcgencmd="")
    values.update(overrides)
    return ThermalConfig.from_dict(values)


def test_the_gate_waits_for_a_falling_temperature_to_pass_the_threshold(tmp_path):
    sysfs = FakeSysfs(tmp_path, temp_c=72.0)
    clock = FakeTime(lambda t: sysfs.set_temp(72.0 - 2.0 * t))  # 2 °C a second
    gating = wait_until_ready(config(tmp_path), now=clock.now, sleep=clock.sleep)
    # 72 - 2 * 6 = 60 is not below 60; at 7 s it is 58
    assert gating["waited_seconds"] == 7.0 and clock.sleeps == [1.0] * 7
    assert gating["ready"] is True and gating["reason"] == "ready after 7.0 s"
    assert (gating["start_temp_c"], gating["end_temp_c"]) == (72.0, 58.0)
    assert gating["governor"] == "performance"
    Gating.model_validate(gating)


def test_the_gate_waits_while_a_thread_cools_the_device(tmp_path):
    sysfs = FakeSysfs(tmp_path, temp_c=70.0)
    stop = threading.Event()

    def cool() -> None:
        temp = 70.0
        while temp > 50 and not stop.wait(0.02):
            temp -= 1.0
            sysfs.set_temp(temp)

    writer = threading.Thread(target=cool)
    writer.start()
    try:
        gating = wait_until_ready(config(tmp_path, poll_seconds=0.01, max_wait_seconds=10.0))
    finally:
        stop.set()
        writer.join()
    assert gating["ready"] is True and gating["start_temp_c"] >= 60.0
    assert gating["end_temp_c"] < 60.0 and 0.1 < gating["waited_seconds"] < 10.0


def test_a_temperature_that_stopped_falling_ends_the_wait(tmp_path):
    FakeSysfs(tmp_path, temp_c=70.0)  # ambient: it will not cool further
    clock = FakeTime()
    gating = wait_until_ready(config(tmp_path), now=clock.now, sleep=clock.sleep)
    assert gating["waited_seconds"] == 5.0 and gating["ready"] is True
    assert "stopped falling at 70 °C" in gating["reason"]


def test_a_slow_but_steady_fall_is_still_worth_waiting_for(tmp_path):
    sysfs = FakeSysfs(tmp_path, temp_c=70.0)
    clock = FakeTime(lambda t: sysfs.set_temp(70.0 - t))  # 1 °C a second: 5 °C per window
    gating = wait_until_ready(config(tmp_path), now=clock.now, sleep=clock.sleep)
    assert gating["waited_seconds"] == 11.0 and gating["end_temp_c"] == 59.0


def test_the_wait_is_bounded_and_says_why_it_gave_up(tmp_path):
    FakeSysfs(tmp_path, temp_c=40.0, governor="ondemand")
    clock = FakeTime()
    gating = wait_until_ready(config(tmp_path, expected_governor="performance", max_wait_seconds=3.0,
                                     expected_min_freq_khz=1800000), now=clock.now, sleep=clock.sleep)
    assert gating["ready"] is False and gating["waited_seconds"] == 3.0
    assert gating["reason"] == ("gave up after 3.0 s: governor ondemand is not performance; the fastest "
                                "core runs at 1500000 kHz, below 1800000 kHz")


def test_without_sensors_the_gate_is_ready_at_once(tmp_path):
    clock = FakeTime()
    gating = wait_until_ready(config(tmp_path), now=clock.now, sleep=clock.sleep)
    assert gating["ready"] is True and gating["reason"] == "ready at once" and clock.sleeps == []
    assert gating["start_temp_c"] is None and gating["freq_khz"] is None


def wait_for_points(sampler: Sampler, count: int) -> None:
    """Until the sampler thread has taken ``count`` points (bounded)."""
    done = threading.Event()
    for _ in range(2000):
        if len(sampler.trace) >= count or done.wait(0.005):
            return
    raise AssertionError("the sampler took no points")


@pytest.mark.parametrize("governor, throttled", [("performance", True), ("schedutil", False)])
def test_a_frequency_drop_injected_mid_run_is_throttling_under_a_fixed_governor(tmp_path, governor,
                                                                                throttled):
    sysfs = FakeSysfs(tmp_path, governor=governor)
    cfg = config(tmp_path, sample_interval_seconds=0.005)
    sampler = Sampler(cfg).start()
    wait_for_points(sampler, 3)
    sysfs.set_freq([1200000, 1500000])  # the fastest core keeps 1.5 GHz: not a drop
    wait_for_points(sampler, 5)
    sysfs.set_freq([1200000, 1300000])  # now the fastest core lost 13%
    wait_for_points(sampler, 8)
    trace = sampler.stop()
    assert trace[0]["freq_khz"] == [1500000, 1500000] and trace[-1]["freq_khz"] == [1200000, 1300000]
    assert [p["t"] for p in trace] == sorted(p["t"] for p in trace)
    verdict, why = throttle_verdict(cfg, trace, governor)
    assert verdict is throttled
    if throttled:
        assert why == "the fastest core fell from 1500000 to 1300000 kHz (more than 10% below its start)"
    Environment(trace=trace)  # the contract takes it


def test_a_small_drop_within_the_margin_is_not_throttling(tmp_path):
    cfg = config(tmp_path)
    trace = [{"t": 0, "temp_c": 50.0, "freq_khz": [1500000]}, {"t": 1, "temp_c": 51.0, "freq_khz": [1400000]}]
    assert throttle_verdict(cfg, trace, "performance") == (False, None)
    assert throttle_verdict(cfg, [], None) == (None, None)


def test_crossing_the_throttle_point_is_throttling(tmp_path):
    cfg = config(tmp_path, throttle_temp_c=75.0)
    trace = [{"t": 0, "temp_c": 70.0, "freq_khz": None}, {"t": 1, "temp_c": 75.5, "freq_khz": None}]
    assert throttle_verdict(cfg, trace, None) == (
        True, "the temperature reached 75.5 °C (throttle point 75 °C)")


def test_the_sampler_keeps_a_bounded_trace(tmp_path):
    FakeSysfs(tmp_path)
    sampler = Sampler(config(tmp_path, sample_interval_seconds=0.001), max_points=8).start()
    wait_for_points(sampler, 7)
    wait_for_points(sampler, 7)
    trace = sampler.stop()
    assert len(trace) < 8 and sampler.interval > 0.001


def test_firmware_bits_come_from_vcgencmd_when_sysfs_has_none(tmp_path):
    sysfs = FakeSysfs(tmp_path / "root")
    script = tmp_path / "vcgencmd"
    script.write_text('#!/bin/sh\n[ "$1" = get_throttled ] && echo "throttled=0x50004"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    assert sysinfo.read_throttled_flags(str(sysfs.root), str(script)) == 0x50004
    assert sysinfo.read_throttled_flags(str(sysfs.root), str(tmp_path / "absent")) is None
    sysfs.set_throttled(0x0)
    assert sysinfo.read_throttled_flags(str(sysfs.root), str(script)) == 0  # sysfs first
    cfg = config(sysfs.root, vcgencmd=str(script))
    trace = [{"t": 0, "temp_c": 50.0, "freq_khz": [1500000]}]
    assert throttle_verdict(cfg, trace, "performance", 0x50000, 0x50004) == (
        True, "the firmware reports throttling (0x50004)")
    assert throttle_verdict(cfg, trace, "performance", 0x50000, 0x50000) == (False, None)


@pytest.mark.parametrize("table, message", [
    ({"start_temp": 60}, "unknown keys start_temp"),
    ({"max_wait_seconds": -1}, "max_wait_seconds must not be negative"),
    ({"freq_drop_margin": 1.5}, "freq_drop_margin must be in"),
    ({"throttle_temp_c": "hot"}, "throttle_temp_c must be a number"),
])
def test_bad_thermal_settings_are_refused(table, message):
    with pytest.raises(ValueError, match=message):
        ThermalConfig.from_dict(table)
