"""edgefarm.agent.memory: the resident set size readings of a run."""

import pytest

from edgefarm.agent import memory


def test_memory_readings_are_plausible():
    """In a fresh process, so memory freed earlier by other tests cannot be reused."""
    import subprocess
    import sys

    if memory.current_rss_bytes() is None:
        pytest.skip("no /proc on this system")
    script = (
        "import numpy as np\n"
        "from edgefarm.agent import memory\n"
        "peak, current = memory.peak_rss_bytes(), memory.current_rss_bytes()\n"
        "ballast = np.ones(64 * 1024 * 1024 // 8)\n"
        "assert memory.current_rss_bytes() > current + 32 * 1024 * 1024\n"
        "assert memory.peak_rss_bytes() > current + 32 * 1024 * 1024\n"
        "assert peak <= memory.peak_rss_bytes()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
