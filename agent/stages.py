"""Load stages: cold load, warm load, first inference and steady-state inference of a
model, each with its time and its memory, measured in a fresh process.

``measure_stages`` starts ``python -m edgefarm.agent.stages`` (a child of the run's
process, before the run loads the model itself), which:

1. drops the model file from the page cache where it can (``os.fdatasync`` then
   ``posix_fadvise(POSIX_FADV_DONTNEED)``), then checks with ``mincore(2)`` that none of
   its pages stayed (pages another process maps do); the result says when the cache
   could not be dropped, and why;
2. loads the model (``cold_load``: a fresh process, the file read from storage), closes
   it, loads it again (``warm_load``: libraries initialised, the file in the page cache);
3. runs the first inference and then ``STEADY_RUNS`` more (``steady_inference``: their
   mean), on synthetic inputs. A runtime timed by batches in its own process (SNPE) has
   only the two loads here.

Memory: a thread samples this process's resident set (``/proc/self/statm``) every
``SAMPLE_INTERVAL_MS``; per stage, ``rss_increase_bytes`` is the RSS at its end minus at
its start and ``rss_peak_increase_bytes`` the highest sample (or the end) minus the start.
"""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edgefarm.shared.contract.schemas import StageFigures, Stages

from .clock import Stopwatch, invoke_ms, load_runtime
from .memory import current_rss_bytes
from .runtimes import LoadOptions, get_runtime_class

SAMPLE_INTERVAL_MS = 2.0
STEADY_RUNS = 5
TIMEOUT_SECONDS = 300


def resident_pages(fd: int, size: int) -> Optional[Tuple[int, int]]:
    """(pages of the file in the page cache, pages of the file) by ``mincore(2)`` on a
    read-only mapping; None where libc or the calls are missing (not Linux)."""
    import ctypes
    import ctypes.util
    import mmap

    if size <= 0 or not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.mmap.restype, libc.mmap.argtypes = ctypes.c_void_p, [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if address in (None, ctypes.c_void_p(-1).value):
        return None
    try:
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vector = ctypes.create_string_buffer(pages)
        if libc.mincore(address, size, vector) != 0:
            return None
        return sum(byte & 1 for byte in vector.raw[:pages]), pages
    finally:
        libc.munmap(address, size)


def drop_from_page_cache(path: Path) -> Tuple[bool, str]:
    """(dropped, how or why not) for ``path``: dropped when, after the advice, ``mincore``
    finds none of the file's pages cached (or cannot tell, which the note says)."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:
        return False, "the page cache could not be dropped: posix_fadvise is not available on this system"
    try:
        fd = os.open(str(path), os.O_RDONLY)
        try:
            try:
                os.fdatasync(fd)
            except OSError:
                pass  # a read-only file system: nothing is dirty
            advise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            resident = resident_pages(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
    except OSError as exc:
        return False, f"the page cache could not be dropped: posix_fadvise failed: {exc}"
    how = "posix_fadvise(POSIX_FADV_DONTNEED) on the model file before the cold load"
    if resident is None:
        return True, how + " (whether its pages left the cache could not be checked)"
    cached, pages = resident
    if cached:
        return False, (f"the page cache could not be dropped: after {how}, {cached} of its {pages} pages "
                       "stayed cached (another process maps the file)")
    return True, how + f"; mincore found none of its {pages} pages cached"


class RssSampler:
    """The highest resident set size seen since ``start``, sampled by a thread."""

    def __init__(self, interval_ms: float = SAMPLE_INTERVAL_MS):
        self.interval = interval_ms / 1e3
        self.highest: Optional[int] = None
        self._lock, self._done = threading.Lock(), threading.Event()
        threading.Thread(target=self._sample, name="rss-sampler", daemon=True).start()

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            self.note(current_rss_bytes())

    def note(self, rss: Optional[int]) -> None:
        if rss is None:
            return
        with self._lock:
            self.highest = rss if self.highest is None else max(self.highest, rss)

    def start(self) -> Optional[int]:
        """The RSS now; the highest so far is reset to it."""
        rss = current_rss_bytes()
        with self._lock:
            self.highest = rss
        return rss

    def stage(self, name: str, before: Optional[int], ms: float, runs: int = 1) -> StageFigures:
        after = current_rss_bytes()
        self.note(after)
        known = before is not None and after is not None and self.highest is not None
        return StageFigures(name=name, ms=ms, runs=runs, rss_before_bytes=before,
                            rss_increase_bytes=after - before if known else None,
                            rss_peak_increase_bytes=max(0, self.highest - before) if known else None)

    def stop(self) -> None:
        self._done.set()


def _stages(request: Dict[str, Any]) -> Stages:
    """The child's work (see the module docstring)."""
    from .synthetic import synthetic_inputs

    path = Path(request["model_path"])
    dropped, note = drop_from_page_cache(path)
    runtime_cls = get_runtime_class(request["runtime"])
    options = LoadOptions(accelerator=request.get("accelerator", "cpu"), threads=request.get("threads"),
                          options=request.get("options") or {})
    sampler = RssSampler()
    figures: List[StageFigures] = []
    try:
        for name in ("cold_load", "warm_load"):
            before = sampler.start()
            runtime, ms = load_runtime(runtime_cls, path, options)
            figures.append(sampler.stage(name, before, ms))
            if name == "cold_load":
                runtime.close()
        if runtime.timing == "invoke":
            runtime.set_inputs(synthetic_inputs(runtime.inputs))
            before = sampler.start()
            figures.append(sampler.stage("first_inference", before, invoke_ms(runtime)))
            before = sampler.start()
            times = [invoke_ms(runtime) for _ in range(STEADY_RUNS)]
            figures.append(sampler.stage("steady_inference", before, sum(times) / len(times), len(times)))
        runtime.close()
    finally:
        sampler.stop()
    return Stages(stages=figures, sample_interval_ms=SAMPLE_INTERVAL_MS, cache_dropped=dropped,
                  cache_note=note)


def measure_stages(model_path: Path, runtime: str, accelerator: str, threads: Optional[int],
                   options: Dict[str, Any]) -> Stages:
    """The stages of the model in a fresh child process, or why there are none."""
    request = {"model_path": str(model_path), "runtime": runtime, "accelerator": accelerator,
               "threads": threads, "options": options}
    watch = Stopwatch()
    try:
        done = subprocess.run([sys.executable, "-m", "edgefarm.agent.stages"], input=json.dumps(request),
                              capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return Stages(not_available=f"the stage process did not end within {TIMEOUT_SECONDS} s")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return Stages(not_available=f"the stage process failed (exit {done.returncode}): {last[:500]}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        return Stages(not_available=f"the stage process gave no figures after {watch.seconds():.1f} s")
    try:
        return Stages.model_validate_json(lines[-1])
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        return Stages(not_available=f"the stage process gave unreadable figures: {str(exc)[:500]}")


def main() -> int:
    """``python -m edgefarm.agent.stages``: a request as JSON on stdin, ``Stages`` JSON on stdout."""
    stages = _stages(json.loads(sys.stdin.read()))
    print(stages.model_dump_json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
