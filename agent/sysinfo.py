"""Facts about this device, read from ``/proc``, ``/sys`` and ``/etc``.

This module owns:

* ``detect_platform``: "rpi3", "rb5", "pc" or a slug of the board's name.
* The static facts of the capability report: ``cpu_model``, ``cpu_count``,
  ``memory_bytes``, ``os_release``, ``python_version``, ``machine_arch``,
  ``hostname`` and ``capabilities`` (a ``edgefarm.shared.contract.schemas.DeviceCapabilities`` dict).
* The sensor readers of the thermal gate (``edgefarm.agent.thermal``):
  ``read_governor``, ``read_temperature_c``, ``read_freq_khz`` and
  ``read_throttled_flags`` (sysfs, else ``vcgencmd get_throttled`` when it exists).
* The thermal and frequency provenance of a run: ``read_environment`` takes a
  snapshot (governor, per-CPU frequencies, temperature, Raspberry Pi firmware
  throttle flags) and ``environment_delta`` turns a before/after pair into a
  ``edgefarm.shared.contract.schemas.Environment`` dict with a ``throttled`` verdict.

Every reader takes ``root`` (default "/") so tests can point it at a fake tree;
a file that is missing or unreadable gives None, never an exception.
"""

import os
import platform
import re
import socket
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

#: Raspberry Pi firmware ``get_throttled`` bits: 0x1 under-voltage, 0x2 ARM frequency capped,
#: 0x4 throttled, 0x8 soft temperature limit, now; the same << 16 "has occurred since boot".
THROTTLE_NOW_MASK = 0xF
THROTTLE_SINCE_BOOT_MASK = 0xF0000
#: Temperature (°C) at or above which a run counts as thermally throttled.
HOT_CELSIUS = 80.0
#: Under the performance governor, a top frequency below this share of the maximum means capping.
FREQUENCY_CAP_RATIO = 0.9

_X86_MACHINES = ("x86_64", "amd64", "i386", "i486", "i586", "i686", "x86")
_RB5_MARKERS = ("qrb5165", "robotics rb5", "qualcomm rb5", "-rb5")
_RB5_SOC_IDS = ("455",)  # QRB5165
_PREFERRED_THERMAL = ("cpu", "soc", "x86_pkg")
# ARM "CPU part" codes (implementer 0x41) of the cores found on edge boards.
_ARM_PARTS = {"0xc07": "Cortex-A7", "0xd03": "Cortex-A53", "0xd04": "Cortex-A35",
              "0xd05": "Cortex-A55", "0xd07": "Cortex-A57", "0xd08": "Cortex-A72",
              "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0d": "Cortex-A77",
              "0xd41": "Cortex-A78", "0xd44": "Cortex-X1"}


def _path(root: str, *parts: str) -> Path:
    return Path(root, *(p.lstrip("/") for p in parts))


def _read_text(root: str, relative: str) -> Optional[str]:
    """The file's text with NULs (device-tree strings) turned into spaces; None if unreadable."""
    try:
        raw = _path(root, relative).read_bytes()
    except OSError:
        return None
    return raw.replace(b"\x00", b" ").decode("utf-8", "replace").strip()


def _read_int(path: Path, base: int = 10) -> Optional[int]:
    try:
        return int(path.read_text().strip(), base)
    except (OSError, ValueError):
        return None


def slug(text: str) -> str:
    """A platform name from free text: lowercase, runs of other characters as "-", 40 at most."""
    value = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return value[:40].rstrip("-") or "unknown"


# ---------------------------------------------------------------- platform and static facts


def _is_rb5(root: str) -> bool:
    texts = [_read_text(root, p) for p in ("/sys/devices/soc0/machine", "/proc/device-tree/model",
                                           "/proc/device-tree/compatible")]
    for text in texts:
        lowered = (text or "").lower()
        if any(marker in lowered for marker in _RB5_MARKERS):
            return True
    return (_read_text(root, "/sys/devices/soc0/soc_id") or "") in _RB5_SOC_IDS


def detect_platform(root: str = "/", machine: Optional[str] = None) -> str:
    """"rpi3", "rb5", "pc" (x86 machines), else a slug of the device-tree model or the arch."""
    model = _read_text(root, "/proc/device-tree/model") or ""
    if "Raspberry Pi 3" in model:
        return "rpi3"
    if _is_rb5(root):
        return "rb5"
    arch = (machine if machine is not None else machine_arch()).lower()
    if arch in _X86_MACHINES:
        return "pc"
    return slug(model) if model else slug(arch or "unknown")


def cpu_model(root: str = "/") -> Optional[str]:
    """"model name" (x86), else the ARM core types from "CPU part", else "Hardware"."""
    text = _read_text(root, "/proc/cpuinfo")
    if not text:
        return None
    fields: Dict[str, List[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), []).append(value.strip())
    if fields.get("model name"):
        return fields["model name"][0]
    cores = []
    for part in fields.get("cpu part", []):
        name = _ARM_PARTS.get(part.lower(), f"ARM part {part}")
        if name not in cores:
            cores.append(name)
    if cores:
        return " + ".join(cores)
    return (fields.get("hardware") or [None])[0]


def cpu_count() -> Optional[int]:
    return os.cpu_count()


def memory_bytes(root: str = "/") -> Optional[int]:
    """MemTotal from /proc/meminfo, in bytes."""
    text = _read_text(root, "/proc/meminfo") or ""
    match = re.search(r"^MemTotal:\s*(\d+)\s*kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def os_release(root: str = "/") -> Optional[str]:
    """PRETTY_NAME from /etc/os-release (or /usr/lib/os-release)."""
    for relative in ("/etc/os-release", "/usr/lib/os-release"):
        text = _read_text(root, relative)
        match = re.search(r"^PRETTY_NAME=(.*)$", text or "", re.MULTILINE)
        if match:
            return match.group(1).strip().strip("\"'")
    return None


def python_version() -> str:
    return platform.python_version()


def machine_arch() -> str:
    return platform.machine()


def hostname() -> str:
    return socket.gethostname()


def capabilities(config_labels: Sequence[str], platform_override: Optional[str] = None,
                 enabled_runtimes: Optional[Sequence[str]] = None, root: str = "/") -> Dict[str, Any]:
    """The ``DeviceCapabilities`` dict this agent reports at enrollment and in heartbeats."""
    from . import __version__
    from .runtimes import available_runtimes

    return {
        "platform": platform_override or detect_platform(root),
        "labels": list(config_labels or []),
        "hostname": hostname(),
        "arch": machine_arch(),
        "cpu_model": cpu_model(root),
        "cores": cpu_count(),
        "memory_bytes": memory_bytes(root),
        "os": os_release(root),
        "python": python_version(),
        "agent_version": __version__,
        "runtimes": available_runtimes(enabled_runtimes),
    }


# ---------------------------------------------------------------- thermal and frequency provenance


def _cpu_dirs(root: str) -> List[Path]:
    base = _path(root, "/sys/devices/system/cpu")
    try:
        found = [p for p in base.iterdir() if re.fullmatch(r"cpu\d+", p.name)]
    except OSError:
        return []
    return sorted(found, key=lambda p: int(p.name[3:]))


def _frequencies(root: str, name: str) -> Optional[List[int]]:
    values = [_read_int(cpu / "cpufreq" / name) for cpu in _cpu_dirs(root)]
    known = [v for v in values if v is not None]
    return known or None


def _temperature_c(root: str) -> Optional[float]:
    """Hottest plausible thermal zone, among the CPU/SoC zones when there are any."""
    preferred, others = [], []
    for zone in sorted(_path(root, "/sys/class/thermal").glob("thermal_zone*")):
        millidegrees = _read_int(zone / "temp")
        if millidegrees is None or not -40000 < millidegrees < 200000:
            continue  # disabled zones read 0 or -273000 on some boards
        kind = (_read_text(str(zone), "type") or "").lower()
        (preferred if any(k in kind for k in _PREFERRED_THERMAL) else others).append(millidegrees / 1000.0)
    readings = preferred or others
    return max(readings) if readings else None


def _throttled_flags(root: str) -> Optional[int]:
    return _read_int(_path(root, "/sys/devices/platform/soc/soc:firmware/get_throttled"), 16)


def read_governor(root: str = "/") -> Optional[str]:
    """The cpufreq governor of the first CPU, None without cpufreq."""
    cpus = _cpu_dirs(root)
    return (_read_text(str(cpus[0]), "cpufreq/scaling_governor") or None) if cpus else None


def read_temperature_c(root: str = "/") -> Optional[float]:
    """The SoC temperature (°C): the hottest plausible CPU/SoC thermal zone."""
    return _temperature_c(root)


def read_freq_khz(root: str = "/") -> Optional[List[int]]:
    """The current frequency of each CPU (kHz), None without cpufreq."""
    return _frequencies(root, "scaling_cur_freq")


def vcgencmd_throttled(binary: str = "vcgencmd") -> Optional[int]:
    """The Raspberry Pi firmware's ``vcgencmd get_throttled`` bits; None when the binary is
    absent, fails or answers something else."""
    import shutil
    import subprocess

    path = shutil.which(binary) if binary else None
    if path is None:
        return None
    try:
        answer = subprocess.run([path, "get_throttled"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"throttled=(0x[0-9a-fA-F]+)", answer.stdout or "")
    return int(match.group(1), 16) if answer.returncode == 0 and match else None


def read_throttled_flags(root: str = "/", vcgencmd: str = "vcgencmd") -> Optional[int]:
    """The firmware throttle bits from sysfs, else from ``vcgencmd`` when it exists."""
    flags = _throttled_flags(root)
    return flags if flags is not None else vcgencmd_throttled(vcgencmd)


def firmware_throttled(before: Optional[int], after: Optional[int]) -> Optional[bool]:
    """Throttling now (in either reading) or newly recorded since boot between them."""
    return _firmware_throttled(before, after)


def read_environment(root: str = "/") -> Dict[str, Any]:
    """A snapshot: governor (cpu0), freq_khz and max_freq_khz (per CPU), temp_c, throttled_flags."""
    cpus = _cpu_dirs(root)
    governor = _read_text(str(cpus[0]), "cpufreq/scaling_governor") if cpus else None
    return {
        "governor": governor or None,
        "freq_khz": _frequencies(root, "scaling_cur_freq"),
        "max_freq_khz": _frequencies(root, "cpuinfo_max_freq"),
        "temp_c": _temperature_c(root),
        "throttled_flags": _throttled_flags(root),
    }


def _firmware_throttled(before: Optional[int], after: Optional[int]) -> Optional[bool]:
    """Throttling now (in either reading) or newly recorded since boot during the run."""
    if before is None and after is None:
        return None
    now = ((before or 0) | (after or 0)) & THROTTLE_NOW_MASK
    # Without a "before" reading, a "since boot" bit may well have been set during the run.
    already_seen = before if before is not None else 0
    new_since_boot = (after or 0) & ~already_seen & THROTTLE_SINCE_BOOT_MASK
    return bool(now or new_since_boot)


def _throttle_verdict(before: Dict[str, Any], after: Dict[str, Any]) -> Optional[bool]:
    """True on any sign of throttling, False when readings exist and show none, None without any."""
    signs = []
    firmware = _firmware_throttled(before.get("throttled_flags"), after.get("throttled_flags"))
    if firmware is not None:
        signs.append(firmware)
    freqs, max_freqs = after.get("freq_khz"), after.get("max_freq_khz")
    if freqs and max_freqs:
        capped = max(freqs) < FREQUENCY_CAP_RATIO * max(max_freqs)
        signs.append(capped and after.get("governor") == "performance")
    if after.get("temp_c") is not None:
        signs.append(after["temp_c"] >= HOT_CELSIUS)
    return any(signs) if signs else None


def environment_delta(before: Optional[Dict[str, Any]], after: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """An ``Environment`` dict from two ``read_environment`` snapshots (either may be None)."""
    before, after = before or {}, after or {}
    flags = after.get("throttled_flags")
    if flags is None:
        flags = before.get("throttled_flags")
    return {
        "governor": after.get("governor") or before.get("governor"),
        "freq_khz_before": before.get("freq_khz"),
        "freq_khz_after": after.get("freq_khz"),
        "temp_c_before": before.get("temp_c"),
        "temp_c_after": after.get("temp_c"),
        "throttled": _throttle_verdict(before, after),
        "throttled_flags": None if flags is None else hex(flags),
    }
