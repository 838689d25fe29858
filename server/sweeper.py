"""The background loops: the sweep that requeues expired leases and fails runs past
their hard timeout (``services.leases.sweep_expired``), and the writer of idle
devices' ``last_seen_at`` (``services.leases.write_seen_devices``). Every replica
runs both; on PostgreSQL the sweeps skip each other's locked rows, on SQLite the
write lock serialises them."""

import asyncio
import logging

from fastapi.concurrency import run_in_threadpool

from .context import AppContext
from .services.leases import sweep_expired, write_seen_devices

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


#: How often the idle devices' ``last_seen_at`` is written (their polls defer it).
SEEN_WRITE_SECONDS = 1.0


async def write_seen_forever(ctx: AppContext) -> None:
    """Every ``SEEN_WRITE_SECONDS``, one transaction for the devices seen meanwhile; once
    more when cancelled (the server stops), so no deferred write is dropped."""
    try:
        while True:
            await asyncio.sleep(SEEN_WRITE_SECONDS)
            try:
                await run_in_threadpool(write_seen_devices, ctx)
            except Exception:  # keep writing; a transient database error must not stop it
                log.exception("writing devices' last_seen_at failed")
    finally:
        try:
            write_seen_devices(ctx)
        except Exception:
            log.exception("writing devices' last_seen_at at shutdown failed")
