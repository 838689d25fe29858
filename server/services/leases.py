"""The agent side of the farm: enrollment, device heartbeats, claiming a run and
assembling its lease, renewing a lease (run heartbeat), releasing it, reporting
the outcome, and the sweep that requeues expired leases.

All claim and lease SQL is ``edgefarm.server.queue``'s; these functions own the
transaction around it and wake the long polls of this process after it commits
(``queue.notify_new_work`` wakes the other replicas on PostgreSQL). Waiting for
work between two claims is the API's long poll."""

from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Optional, Tuple

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from edgefarm.shared.contract import PROTOCOL_VERSION
from edgefarm.shared.contract.enums import ACTIVE_RUN_STATES, Role, RunState
from edgefarm.shared.contract.rules import report_problem
from edgefarm.shared.contract.schemas import (
    AgentHeartbeat,
    AgentHeartbeatResponse,
    EnrollRequest,
    EnrollResponse,
    Lease,
    ModelRef,
    RunHeartbeat,
    RunHeartbeatResponse,
    RunOut,
    RunRelease,
    RunReport,
    RunReportResponse,
    RunSettings,
)

from ..auth import Principal, device_snapshot, issue_token, mark_used, token_credential
from ..context import AppContext
from ..db import Memo
from ..queue import (
    ClaimedRun,
    LeaseConflict,
    active_run_for_device,
    claim_next_run,
    claim_with_token,
    expand_waiting_jobs,
    fail_timed_out_runs,
    has_claimable_run,
    locked_rows,
    new_work_devices,
    notify_new_work,
    record_report,
    release_lease,
    renew_lease,
    report_digest,
    report_lock_statement,
    requeue_expired_leases,
    sweep_due,
)
from ..tables import Dataset, Device, Job, Model, Run, Token, utcnow
from .convert import dataset_ref, device_status, model_ref, run_out
from .errors import (
    Forbidden,
    InsufficientStorage,
    Invalid,
    LeaseNotCurrent,
    NotFound,
    ProtocolMismatch,
    Unauthorized,
)
from .references import reference_model, reference_model_id
from .watch import JudgeFirst, Prejudged, family_and_variant, prejudge
from .webhooks import announce_swept, public_base, watch_report

ACTIVE_STATES = tuple(str(state) for state in ACTIVE_RUN_STATES)
SQLITE_FULL = 13  # sqlite3's "database or disk is full"
PG_DISK_FULL = "53100"

# ---------------------------------------------------------------- devices


def _give_waiting_runs(session: Session, device: Device) -> int:
    """Fan the jobs that wait for a device like this one out to it; how many runs were made."""
    made = expand_waiting_jobs(session, device)
    if made:
        notify_new_work(session)
    return made


_SEEN = (update(Device.__table__).where(Device.__table__.c.id == bindparam("device_id"))
         .values(last_seen_at=bindparam("seen")))


def saw_device(ctx: AppContext, session: Session, device_id: int) -> None:
    """Write the device's ``last_seen_at``, at most once per ``last_seen_write_seconds``
    per device and process (``Device.last_seen_at`` says "online", to the minute)."""
    if ctx.last_seen.due(device_id):
        session.connection().execute(_SEEN, {"device_id": device_id, "seen": utcnow()})


#: The most device ids one ``write_seen_devices`` statement names.
SEEN_BATCH = 500


def write_seen_devices(ctx: AppContext) -> int:
    """Write ``last_seen_at`` of the devices whose polls found no work since the last call
    (``Throttle.defer``), in one transaction: a fleet of idle agents costs one write a
    second, not one per poll. How many devices it wrote."""
    ids = ctx.last_seen.take_deferred()
    if not ids:
        return 0
    now = utcnow()
    with ctx.db.write() as session:
        for start in range(0, len(ids), SEEN_BATCH):
            session.execute(
                update(Device).where(Device.id.in_(ids[start:start + SEEN_BATCH]))
                .values(last_seen_at=now).execution_options(synchronize_session=False)
            )
    return len(ids)


def enroll(ctx: AppContext, principal: Principal, body: EnrollRequest) -> EnrollResponse:
    """Exchange a one-time enrollment token (or an admin's) for a device and its agent token."""
    if body.protocol_version != PROTOCOL_VERSION:
        raise ProtocolMismatch(
            "Protocol version mismatch",
            f"this server speaks protocol {PROTOCOL_VERSION}, the agent {body.protocol_version}",
        )
    if principal.role not in (Role.enroll, Role.admin):
        raise Forbidden("enrollment needs an 'enroll' token")
    with ctx.db.write() as session:
        if principal.role == Role.enroll:
            token = session.get(Token, principal.token_id, with_for_update=True)
            if token.used_at is not None:
                raise Unauthorized("Unauthorized", "this enrollment token has already been used")
            mark_used(session, principal.token_id)
        caps = body.capabilities
        device = Device(name=body.name, platform=caps.platform, capabilities=caps.model_dump(mode="json"),
                        last_seen_at=utcnow())
        session.add(device)
        session.flush()
        _, secret = issue_token(session, Role.agent, f"agent {body.name}", device_id=device.id)
        made = _give_waiting_runs(session, device)
        response = EnrollResponse(
            device_id=device.id, agent_token=secret, protocol_version=PROTOCOL_VERSION,
            intervals=ctx.settings.intervals(),
        )
    ctx.last_seen.wrote(response.device_id)  # just written, with the device
    if made:
        ctx.waker.notify([response.device_id])
    return response


def device_heartbeat(ctx: AppContext, device_id: int, body: AgentHeartbeat) -> AgentHeartbeatResponse:
    """The agent is alive; optionally its capabilities changed (new runtime, labels)."""
    made = 0
    with ctx.db.write() as session:
        device = session.get(Device, device_id)
        device.last_seen_at = utcnow()
        ctx.last_seen.wrote(device_id)
        if body.capabilities is not None:
            device.capabilities = body.capabilities.model_dump(mode="json")
            device.platform = body.capabilities.platform
            made = _give_waiting_runs(session, device)
        current = active_run_for_device(session, device.id)
        response = AgentHeartbeatResponse(
            device_id=device.id, intervals=ctx.settings.intervals(), draining=device.draining,
            status=device_status(device, current, ctx.settings.offline_after_seconds),
        )
    if made:
        ctx.waker.notify([device_id])
    return response


# ---------------------------------------------------------------- leases


def lease_for(run: ClaimedRun, ctx: AppContext, base_url: str) -> Lease:
    """What an agent needs to do a claimed run: model, dataset, settings and reference.
    Each job's part (settings, task, timeout, dataset) and each model's reference are
    read once in this process (``AppContext.lease_parts``): none of them changes once
    written, job ids are never reused, and deleting a model forgets the models read.
    A read session is opened only for what is not known yet (the job, model and dataset
    of a leased run stay put)."""
    with ctx.db.read_on_demand() as session:
        memo = ctx.lease_parts
        job = memo.get(("job", run.job_id, base_url), lambda: _job_parts(session(), run.job_id, base_url))
        reference_id = reference_model_id(job["settings"], run.model_id)
        return Lease(
            run_id=run.id, lease_id=run.lease_id, lease_expires_at=run.lease_expires_at,
            attempt=run.attempt, max_attempts=run.max_attempts, intervals=ctx.settings.intervals(),
            model=_model_ref(session, memo, run.model_id, base_url),
            reference_model=(_model_ref(session, memo, reference_id, base_url)
                             if reference_id is not None else None),
            **job,
        )


def _job_parts(session: Session, job_id: int, base_url: str) -> dict:
    job = session.get(Job, job_id)
    dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
    return dict(job_id=job.id, task=job.task, timeout_seconds=job.timeout_seconds,
                settings=RunSettings.model_validate(job.settings),
                dataset=dataset_ref(dataset, base_url) if dataset else None)


def _model_ref(session: Callable[[], Session], memo: Memo, model_id: int, base_url: str) -> ModelRef:
    return memo.get(("model", model_id, base_url),
                    lambda: model_ref(session().get(Model, model_id), base_url))


def device_needs_artifact(session: Session, device_id: int, model_id: Optional[int] = None,
                          dataset_id: Optional[int] = None) -> bool:
    """Whether a run the device holds a lease on (leased or running, its lease not yet
    swept) names the model (as its model or its reference) or the dataset: the
    only artifacts an agent may download, the same its leases point it to."""
    runs = session.scalars(
        select(Run).where(Run.device_id == device_id, Run.state.in_(ACTIVE_STATES))
    )
    for run in runs:
        job = session.get(Job, run.job_id)
        if dataset_id is not None and job.dataset_id == dataset_id:
            return True
        if model_id is None:
            continue
        if run.model_id == model_id:
            return True
        reference = reference_model(session, RunSettings.model_validate(job.settings), run.model_id)
        if reference is not None and reference.id == model_id:
            return True
    return False


def work_waiting(session: Session, device_id: int) -> bool:
    """Whether a queued run waits for the device: a plain read, in a session of the
    caller's (the lease endpoint reads the agent's token in the same one)."""
    return has_claimable_run(session, device_id)


def claim(ctx: AppContext, device_id: int, base_url: str,
          found: Optional[bool] = None) -> Optional[Lease]:
    """One attempt: lease the device's best queued run, or None (also when it drains or
    is disabled). When no run waits for the device (``found``, read here unless the
    caller read it) it is a read: its ``last_seen_at``, when due (at most every
    ``last_seen_write_seconds``), is written by ``write_seen_devices`` together with
    the other idle devices'. The lease is assembled after the claim's
    transaction commits: on SQLite the write lock is held for the claim alone."""
    if found is None:
        with ctx.db.read_each() as session:
            found = work_waiting(session, device_id)
    if not found:
        if ctx.last_seen.due(device_id):
            ctx.last_seen.defer(device_id)  # written with the others' (write_seen_devices)
        return None
    with ctx.db.write() as session:
        saw_device(ctx, session, device_id)
        run = claim_next_run(session, device_id, ctx.settings.lease_seconds)
    if run is None:
        return None
    return lease_for(run, ctx, base_url)


def claim_as(ctx: AppContext, base_url: str,
             authorize: Callable[[Session], int]) -> Tuple[int, Optional[Lease]]:
    """The agent's token read and its device's best queued run claimed in one write
    transaction, for an agent whose last poll got work (``WorkingAgents``): one session
    and one statement fewer than ``work_waiting`` then ``claim``. (the device, its lease
    or None)."""
    with ctx.db.write() as session:
        device_id = authorize(session)
        saw_device(ctx, session, device_id)
        run = claim_next_run(session, device_id, ctx.settings.lease_seconds)
    if run is None:
        return device_id, None
    return device_id, lease_for(run, ctx, base_url)


def claim_by_token(ctx: AppContext, base_url: str, device_id: int,
                   token: str) -> Tuple[bool, Optional[Lease]]:
    """PostgreSQL, for an agent whose last poll got work (``WorkingAgents`` names its
    device): its token checked and its device's best run claimed in one statement that
    commits by itself (``queue.claim_with_token``), one round trip where ``claim_as``
    takes four. (whether the token holds, the lease or None); when it does not hold,
    nothing was claimed and the caller answers through ``claim_as`` (its precise 401)."""
    credential = token_credential(token)
    if credential is None:
        return False, None
    with ctx.db.each_statement() as connection:
        authorized, run = claim_with_token(connection, device_id, *credential, ctx.settings.lease_seconds)
        if authorized and ctx.last_seen.due(device_id):
            connection.execute(_SEEN, {"device_id": device_id, "seen": utcnow()})
    if run is None:
        return authorized, None
    return True, lease_for(run, ctx, base_url)


@contextmanager
def _agents_run(run_id: int) -> Iterator[None]:
    """The queue's refusals of an agent's call on a run, as domain errors."""
    try:
        yield
    except LeaseConflict as exc:
        raise LeaseNotCurrent(str(exc))
    except LookupError:
        raise NotFound("run of this device", run_id)


def renew(ctx: AppContext, run_id: int, device_id: int, body: RunHeartbeat) -> RunHeartbeatResponse:
    """Renew the lease; the answer says whether the run has been cancelled."""
    with ctx.db.write() as session:
        with _agents_run(run_id):
            run = renew_lease(session, run_id, device_id, body.lease_id, ctx.settings.lease_seconds,
                              state=body.state, progress=body.progress)
        saw_device(ctx, session, device_id)
        return RunHeartbeatResponse(
            lease_expires_at=run.lease_expires_at, cancel=run.cancel_requested,
            cancel_reason=run.error if run.cancel_requested else None,
        )


def release(ctx: AppContext, run_id: int, device_id: int, body: RunRelease) -> RunOut:
    """The agent gives the run back (it is shutting down): the run is queued again, a
    pool run in its pool, and the devices that may take it are woken."""
    with ctx.db.write() as session:
        with _agents_run(run_id):
            run = release_lease(session, run_id, device_id, body.lease_id, body.reason)
        out = run_out(run)
        woken = set(new_work_devices(session))
        if woken:
            notify_new_work(session)
    ctx.waker.notify(woken)
    return out


@contextmanager
def _database_space() -> Iterator[None]:
    """A database out of disk space (SQLite's SQLITE_FULL, PostgreSQL's 53100) as a 507
    problem: the transaction was rolled back, the agent keeps the report and retries."""
    try:
        yield
    except OperationalError as exc:
        original = exc.orig
        full = (getattr(original, "sqlite_errorcode", None) == SQLITE_FULL
                or "database or disk is full" in str(original)
                or getattr(original, "sqlstate", None) == PG_DISK_FULL)
        if not full:
            raise
        raise InsufficientStorage(
            "Insufficient storage",
            "the server's database has no disk space left; nothing was stored. "
            "Free space on the server and send it again",
        ) from exc


def report(ctx: AppContext, run_id: int, device_id: Optional[int], body: RunReport,
           authorize: Optional[Callable[[Session], Principal]] = None,
           token: Optional[str] = None) -> RunReportResponse:
    """Record the run's outcome; accepted only with the current lease id (a repeat is a
    no-op). The device is ``device_id``, else ``authorize(session)`` names it (the
    ``Principal`` of the agent's token, read with its device in one statement) inside the
    report's transaction (one session per request). ``token``: the request's bearer token;
    on PostgreSQL it is checked by the statement that locks the job and the run
    (``queue.report_lock_statement``), ``authorize`` answering only when it does not hold.
    The report's digest is computed before the transaction (on SQLite, before the lock)."""
    problem = report_problem(body)
    if problem is not None:
        raise Invalid("Invalid report", problem)
    dumped = body.model_dump(mode="json")  # once, for the digest and the stored result
    digest = report_digest(body, dumped)
    credential = token_credential(token) if token is not None and not ctx.db.is_sqlite else None
    try:
        return _store_report(ctx, run_id, device_id, body, digest, authorize, None, credential, dumped)
    except JudgeFirst:  # its series has a baseline: judged before the lock, then stored
        prejudged = prejudge(ctx, run_id, device_id, body)
        return _store_report(ctx, run_id, device_id, body, digest, authorize, prejudged, credential, dumped)


def _store_report(ctx: AppContext, run_id: int, device_id: Optional[int], body: RunReport, digest: str,
                  authorize: Optional[Callable[[Session], Principal]],
                  prejudged: Optional[Prejudged],
                  credential: Optional[Tuple[int, str]] = None,
                  dumped: Optional[dict] = None) -> RunReportResponse:
    """The report's transaction. Without ``prejudged`` (the first attempt), a result whose
    series has a baseline rolls it back with ``JudgeFirst``: the significance test runs
    in a read transaction of its own (``prejudge``), never under the write lock, and the
    report is stored again with its verdict; a result with no baseline costs no read of
    its own on PostgreSQL (the finishing statement reads it), one on SQLite.
    ``credential``: (token id, secret hash), checked with the locks in one statement."""
    with _database_space(), ctx.db.write_on_connection() as session:
        snapshot = locked = None
        if credential is not None:
            rows = report_lock_statement().rows(session.connection(), {
                "run_id": run_id, "token_id": credential[0], "secret_hash": credential[1]})
            if rows:
                row = rows[0]
                locked, device_id = locked_rows(row), row["agent_device"]
                snapshot = device_snapshot(row["device_name"], row["device_platform"],
                                           row["device_capabilities"])
        if locked is None and authorize is not None:
            principal = authorize(session)
            device_id, snapshot = principal.device_id, principal.device
        if snapshot is None:
            row = session.connection().execute(_DEVICE_SNAPSHOT, {"id": device_id}).one()
            snapshot = device_snapshot(*row)
        saw_device(ctx, session, device_id)
        with _agents_run(run_id):
            outcome = record_report(session, run_id, device_id, body, snapshot, digest=digest,
                                    shas=lambda kind, row_id: _sha256(ctx, session, kind, row_id),
                                    locked=locked, family_variant=lambda model_id: family_and_variant(
                                        ctx, session, model_id),
                                    result_body=dumped.get("result") if dumped is not None else None)
        if not outcome.duplicate:
            runtime = body.result.runtime.name if body.result else None
            watch_report(ctx, session, outcome, prejudged, runtime, judge_first=prejudged is None)
        return RunReportResponse(run_id=run_id, state=RunState(outcome.state), result_id=outcome.result_id,
                                 duplicate=outcome.duplicate)


_DEVICES = Device.__table__
_DEVICE_SNAPSHOT = select(_DEVICES.c.name, _DEVICES.c.platform, _DEVICES.c.capabilities).where(
    _DEVICES.c.id == bindparam("id"))
_SHA256 = {kind: select(table.c.sha256).where(table.c.id == bindparam("id"))
           for kind, table in (("model", Model.__table__), ("dataset", Dataset.__table__))}


def _sha256(ctx: AppContext, session: Session, kind: str, row_id: int) -> str:
    """A model's or dataset's sha256, read once per process (an artifact's content never
    changes; ``lease_parts`` is cleared when a model is deleted)."""
    return ctx.lease_parts.get(("sha256", kind, row_id), lambda: session.connection().execute(
        _SHA256[kind], {"id": row_id}).scalar_one())


def sweep_expired(ctx: AppContext) -> Dict[str, int]:
    """Requeue (or lose) runs whose lease expired and fail runs past their hard timeout."""
    now = utcnow()
    with ctx.db.read() as session:
        due = sweep_due(session, now)
    if not due:  # the usual case: one indexed read, no write transaction
        return {"requeued": 0, "lost": 0, "cancelled": 0, "timed_out": 0}
    with ctx.db.write() as session:
        counts = requeue_expired_leases(session, now)
        counts["timed_out"] = fail_timed_out_runs(session, now)
        announce_swept(session, now, public_base(ctx))
        woken = set(new_work_devices(session))
        if woken:
            notify_new_work(session)
    ctx.waker.notify(woken)
    return counts
