"""edgefarm.agent.sysinfo on fake /proc, /sys and /etc trees of a Raspberry Pi 3, a Qualcomm RB5
and an x86 PC: platform, static facts, environment snapshots and the throttle verdict."""

from pathlib import Path
from typing import Dict, Optional, Sequence

import pytest

from edgefarm.agent import sysinfo
from edgefarm.shared.contract.schemas import DeviceCapabilities, Environment


def write(root: Path, relative: str, content) -> None:
    path = root / relative.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


def write_cpus(root: Path, governor: str, cur_khz: Sequence[int], max_khz: Sequence[int]) -> None:
    for index, (cur, top) in enumerate(zip(cur_khz, max_khz)):
        base = f"/sys/devices/system/cpu/cpu{index}/cpufreq"
        write(root, f"{base}/scaling_governor", governor + "\n")
        write(root, f"{base}/scaling_cur_freq", f"{cur}\n")
        write(root, f"{base}/cpuinfo_max_freq", f"{top}\n")
    write(root, "/sys/devices/system/cpu/cpufreq/policy0/scaling_governor", governor)  # not a cpuN


def write_thermal(root: Path, zones: Dict[str, int]) -> None:
    for index, (kind, millidegrees) in enumerate(zones.items()):
        write(root, f"/sys/class/thermal/thermal_zone{index}/type", kind + "\n")
        write(root, f"/sys/class/thermal/thermal_zone{index}/temp", f"{millidegrees}\n")


def make_rpi3(root: Path, throttled: Optional[str] = "0x50005", governor: str = "ondemand",
              cur_khz: int = 600000, temp: int = 61234) -> Path:
    write(root, "/proc/device-tree/model", b"Raspberry Pi 3 Model B Rev 1.2\x00")
    write(root, "/proc/cpuinfo", "".join(
        f"processor\t: {i}\nCPU implementer\t: 0x41\nCPU part\t: 0xd03\n\n" for i in range(4)
    ) + "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 3 Model B Rev 1.2\n")
    write(root, "/proc/meminfo", "MemTotal:         948280 kB\nMemFree:          500000 kB\n")
    write(root, "/etc/os-release", 'PRETTY_NAME="Raspbian GNU/Linux 11 (bullseye)"\nID=raspbian\n')
    write_cpus(root, governor, [cur_khz] * 4, [1200000] * 4)
    write_thermal(root, {"cpu-thermal": temp})
    if throttled is not None:
        write(root, "/sys/devices/platform/soc/soc:firmware/get_throttled", throttled + "\n")
    return root


def make_rb5(root: Path, prime_khz: int = 2841600) -> Path:
    write(root, "/sys/devices/soc0/machine", "QRB5165\n")
    write(root, "/sys/devices/soc0/soc_id", "455\n")
    write(root, "/proc/device-tree/model", b"Qualcomm Technologies, Inc. Robotics RB5\x00")
    write(root, "/proc/device-tree/compatible", b"qcom,qrb5165-rb5\x00qcom,qrb5165\x00qcom,sm8250\x00")
    write(root, "/proc/cpuinfo", "".join(
        f"processor\t: {i}\nCPU implementer\t: 0x41\nCPU part\t: {'0xd05' if i < 4 else '0xd0d'}\n\n"
        for i in range(8)
    ))
    write(root, "/proc/meminfo", "MemTotal:        7860000 kB\n")
    write(root, "/etc/os-release", 'PRETTY_NAME="Ubuntu 18.04.6 LTS"\n')
    maxima = [1804800] * 4 + [2419200] * 3 + [2841600]
    current = [1804800] * 4 + [min(prime_khz, 2419200)] * 3 + [prime_khz]
    write_cpus(root, "performance", current, maxima)
    write_thermal(root, {"cpu-0-0-usr": 45000, "cpu-1-0-usr": 47500, "gpuss-0-usr": 90000,
                         "pm8150b-ibat-lvl0": 0, "disabled": -273000})
    return root


def make_pc(root: Path, thermal: Optional[Dict[str, int]] = None) -> Path:
    write(root, "/proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\n"
          "model name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz\n\n")
    write(root, "/proc/meminfo", "MemTotal:       32768000 kB\n")
    write(root, "/usr/lib/os-release", "PRETTY_NAME='Debian GNU/Linux 12 (bookworm)'\n")
    if thermal:
        write_thermal(root, thermal)
    return root


# ---------------------------------------------------------------- platform and static facts


def test_raspberry_pi_3(tmp_path):
    root = str(make_rpi3(tmp_path))
    assert sysinfo.detect_platform(root, machine="armv7l") == "rpi3"
    assert sysinfo.cpu_model(root) == "Cortex-A53"
    assert sysinfo.memory_bytes(root) == 948280 * 1024
    assert sysinfo.os_release(root) == "Raspbian GNU/Linux 11 (bullseye)"


def test_rb5(tmp_path):
    root = str(make_rb5(tmp_path))
    assert sysinfo.detect_platform(root, machine="aarch64") == "rb5"
    assert sysinfo.cpu_model(root) == "Cortex-A55 + Cortex-A77"
    assert sysinfo.memory_bytes(root) == 7860000 * 1024


@pytest.mark.parametrize("relative, content", [
    ("/sys/devices/soc0/soc_id", "455\n"),
    ("/sys/devices/soc0/machine", "QRB5165"),
    ("/proc/device-tree/compatible", b"thundercomm,rb5\x00qcom,qrb5165\x00"),
    ("/proc/device-tree/model", b"Qualcomm Robotics RB5\x00"),
])
def test_rb5_is_recognised_from_any_one_marker(tmp_path, relative, content):
    write(tmp_path, relative, content)
    assert sysinfo.detect_platform(str(tmp_path), machine="aarch64") == "rb5"


def test_x86_pc(tmp_path):
    root = str(make_pc(tmp_path))
    assert sysinfo.detect_platform(root, machine="x86_64") == "pc"
    assert sysinfo.detect_platform(root, machine="AMD64") == "pc"
    assert sysinfo.cpu_model(root) == "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz"
    assert sysinfo.os_release(root) == "Debian GNU/Linux 12 (bookworm)"


def test_other_boards_get_a_valid_slug(tmp_path):
    write(tmp_path, "/proc/device-tree/model", b"Raspberry Pi 4 Model B Rev 1.4\x00")
    name = sysinfo.detect_platform(str(tmp_path), machine="aarch64")
    assert name == "raspberry-pi-4-model-b-rev-1-4"
    assert DeviceCapabilities(platform=name).platform == name
    assert sysinfo.detect_platform(str(tmp_path / "empty"), machine="riscv64") == "riscv64"


def test_missing_files_give_none(tmp_path):
    root = str(tmp_path)
    assert sysinfo.cpu_model(root) is None
    assert sysinfo.memory_bytes(root) is None
    assert sysinfo.os_release(root) is None


def test_capabilities_is_a_valid_device_capabilities():
    caps = sysinfo.capabilities(["lab-a"], platform_override="bench-01", enabled_runtimes=["null"])
    parsed = DeviceCapabilities.model_validate(caps)
    assert parsed.platform == "bench-01" and parsed.labels == ["lab-a"]
    assert [r.name for r in parsed.runtimes] == ["null"]
    assert parsed.agent_version and parsed.python and parsed.cores >= 1


# ---------------------------------------------------------------- environment and throttling


def test_rpi3_environment_snapshot(tmp_path):
    env = sysinfo.read_environment(str(make_rpi3(tmp_path)))
    assert env["governor"] == "ondemand"
    assert env["freq_khz"] == [600000] * 4
    assert env["max_freq_khz"] == [1200000] * 4
    assert env["temp_c"] == pytest.approx(61.234)
    assert env["throttled_flags"] == 0x50005


def test_rpi3_firmware_flags_mark_the_run_throttled(tmp_path):
    env = sysinfo.read_environment(str(make_rpi3(tmp_path)))
    delta = sysinfo.environment_delta(env, env)
    assert delta["throttled"] is True  # 0x4 throttled now, 0x1 under-voltage now
    assert delta["throttled_flags"] == "0x50005"
    assert Environment(**delta).throttled is True


def test_rpi3_cool_at_full_speed_is_not_throttled(tmp_path):
    root = str(make_rpi3(tmp_path, throttled="0x0", governor="performance", cur_khz=1200000, temp=55000))
    env = sysinfo.read_environment(root)
    assert sysinfo.environment_delta(env, env)["throttled"] is False


def test_since_boot_flags_count_only_when_they_appear_during_the_run(tmp_path):
    before = sysinfo.read_environment(str(make_rpi3(tmp_path / "a", throttled="0x50000", temp=50000)))
    same = sysinfo.read_environment(str(make_rpi3(tmp_path / "b", throttled="0x50000", temp=50000)))
    new = sysinfo.read_environment(str(make_rpi3(tmp_path / "c", throttled="0x40000", temp=50000)))
    clean = sysinfo.read_environment(str(make_rpi3(tmp_path / "d", throttled="0x0", temp=50000)))
    assert sysinfo.environment_delta(before, same)["throttled"] is False  # throttled before the run
    assert sysinfo.environment_delta(clean, new)["throttled"] is True  # throttled during the run


def test_rb5_environment_prefers_cpu_zones_and_sees_no_throttling(tmp_path):
    env = sysinfo.read_environment(str(make_rb5(tmp_path)))
    assert env["governor"] == "performance"
    assert len(env["freq_khz"]) == 8 and env["freq_khz"][7] == 2841600
    assert env["temp_c"] == pytest.approx(47.5)  # the 90 °C GPU zone is not a CPU zone
    assert env["throttled_flags"] is None
    assert sysinfo.environment_delta(env, env)["throttled"] is False


def test_rb5_capped_frequency_under_performance_governor_is_throttled(tmp_path):
    before = sysinfo.read_environment(str(make_rb5(tmp_path / "before")))
    after = sysinfo.read_environment(str(make_rb5(tmp_path / "after", prime_khz=1996800)))
    delta = sysinfo.environment_delta(before, after)
    assert delta["throttled"] is True
    assert delta["freq_khz_before"][7] == 2841600 and delta["freq_khz_after"][7] == 1996800
    assert delta["governor"] == "performance"


def test_hot_pc_is_throttled_and_cool_pc_is_not(tmp_path):
    hot = sysinfo.read_environment(str(make_pc(tmp_path / "hot", {"acpitz": 30000, "x86_pkg_temp": 85000})))
    cool = sysinfo.read_environment(str(make_pc(tmp_path / "cool", {"x86_pkg_temp": 52000})))
    assert hot["temp_c"] == pytest.approx(85.0)
    delta = sysinfo.environment_delta(cool, hot)
    assert delta["throttled"] is True
    assert (delta["temp_c_before"], delta["temp_c_after"]) == (pytest.approx(52.0), pytest.approx(85.0))
    assert sysinfo.environment_delta(cool, cool)["throttled"] is False


def test_nothing_readable_gives_none(tmp_path):
    env = sysinfo.read_environment(str(make_pc(tmp_path)))
    assert env == {"governor": None, "freq_khz": None, "max_freq_khz": None, "temp_c": None,
                   "throttled_flags": None}
    delta = sysinfo.environment_delta(env, env)
    assert delta["throttled"] is None
    assert Environment(**delta).throttled is None
    assert sysinfo.environment_delta(None, None)["throttled"] is None


def test_governor_without_frequencies_or_temperature_cannot_tell(tmp_path):
    write(tmp_path, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "performance\n")
    delta = sysinfo.environment_delta(None, sysinfo.read_environment(str(tmp_path)))
    assert delta["governor"] == "performance"
    assert delta["throttled"] is None
