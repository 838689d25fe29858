"""Webhooks: an admin's registrations (URL, event filter, a signing secret shown
once), the outbox rows that announce events, and the deliveries listed with
their status.

``announce(session, event, text, data)`` writes one outbox row per webhook that
asks for the event, inside the caller's transaction: the event and its
deliveries commit (or roll back) together, and no request waits on a receiver.
``edgefarm.server.outbox`` sends them. The body is JSON (documented in
``docs/webhooks.md``): ``event``, ``created_at``, a Slack-compatible ``text`` and
the event's ``data``.
"""

import json
import secrets
from datetime import datetime, timedelta
from typing import Any, Dict, List, Optional

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from edgefarm.shared.contract.enums import JobState, RunState
from edgefarm.shared.contract.schemas import DEFAULT_PAGE_SIZE
from edgefarm.shared.contract.watch import DeliveryOut, DeliveryState, Event, WebhookCreate, WebhookOut

from ..context import AppContext
from ..tables import (
    Device,
    DeviceOfflineNotice,
    Job,
    Model,
    Regression,
    Result,
    Run,
    Webhook,
    WebhookDelivery,
    utcnow,
)
from .lookups import get_row
from .pages import Page, read_page
from .watch import JudgeFirst, Prejudged, baseline_result_id, check_result, series_for


def webhook_out(row: Webhook, secret: Optional[str] = None) -> WebhookOut:
    return WebhookOut(id=row.id, url=row.url, events=row.events, description=row.description,
                      active=row.active, created_at=row.created_at, secret=secret)


def delivery_out(row: WebhookDelivery) -> DeliveryOut:
    pending = row.state == DeliveryState.pending
    return DeliveryOut(id=row.id, webhook_id=row.webhook_id, event=row.event, state=row.state,
                       attempts=row.attempts, next_attempt_at=row.next_attempt_at if pending else None,
                       last_error=row.last_error, response_code=row.response_code,
                       created_at=row.created_at, delivered_at=row.delivered_at)


def create_webhook(ctx: AppContext, body: WebhookCreate) -> WebhookOut:
    """Register a URL; the answer carries its signing secret, this once."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    with ctx.db.write() as session:
        row = Webhook(url=str(body.url), events=sorted({str(e) for e in body.events}),
                      description=body.description, secret=secret)
        session.add(row)
        session.flush()
        return webhook_out(row, secret)


def list_webhooks(ctx: AppContext, limit: int = DEFAULT_PAGE_SIZE, offset: int = 0) -> Page[WebhookOut]:
    with ctx.db.read() as session:
        return read_page(session, select(Webhook).order_by(Webhook.id), limit, offset, webhook_out)


def delete_webhook(ctx: AppContext, webhook_id: int) -> WebhookOut:
    """Remove a webhook and its deliveries (pending ones are not sent)."""
    with ctx.db.write() as session:
        row = get_row(session, Webhook, webhook_id, "webhook")
        out = webhook_out(row)
        session.delete(row)
        return out


def list_deliveries(ctx: AppContext, webhook_id: int, state: Optional[str] = None,
                    limit: int = DEFAULT_PAGE_SIZE, offset: int = 0) -> Page[DeliveryOut]:
    """A webhook's deliveries, newest first."""
    with ctx.db.read() as session:
        get_row(session, Webhook, webhook_id, "webhook")
        query: Select = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
        if state:
            query = query.where(WebhookDelivery.state == state)
        return read_page(session, query.order_by(WebhookDelivery.id.desc()), limit, offset, delivery_out)


# ---------------------------------------------------------------- announcing events


def announce(session: Session, event: Event, text: str, data: Dict[str, Any],
             now: Optional[datetime] = None) -> int:
    """Queue the event for every active webhook that asks for it; how many deliveries."""
    now = now or utcnow()
    hooks = [h for h in session.scalars(select(Webhook).where(Webhook.active)) if str(event) in h.events]
    if not hooks:
        return 0
    body = json.dumps({"event": str(event), "created_at": now.isoformat(), "text": text, "data": data},
                      sort_keys=True, default=str)
    session.add_all(WebhookDelivery(webhook_id=h.id, event=str(event), body=body,
                                    state=str(DeliveryState.pending), next_attempt_at=now, created_at=now)
                    for h in hooks)
    return len(hooks)


def _run_data(session: Session, run: Run, base_url: str) -> Dict[str, Any]:
    model, device = session.get(Model, run.model_id), session.get(Device, run.device_id)
    return {"run_id": run.id, "job_id": run.job_id, "state": run.state, "error": run.error,
            "model": model.name, "device": device.name, "url": f"{base_url}/jobs"}


def announce_job(session: Session, job: Job, base_url: str) -> None:
    counts = dict(session.execute(select(Run.state, func.count()).where(Run.job_id == job.id)
                                  .group_by(Run.state)).all())
    text = f"EdgeFarm job {job.id}{' ' + repr(job.name) if job.name else ''} {job.state}: " + ", ".join(
        f"{n} {state}" for state, n in sorted(counts.items()))
    announce(session, Event.job_finished, text, {"job_id": job.id, "name": job.name, "state": job.state,
                                                 "counts": counts, "url": f"{base_url}/jobs"})


def announce_failed_run(session: Session, run: Run, base_url: str) -> None:
    data = _run_data(session, run, base_url)
    text = (f"EdgeFarm run {run.id} of job {run.job_id} {run.state}: {data['model']} on "
            f"{data['device']}" + (f" ({run.error})" if run.error else ""))
    announce(session, Event.run_failed, text, data)


def announce_regressions(session: Session, rows: List[Regression], base_url: str) -> None:
    for row in rows:
        device = session.get(Device, row.device_id)
        url = f"{base_url}/results/{row.result_id}"
        text = (f"EdgeFarm regression: {row.family}/{row.variant} on {device.name} ({row.runtime}): "
                f"{row.detail} <{url}|result {row.result_id}>")
        announce(session, Event.regression_found, text, {
            "regression_id": row.id, "result_id": row.result_id, "baseline_result_id": row.baseline_result_id,
            "job_id": row.job_id, "family": row.family, "variant": row.variant, "device": device.name,
            "runtime": row.runtime, "metric": row.metric, "rule": row.rule,
            "baseline_value": row.baseline_value, "value": row.value, "change": row.change,
            "threshold": row.threshold, "url": url})


def announce_swept(session: Session, now: datetime, base_url: str) -> None:
    """After a lease sweep at ``now``: the runs it lost or timed out, and the jobs it ended
    (also by ending a cancelled run whose agent went silent)."""
    runs = list(session.scalars(select(Run).where(Run.finished_at == now, Run.state.in_(
        [str(RunState.lost), str(RunState.failed), str(RunState.cancelled)]))))
    for run in runs:
        if run.state != str(RunState.cancelled):
            announce_failed_run(session, run, base_url)
    for job_id in sorted({r.job_id for r in runs}):
        job = session.get(Job, job_id)
        if JobState(job.state).is_final and job.finished_at is not None and job.finished_at >= now:
            announce_job(session, job, base_url)


# ---------------------------------------------------------------- devices going offline


def announce_offline_devices(ctx: AppContext, base_url: str, now: Optional[datetime] = None) -> int:
    """Announce each enabled device silent for ``offline_after_seconds`` once per silence
    (``DeviceOfflineNotice`` keeps the ``last_seen_at`` announced). Safe on any number of
    replicas: the notice row is claimed by a conditional write; a race loses cleanly."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=ctx.settings.offline_after_seconds)
    with ctx.db.read() as session:
        silent = session.execute(
            select(Device.id, Device.last_seen_at, DeviceOfflineNotice.device_id,
                   DeviceOfflineNotice.last_seen_at)
            .outerjoin(DeviceOfflineNotice, DeviceOfflineNotice.device_id == Device.id)
            .where(Device.enabled, Device.last_seen_at.is_not(None), Device.last_seen_at < cutoff)
            .where(or_(DeviceOfflineNotice.device_id.is_(None),
                       DeviceOfflineNotice.last_seen_at.is_(None),
                       DeviceOfflineNotice.last_seen_at != Device.last_seen_at))).all()
    announced = 0
    for device_id, seen, noticed, _ in silent:
        try:
            with ctx.db.write() as session:
                if noticed is None:
                    session.add(DeviceOfflineNotice(device_id=device_id, last_seen_at=seen))
                    session.flush()
                else:
                    claimed = session.execute(
                        update(DeviceOfflineNotice).where(
                            DeviceOfflineNotice.device_id == device_id,
                            or_(DeviceOfflineNotice.last_seen_at.is_(None),
                                DeviceOfflineNotice.last_seen_at != seen))
                        .values(last_seen_at=seen).execution_options(synchronize_session=False))
                    if claimed.rowcount != 1:
                        continue
                device = session.get(Device, device_id)
                silence = (now - seen).total_seconds()
                announce(session, Event.device_offline,
                         f"EdgeFarm device {device.name} ({device.platform}) is offline: "
                         f"not seen for {silence:.0f} s",
                         {"device_id": device.id, "device": device.name, "platform": device.platform,
                          "last_seen_at": seen.isoformat(), "url": f"{base_url}/devices"}, now)
                announced += 1
        except IntegrityError:  # another replica announced it first
            continue
    return announced


def public_base(ctx: AppContext) -> str:
    """The server's public URL for links in payloads (``EDGEFARM_PUBLIC_URL``; else links
    are paths)."""
    return (ctx.settings.public_url or "").rstrip("/")


def watch_report(ctx: AppContext, session: Session, outcome: Any, prejudged: Optional[Prejudged] = None,
                 runtime: Optional[str] = None, judge_first: bool = False) -> None:
    """In a report's transaction: check the new result against its baseline (judged
    beforehand: ``watch.prejudge``) and announce what the report changed (a regression,
    a failed run, a job that ended). ``outcome``: the queue's ``ReportOutcome``; a result
    whose series has no baseline costs one read, and a report that announces nothing no
    ORM load; ``runtime``: the result's runtime (its series). ``judge_first``: a result
    with a baseline and no ``prejudged`` raises ``JudgeFirst`` (the caller rolls back,
    judges in a read transaction and stores the report again) instead of being judged
    here, under the write lock."""
    base_url = public_base(ctx)
    if outcome.result_id is not None:
        if outcome.baseline_read:  # read by the report's own statement (PostgreSQL)
            baseline_id = outcome.baseline_id
        else:
            baseline_id = baseline_result_id(session, series_for(ctx, session, outcome.model_id,
                                                                 outcome.device_id, runtime))
        if baseline_id is not None and baseline_id != outcome.result_id:
            if judge_first and prejudged is None:
                raise JudgeFirst(baseline_id)
            result = session.get(Result, outcome.result_id)
            announce_regressions(session, check_result(session, result, prejudged), base_url)
    if outcome.state == str(RunState.failed):
        announce_failed_run(session, session.get(Run, outcome.run_id, populate_existing=True), base_url)
    if outcome.job_ended:
        announce_job(session, session.get(Job, outcome.job_id, populate_existing=True), base_url)
