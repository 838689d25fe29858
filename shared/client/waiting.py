"""Waiting for a job to end: the one poll loop every client uses.

``wait_for_job`` polls ``GET /jobs/{id}`` (about once a second by default) until
the job reaches a final state or the timeout passes, and hands each answer to
``on_update`` (a display, a watchdog). A few transient failures in a row
(network, 5xx, 429) are tolerated, each told to ``on_retry``; more, or any other
failure, end the wait by raising. The clock and the sleep are passed in, so the
loop runs in tests without waiting.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, Protocol, Tuple

from edgefarm.shared.contract.enums import FINAL_JOB_STATES
from edgefarm.shared.contract.schemas import JobOut

from .errors import FarmError

#: The states a job does not leave.
POLL_SECONDS = 1.0
MAX_POLL_FAILURES = 5


class JobSource(Protocol):
    """Anything that answers a job's current state (a ``FarmClient``; a fake in tests)."""

    def get_job(self, job_id: int) -> JobOut: ...


def wait_for_job(
    jobs: JobSource, job_id: int, timeout: Optional[float] = None, interval: float = POLL_SECONDS, *,
    on_update: Optional[Callable[[JobOut], None]] = None,
    on_retry: Optional[Callable[[FarmError], None]] = None, max_failures: int = MAX_POLL_FAILURES,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> Tuple[JobOut, bool]:
    """Poll ``jobs.get_job(job_id)`` until the job ends; returns the last ``JobOut``
    and whether it ended (False: ``timeout`` seconds passed first)."""
    deadline = None if timeout is None else clock() + timeout
    job = jobs.get_job(job_id)
    while True:
        if on_update is not None:
            on_update(job)
        if job.state in FINAL_JOB_STATES:
            return job, True
        if deadline is not None and clock() >= deadline:
            return job, False
        sleep(interval if deadline is None else max(0.0, min(interval, deadline - clock())))
        job = _poll(jobs, job_id, interval, on_retry, max_failures, sleep)


def _poll(jobs: JobSource, job_id: int, interval: float,
          on_retry: Optional[Callable[[FarmError], None]], max_failures: int,
          sleep: Callable[[float], None]) -> JobOut:
    """The job's current state, retrying transient failures up to ``max_failures`` in a row."""
    failures = 0
    while True:
        try:
            return jobs.get_job(job_id)
        except FarmError as exc:
            failures += 1
            if not exc.retryable or failures >= max_failures:
                raise
            if on_retry is not None:
                on_retry(exc)
            sleep(interval)
