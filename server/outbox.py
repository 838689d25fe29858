"""Sending the webhook outbox (``WebhookDelivery`` rows, written by
``services.webhooks.announce`` in the transaction of the event they announce).

Every replica runs ``deliver_forever``. A delivery is claimed by a conditional
write (``claimed_until`` in the future; on PostgreSQL the candidates are read
``FOR UPDATE SKIP LOCKED``), sent with no transaction open, and its outcome
written back: 2xx is ``delivered``; anything else is retried after
``webhook_retry_seconds * 2^(attempts-1)`` (at most an hour) until
``webhook_max_attempts`` attempts have failed. A replica that dies mid-send
leaves a claim that expires, so the delivery is sent again: delivery is at least
once, and ``X-EdgeFarm-Delivery`` (the delivery id) lets a receiver drop a repeat.
The same loop announces devices that went offline.
"""

import asyncio
import logging
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import List, Optional, Tuple

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import or_, select, update

from edgefarm.shared.contract.signatures import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    signature_header,
)
from edgefarm.shared.contract.watch import DeliveryState

from . import __version__
from .context import AppContext
from .services.webhooks import announce_offline_devices
from .tables import Webhook, WebhookDelivery, utcnow

log = logging.getLogger(__name__)

BATCH = 20  # deliveries claimed at once
MAX_BACKOFF_SECONDS = 3600.0
ERROR_CHARS = 500


def _due(now: datetime):
    return (WebhookDelivery.state == str(DeliveryState.pending), WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now))


def claim_due(ctx: AppContext, now: Optional[datetime] = None,
              limit: int = BATCH) -> List[Tuple[int, str, str, str, str, datetime]]:
    """Claim due deliveries: (id, event, body, url, secret, claimed_until) of each."""
    now = now or utcnow()
    hold = now + timedelta(seconds=ctx.settings.webhook_timeout_seconds * 3 + 30)
    claimed = []
    with ctx.db.write() as session:
        query = (select(WebhookDelivery.id).where(*_due(now))
                 .order_by(WebhookDelivery.next_attempt_at).limit(limit))
        if ctx.db.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for delivery_id in list(session.scalars(query)):
            won = session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id, *_due(now))
                                  .values(claimed_until=hold).execution_options(synchronize_session=False))
            if won.rowcount == 1:
                row = session.get(WebhookDelivery, delivery_id)
                hook = session.get(Webhook, row.webhook_id)
                claimed.append((row.id, row.event, row.body, hook.url, hook.secret, hold))
    return claimed


def send(delivery_id: int, event: str, body: str, url: str, secret: str,
         timeout: float) -> Tuple[bool, Optional[int], Optional[str]]:
    """POST one signed delivery: (accepted, status code, error). The standard library's
    HTTP client: the server keeps no HTTP client library; redirects are not followed."""
    raw = body.encode()
    headers = {"Content-Type": "application/json",
               SIGNATURE_HEADER: signature_header(secret, int(time.time()), raw),
               EVENT_HEADER: event, DELIVERY_HEADER: str(delivery_id),
               "User-Agent": f"edgefarm-webhooks/{__version__}"}
    request = urllib.request.Request(url, data=raw, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return True, response.status, None
    except urllib.error.HTTPError as exc:
        text = exc.read(ERROR_CHARS).decode("utf-8", "replace")
        return False, exc.code, f"HTTP {exc.code}: {text}"[:ERROR_CHARS]
    except (OSError, ValueError) as exc:  # refused, unreachable, timed out, bad URL
        return False, None, f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx is an answer like any other non-2xx: the delivery is retried


_OPENER = urllib.request.build_opener(_NoRedirects)


def record(ctx: AppContext, delivery_id: int, hold: datetime, accepted: bool, code: Optional[int],
           error: Optional[str], now: Optional[datetime] = None) -> None:
    """Write an attempt's outcome (only while this claim still holds the delivery)."""
    now = now or utcnow()
    with ctx.db.write() as session:
        row = session.get(WebhookDelivery, delivery_id, populate_existing=True)
        if row is None or row.claimed_until != hold or row.state != str(DeliveryState.pending):
            return
        row.attempts += 1
        row.response_code, row.last_error, row.claimed_until = code, error, None
        if accepted:
            row.state, row.delivered_at = str(DeliveryState.delivered), now
        elif row.attempts >= ctx.settings.webhook_max_attempts:
            row.state = str(DeliveryState.failed)
        else:
            wait = min(ctx.settings.webhook_retry_seconds * 2 ** (row.attempts - 1), MAX_BACKOFF_SECONDS)
            row.next_attempt_at = now + timedelta(seconds=wait)


def deliver_due(ctx: AppContext) -> int:
    """Claim, send and record the due deliveries; how many were attempted."""
    claimed = claim_due(ctx)
    timeout = ctx.settings.webhook_timeout_seconds
    for delivery_id, event, body, url, secret, hold in claimed:
        accepted, code, error = send(delivery_id, event, body, url, secret, timeout)
        if not accepted:
            log.warning("webhook delivery %s to %s failed: %s", delivery_id, url, error)
        record(ctx, delivery_id, hold, accepted, code, error)
    return len(claimed)


def outbox_pass(ctx: AppContext) -> int:
    """Announce devices that went offline, then send what is due."""
    announce_offline_devices(ctx, (ctx.settings.public_url or "").rstrip("/"))
    return deliver_due(ctx)


async def deliver_forever(ctx: AppContext) -> None:
    while True:
        try:
            await run_in_threadpool(outbox_pass, ctx)
        except Exception:  # keep delivering; a transient database error must not stop it
            log.exception("webhook outbox pass failed")
        await asyncio.sleep(ctx.settings.webhook_interval_seconds)
