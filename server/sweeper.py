"""The background loop that requeues expired leases and fails runs past their
hard timeout. Every replica runs one; on PostgreSQL they skip each other's
locked rows, on SQLite the write lock serialises them."""

import asyncio
import logging

from fastapi.concurrency import run_in_threadpool

from .context import AppContext
from .queue import fail_timed_out_runs, notify_new_work, requeue_expired_leases

log = logging.getLogger(__name__)


def sweep_once(ctx: AppContext) -> dict:
    with ctx.db.write() as session:
        counts = requeue_expired_leases(session)
        counts["timed_out"] = fail_timed_out_runs(session)
        if counts["requeued"]:
            notify_new_work(session)
    if counts["requeued"]:
        ctx.waker.notify()
    return counts


async def sweep_forever(ctx: AppContext) -> None:
    while True:
        try:
            counts = await run_in_threadpool(sweep_once, ctx)
            if any(counts.values()):
                log.info("lease sweep: %s", counts)
        except Exception:  # keep sweeping; a transient database error must not stop it
            log.exception("lease sweep failed")
        await asyncio.sleep(ctx.settings.sweep_interval_seconds)
