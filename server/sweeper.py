"""The background loop that requeues expired leases and fails runs past their
hard timeout (``services.leases.sweep_expired``). Every replica runs one; on
PostgreSQL they skip each other's locked rows, on SQLite the write lock
serialises them."""

import asyncio
import logging

from fastapi.concurrency import run_in_threadpool

from .context import AppContext
from .services.leases import sweep_expired

log = logging.getLogger(__name__)


async def sweep_forever(ctx: AppContext) -> None:
    while True:
        try:
            counts = await run_in_threadpool(sweep_expired, ctx)
            if any(counts.values()):
                log.info("lease sweep: %s", counts)
        except Exception:  # keep sweeping; a transient database error must not stop it
            log.exception("lease sweep failed")
        await asyncio.sleep(ctx.settings.sweep_interval_seconds)
