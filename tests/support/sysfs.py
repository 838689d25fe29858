"""A fake sysfs tree in a folder, for the thermal gate: one thermal zone, per-CPU cpufreq
files and the Raspberry Pi firmware's throttle bits. Every write replaces the file
atomically, so a reader on another thread or process never sees half a number."""

import os
from pathlib import Path
from typing import Optional, Sequence


class FakeSysfs:
    def __init__(self, root: Path, temp_c: float = 45.0, freq_khz: Sequence[int] = (1500000, 1500000),
                 governor: str = "performance", max_khz: int = 1500000):
        self.root = Path(root)
        self.cpus = len(freq_khz)
        self._write("sys/class/thermal/thermal_zone0/type", "cpu-thermal")
        for cpu in range(self.cpus):
            self._write(f"sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq", str(max_khz))
        self.set_temp(temp_c)
        self.set_freq(freq_khz)
        self.set_governor(governor)

    def _write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, path)

    def set_temp(self, celsius: float) -> None:
        self._write("sys/class/thermal/thermal_zone0/temp", str(int(round(celsius * 1000))))

    def set_freq(self, khz: Sequence[int]) -> None:
        for cpu, value in enumerate(khz):
            self._write(f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq", str(int(value)))

    def set_governor(self, governor: str) -> None:
        for cpu in range(self.cpus):
            self._write(f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor", governor)

    def set_throttled(self, bits: Optional[int]) -> None:
        relative = "sys/devices/platform/soc/soc:firmware/get_throttled"
        if bits is None:
            (self.root / relative).unlink(missing_ok=True)
        else:
            self._write(relative, format(bits, "x"))
