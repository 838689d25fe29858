"""Waiting for a job to end, shown live on stderr.

``wait_for_job`` runs the SDK's poll loop (``edgefarm.shared.client.waiting``:
about once a second until the job reaches a final state or the timeout passes;
a brief network failure, 429 or 5xx does not end the wait, a few in a row do, any
other 4xx does at once) and shows each answer. The display is a rich progress
bar when stderr is a terminal, otherwise one plain line each time the run
counts change, so that logs of CI jobs stay readable.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Optional, Tuple

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from edgefarm.shared.client import FarmError
from edgefarm.shared.client.waiting import POLL_SECONDS, JobSource
from edgefarm.shared.client.waiting import wait_for_job as poll_job
from edgefarm.shared.contract.enums import FINAL_RUN_STATES
from edgefarm.shared.contract.schemas import JobOut

from .errors import from_farm_error
from .output import console, say, stderr_is_tty

COUNT_ORDER = ("waiting", "queued", "leased", "running", "succeeded", "failed", "cancelled", "lost")


def run_counts(job: JobOut) -> Tuple[int, int]:
    """``(finished runs, all runs)``."""
    total = len(job.runs) or sum(job.counts.values())
    final = {str(state) for state in FINAL_RUN_STATES}
    done = sum(count for state, count in job.counts.items() if state in final)
    return done, total


def counts_text(counts: Dict[str, int]) -> str:
    """``queued 2, running 1, succeeded 3`` in lifecycle order."""
    ordered = sorted(counts.items(), key=lambda kv: (_rank(kv[0]), kv[0]))
    return ", ".join(f"{state} {count}" for state, count in ordered if count)


def _rank(state: str) -> int:
    return COUNT_ORDER.index(state) if state in COUNT_ORDER else len(COUNT_ORDER)


def describe_progress(job: JobOut) -> str:
    done, total = run_counts(job)
    detail = counts_text(job.counts)
    return f"job {job.id} {job.state}: {done}/{total} runs done" + (f" ({detail})" if detail else "")


class LineDisplay:
    """One line on stderr whenever the state or the run counts change."""

    def __init__(self) -> None:
        self._last: Optional[str] = None

    def update(self, job: JobOut) -> None:
        line = describe_progress(job)
        if line != self._last:
            say(line)
            self._last = line

    def close(self) -> None:
        pass


class LiveDisplay:
    """A rich progress bar on the terminal: finished runs out of all runs."""

    def __init__(self) -> None:
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console(stderr=True),
        )
        self._task = self._progress.add_task("job", total=None, detail="")
        self._progress.start()

    def update(self, job: JobOut) -> None:
        done, total = run_counts(job)
        self._progress.update(self._task, description=f"job {job.id} {job.state}",
                              completed=done, total=total or None, detail=counts_text(job.counts))

    def close(self) -> None:
        self._progress.stop()


def wait_for_job(
    client: JobSource, job_id: int, timeout: Optional[float] = None, interval: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> Tuple[JobOut, bool]:
    """The SDK's poll loop with the display; returns the last JobOut and whether it ended."""
    display = LiveDisplay() if stderr_is_tty() else LineDisplay()
    try:
        return poll_job(client, job_id, timeout, interval, on_update=display.update,
                        on_retry=_warn_retrying, clock=clock, sleep=sleep)
    finally:
        display.close()


def _warn_retrying(error: FarmError) -> None:
    say(f"warning: {from_farm_error(error)} (retrying)")
