"""Memory of a run: the resident set size of this process and of its children.

``peak_rss_bytes`` is the peak of this process so far (approximate, as
benchmark_model says), ``children_peak_rss_bytes`` the peak of the largest child
process that has ended (a batch runtime's inference process, ``snpe-net-run``), and
``current_rss_bytes`` the resident size now. Each gives None where the system
cannot tell (no ``resource`` module on Windows, no ``/proc``).
"""

import os
import sys
from typing import Optional


def _max_rss_bytes(who: str) -> Optional[int]:
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(getattr(resource, who)).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS: bytes; Linux: KiB


def peak_rss_bytes() -> Optional[int]:
    """Peak resident set size of this process so far."""
    return _max_rss_bytes("RUSAGE_SELF")


def children_peak_rss_bytes() -> Optional[int]:
    """Peak resident set size of the largest child process waited for so far."""
    return _max_rss_bytes("RUSAGE_CHILDREN")


def current_rss_bytes() -> Optional[int]:
    """Resident set size now, from /proc/self/statm; None where /proc is missing."""
    try:
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")
