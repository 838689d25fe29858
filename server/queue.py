"""Every piece of SQL that moves a run through its life: fan-out, claim, lease
renewal and release, reports, expiry sweeps, cancellation and job state.

Helpers never commit: the caller owns the transaction (``Database.write``).
Claiming is one atomic ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP
LOCKED) AND state = 'queued' RETURNING id``. PostgreSQL honours the row lock and
skips rows other transactions hold; SQLite drops the locking clause, and there
the process-wide write lock of ``Database`` serialises claims instead. A device
claims its own runs and, while it holds no lease, the unassigned runs of the jobs
placed ``any`` whose pool it is in (``JobPoolDevice``); the claim sets the run's
device, a requeue clears it again.

Run states: queued -> leased -> running -> succeeded | failed | cancelled | lost.
"""

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from types import SimpleNamespace
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from sqlalchemy import (
    Integer,
    Interval,
    Select,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.orm import Session, aliased

from edgefarm.shared.contract.enums import (
    ACTIVE_RUN_STATES,
    FINAL_RUN_STATES,
    JobState,
    Placement,
    Role,
    RunState,
)
from edgefarm.shared.contract.rules import headline_metric, report_problem
from edgefarm.shared.contract.schemas import RunReport, RunSettings
from edgefarm.shared.contract.selectors import DeviceSelector, parse_selector

from .db import DriverStatement
from .tables import Baseline, Dataset, Device, Job, JobModel, JobPoolDevice, Model, Result, Run, Token, utcnow

ACTIVE = tuple(str(s) for s in ACTIVE_RUN_STATES)
FINAL = tuple(str(s) for s in FINAL_RUN_STATES)
NOTIFY_CHANNEL = "edgefarm_runs"


# Statements of every report, built once: Core columns (no ORM loading) and bound
# parameters, so each execution reuses the compiled form.
_RUNS = Run.__table__
_JOB_OF_RUN = select(_RUNS.c.job_id).where(_RUNS.c.id == bindparam("run_id"))
_RUN_COUNTS = (select(_RUNS.c.state, func.count()).where(_RUNS.c.job_id == bindparam("job_id"))
               .group_by(_RUNS.c.state))
_MODEL_SHA256 = select(Model.__table__.c.sha256).where(Model.__table__.c.id == bindparam("id"))
_DATASET_SHA256 = select(Dataset.__table__.c.sha256).where(Dataset.__table__.c.id == bindparam("id"))


_JOBS = Job.__table__
_SET_DEADLINE = (update(_RUNS).where(_RUNS.c.id == bindparam("run_id"))
                 .values(deadline_at=bindparam("deadline")))
_TOUCH_JOB = (update(_JOBS).where(_JOBS.c.id == bindparam("job_id"), _JOBS.c.state != bindparam("new_state"))
              .values(state=bindparam("new_state"), finished_at=None))


class LeaseConflict(Exception):
    """The lease named by an agent is not (or no longer) the run's current lease."""


# ---------------------------------------------------------------- fan-out


def device_offers(device: Device, runtime: str, accelerator: str) -> bool:
    """Whether the device reported the runtime with the accelerator asked for."""
    for info in (device.capabilities or {}).get("runtimes", []):
        if info.get("name") == runtime:
            return accelerator in (info.get("accelerators") or ["cpu"])
    return False


def device_labels(device: Device) -> List[str]:
    """Labels set by an admin plus those the agent reports from its config."""
    reported = (device.capabilities or {}).get("labels") or []
    return sorted(set(device.labels or []) | set(reported))


def device_matches(device: Device, selector: DeviceSelector, runtime: str, accelerator: str) -> bool:
    return (
        device.enabled
        and selector.matches(device.id, device.platform, device_labels(device))
        and device_offers(device, runtime, accelerator)
    )


def matching_devices(
    session: Session, selector: DeviceSelector, runtime: str, accelerator: str
) -> List[Device]:
    """The enabled devices the selector names that offer the runtime; its ids and
    platforms narrow the rows in SQL (one device among thousands is not a scan of all)."""
    query = select(Device).where(Device.enabled.is_(True)).order_by(Device.id)
    if selector.ids:
        query = query.where(Device.id.in_(selector.ids))
    if selector.platforms:
        query = query.where(Device.platform.in_(selector.platforms))
    return [d for d in session.scalars(query) if device_matches(d, selector, runtime, accelerator)]


def fan_out(session: Session, job: Job, model_ids: Sequence[int], devices: Iterable[Device]) -> int:
    """Create the job's queued runs; returns how many were made. Placed ``each``:
    ``repeat`` runs per (model, device). Placed ``any``: the devices join the job's
    pool and ``repeat`` pool runs per model wait for whichever of them is free."""
    devices = list(devices)
    if not devices:
        return 0  # the job waits for a matching device (``expand_waiting_jobs``)
    new_work_devices(session).update(d.id for d in devices)
    if job.placement == str(Placement.any):
        join_pool(session, job, devices)
        targets: List[Optional[int]] = [None]
    else:
        targets = [d.id for d in devices]
    count = 0
    for model_id in model_ids:
        for device_id in targets:
            for _ in range(job.repeat):
                session.add(Run(
                    job_id=job.id, model_id=model_id, device_id=device_id, pooled=device_id is None,
                    state=str(RunState.queued), priority=job.priority, max_attempts=job.max_attempts,
                ))
                count += 1
    session.flush()
    return count


def join_pool(session: Session, job: Job, devices: Iterable[Device]) -> None:
    """Add the devices to the pool of a job placed ``any`` (those not in it yet)."""
    known = set(pool_device_ids(session, job.id))
    for device in devices:
        if device.id not in known:
            session.add(JobPoolDevice(job_id=job.id, device_id=device.id))
            known.add(device.id)
    session.flush()


def pool_device_ids(session: Session, job_id: int) -> List[int]:
    """The devices that may take the pool runs of the job, in id order."""
    pool = JobPoolDevice
    return list(session.scalars(select(pool.device_id).where(pool.job_id == job_id).order_by(pool.device_id)))


def new_work_devices(session: Session) -> Set[int]:
    """The devices given runs in this transaction (fan-out, requeues): whose long
    polls ``notify_new_work`` and the waker wake once it commits."""
    return session.info.setdefault("edgefarm_new_work", set())


def job_model_ids(job: Job) -> List[int]:
    return [link.model_id for link in job.model_links]


def expand_waiting_jobs(session: Session, device: Device) -> int:
    """Give a newly enrolled (or changed) device the runs of jobs that were waiting for
    one, and a place in the pools of unfinished jobs placed ``any`` that it matches;
    returns how many runs were made (or are now open to it in a pool)."""
    made = 0
    pending = (str(JobState.waiting), str(JobState.queued), str(JobState.running))
    query = select(Job).where(Job.state.in_(pending)).where(
        or_(Job.state == str(JobState.waiting), Job.placement == str(Placement.any)))
    for job in session.scalars(query):
        settings = RunSettings.model_validate(job.settings)
        if not device_matches(device, parse_selector(job.selector), str(settings.runtime),
                              settings.accelerator):
            continue
        if job.state == str(JobState.waiting):
            made += fan_out(session, job, job_model_ids(job), [device])
            job.state = str(JobState.queued)
        elif device.id not in pool_device_ids(session, job.id):
            join_pool(session, job, [device])
            made += session.scalar(select(func.count()).select_from(Run).where(
                Run.job_id == job.id, Run.device_id.is_(None), Run.state == str(RunState.queued))) or 0
            if made:
                new_work_devices(session).add(device.id)
    return made


# ---------------------------------------------------------------- claim and lease


@dataclass
class ClaimedRun:
    """What a claim returns: the columns a lease needs, without loading the run."""

    id: int
    job_id: int
    model_id: int
    lease_id: str
    lease_expires_at: datetime
    attempt: int
    max_attempts: int


#: the claiming device, a parameter of the claim statements (built once, see ``_claim_statement``)
DEVICE = bindparam("device_id", type_=Integer)


def _own_and_pooled():
    """The two branches of the queued runs the device ``DEVICE`` may take: its own best
    run (the lowest id of its highest priority: ``MAX(priority)`` then the id, two seeks
    of ``ix_runs_claim``, however long its queue), and (only while it holds no lease) the
    unassigned runs of the jobs whose pool it is in (``ix_runs_claim`` on ``device_id IS
    NULL``, the device's pools from ``ix_job_pool_devices_device``)."""
    queued = str(RunState.queued)
    mine = (Run.device_id == DEVICE, Run.state == queued)
    top = select(func.max(Run.priority)).where(*mine).scalar_subquery()
    own = select(Run.id).where(*mine, Run.priority == top).order_by(Run.id).limit(1)
    held = aliased(Run, name="held")
    # no expanding IN: a statement without one needs no rendering per execution
    free = ~select(held.id).where(held.device_id == DEVICE, or_(*(held.state == s for s in ACTIVE))).exists()
    pools = select(JobPoolDevice.job_id).where(JobPoolDevice.device_id == DEVICE)
    pooled = select(Run.id).where(Run.device_id.is_(None), Run.state == queued, Run.job_id.in_(pools), free)
    return own, pooled


def _waiting_for():
    """Which queued runs the claim chooses from: the device's own best run and its pools'
    runs, joined by ``UNION ALL`` (the own branch in a subquery: SQLite allows no LIMIT in
    a compound member) so each branch seeks its index on both databases."""
    own, pooled = _own_and_pooled()
    best = own.subquery("own_best")
    return Run.id.in_(union_all(select(best.c.id), pooled))


@lru_cache(maxsize=None)
def _claimable_query() -> Select:
    _, pooled = _own_and_pooled()
    own = select(Run.id).where(Run.device_id == DEVICE, Run.state == str(RunState.queued))
    return select(literal(1)).where(or_(own.exists(), pooled.exists()))


def has_claimable_run(session: Session, device_id: int) -> bool:
    """A plain read (no lock, no write transaction): whether a queued run waits for
    this device, its own or one of its pools'. A poll that finds none skips the
    claim's write transaction and parks (``ix_runs_claim``)."""
    found = session.connection().execute(_claimable_query(), {"device_id": device_id}).scalar()
    return found is not None


def _agent_token_holds():
    """The request's agent token (``token_id``, ``secret_hash``: the SHA-256 of its secret,
    ``auth.token_credential``) is known, not revoked and an agent's."""
    tokens = Token.__table__.c
    return and_(tokens.id == bindparam("token_id", type_=Integer),
                tokens.secret_hash == bindparam("secret_hash"), tokens.revoked.is_(False),
                tokens.role == str(Role.agent))


def _token_gate():
    """``_agent_token_holds`` for the claiming device's token: a CTE of its id, or of no row."""
    tokens = Token.__table__.c
    return select(tokens.id).where(_agent_token_holds(), tokens.device_id == DEVICE).cte("authorized")


@lru_cache(maxsize=None)
def _claim_statement(single: bool = False, gated: bool = False):
    """The claim, built once with bound parameters: constructing it and its cache key
    costs more Python time than the database spends running it. ``single``
    (PostgreSQL): one statement that also sets the run's hard deadline (the lease time
    plus its job's timeout) and marks the job running (a data-modifying CTE), where
    SQLite takes three: every statement is a round trip to a PostgreSQL server.
    ``gated`` (with ``single``): the agent's token is checked in the same statement
    (``_token_gate``): nothing is claimed unless it holds, and the first column,
    ``authorized``, says whether it did (a row with no run: nothing to claim)."""
    device_open = (
        select(Device.id)
        .where(Device.id == DEVICE, Device.enabled.is_(True), Device.draining.is_(False))
        .exists()
    )
    gate = _token_gate() if gated else None
    candidate = (
        select(Run.id)
        .where(_waiting_for(), device_open, *([select(gate.c.id).exists()] if gated else []))
        .order_by(Run.priority.desc(), Run.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    job_timeout = select(Job.timeout_seconds).where(Job.id == Run.job_id).scalar_subquery()
    columns = _RUNS.c
    claim = (
        update(_RUNS)
        .where(columns.id == candidate, columns.state == str(RunState.queued),
               or_(columns.device_id == DEVICE, columns.device_id.is_(None)))
        .values(
            state=str(RunState.leased), device_id=DEVICE,
            lease_id=bindparam("lease_id", type_=columns.lease_id.type), attempt=columns.attempt + 1,
            lease_expires_at=bindparam("expires", type_=columns.lease_expires_at.type),
            leased_at=bindparam("now", type_=columns.leased_at.type),
            started_at=None, finished_at=None, error=None, progress=None,
        )
        .returning(columns.id, columns.job_id, columns.model_id, columns.attempt, columns.max_attempts,
                   job_timeout.label("timeout_seconds"))
    )
    if not single:
        return claim
    now = bindparam("now", type_=columns.leased_at.type)
    deadline = now + type_coerce(func.make_interval(0, 0, 0, 0, 0, 0, job_timeout), Interval())
    claimed = claim.values(deadline_at=deadline).cte("claimed")
    running = str(JobState.running)
    touched = (update(_JOBS).where(_JOBS.c.id == claimed.c.job_id, _JOBS.c.state != running)
               .values(state=running, finished_at=None).cte("touched"))
    if not gated:
        return select(*claimed.c).add_cte(touched)
    return (select(gate.c.id.label("authorized"), *claimed.c)
            .select_from(gate.outerjoin(claimed, true())).add_cte(touched))


def claim_next_run(
    session: Session, device_id: int, lease_seconds: float, now: Optional[datetime] = None
) -> Optional[ClaimedRun]:
    """Atomically lease the best queued run for this device (when it is enabled and
    not draining), or return None: one ``UPDATE ... RETURNING`` whose candidate is its
    own run or a run of one of its pools (``_waiting_for``); a pool run gets the
    device here. Row locks (PostgreSQL) or the write lock (SQLite) and the repeated
    ``device_id IS NULL`` test let exactly one device take a pool run."""
    now = now or utcnow()
    lease_id, expires = str(uuid.uuid4()), now + timedelta(seconds=lease_seconds)
    params = {"device_id": device_id, "lease_id": lease_id, "expires": expires, "now": now}
    connection = session.connection()
    single = connection.dialect.name == "postgresql"
    row = connection.execute(_claim_statement(single), params).first()
    if row is None:
        return None
    run_id, job_id, model_id, attempt, max_attempts, timeout = row
    if not single:
        connection.execute(_SET_DEADLINE, {"run_id": run_id, "deadline": now + timedelta(seconds=timeout)})
        _touch_job(session, job_id, JobState.running)
    return ClaimedRun(run_id, job_id, model_id, lease_id, expires, attempt, max_attempts)


def claim_with_token(
    connection, device_id: int, token_id: int, secret_hash: str, lease_seconds: float,
    now: Optional[datetime] = None,
) -> Tuple[bool, Optional[ClaimedRun]]:
    """PostgreSQL: ``claim_next_run`` and the agent's token check in one statement, atomic
    by itself (``connection`` commits each statement: no BEGIN or COMMIT round trips).
    (whether the token is the device's current agent token, the claimed run or None);
    nothing is claimed for a token that does not hold."""
    now = now or utcnow()
    lease_id, expires = str(uuid.uuid4()), now + timedelta(seconds=lease_seconds)
    rows = _claim_with_token().rows(connection, {
        "device_id": device_id, "lease_id": lease_id, "expires": expires, "now": now,
        "token_id": token_id, "secret_hash": secret_hash})
    if not rows:
        return False, None
    row = rows[0]
    if row["id"] is None:
        return True, None
    return True, ClaimedRun(row["id"], row["job_id"], row["model_id"], lease_id, expires, row["attempt"],
                            row["max_attempts"])


@lru_cache(maxsize=None)
def _claim_with_token() -> DriverStatement:
    return DriverStatement(_claim_statement(True, True))


def _check_lease(run: Optional[Run], run_id: int, device_id: int, lease_id: str, now: datetime) -> Run:
    if run is None or run.device_id != device_id:
        raise LookupError(run_id)
    if run.lease_id != lease_id or run.state not in ACTIVE:
        raise LeaseConflict(f"lease {lease_id} is not the current lease of run {run_id}")
    if run.lease_expires_at is not None and run.lease_expires_at < now:
        raise LeaseConflict(f"lease {lease_id} of run {run_id} expired at {run.lease_expires_at}")
    return run


def _current_run(session: Session, run_id: int, device_id: int, lease_id: str, now: datetime) -> Run:
    run = session.get(Run, run_id, with_for_update=True, populate_existing=True)
    return _check_lease(run, run_id, device_id, lease_id, now)


def renew_lease(
    session: Session, run_id: int, device_id: int, lease_id: str, lease_seconds: float,
    state: Optional[RunState] = None, progress: Optional[dict] = None,
    now: Optional[datetime] = None,
) -> Run:
    now = now or utcnow()
    run = _current_run(session, run_id, device_id, lease_id, now)
    run.lease_expires_at = now + timedelta(seconds=lease_seconds)
    if state == RunState.running and run.state == str(RunState.leased):
        run.state, run.started_at = str(RunState.running), now
    if progress is not None:
        run.progress = progress
    return run


def release_lease(
    session: Session, run_id: int, device_id: int, lease_id: str, reason: str,
    now: Optional[datetime] = None,
) -> Run:
    """The agent gives the run back (shutdown): requeue it without using up an attempt."""
    now = now or utcnow()
    lock_job_of_run(session, run_id)
    run = _current_run(session, run_id, device_id, lease_id, now)
    if run.cancel_requested:
        _finish(run, RunState.cancelled, run.error or reason, now)
    else:
        requeue(session, run, f"released: {reason}")
        run.attempt = max(0, run.attempt - 1)
    refresh_job_state(session, run.job_id)
    return run


# ---------------------------------------------------------------- reports


@dataclass
class ReportOutcome:
    """What a report did: the run's state after it, the result it stored (or the one a
    repeat found), whether it was a repeat, and whether it ended the run's job."""

    run_id: int
    job_id: int
    model_id: int
    device_id: int
    state: str
    result_id: Optional[int]
    duplicate: bool
    job_ended: bool = False
    #: whether ``baseline_id`` (the result its series is held to, or None) was read
    baseline_read: bool = False
    baseline_id: Optional[int] = None


def report_digest(report: RunReport, dumped: Optional[Dict[str, object]] = None) -> str:
    """The SHA-256 of the report without its lease id (a repeat of it is the same report).
    ``dumped``: ``report.model_dump(mode="json")``, when the caller made it already."""
    if dumped is None:
        body = report.model_dump(mode="json", exclude={"lease_id"})
    else:
        body = {key: value for key, value in dumped.items() if key != "lease_id"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# A report's statements, built once, on the tables (Core: no ORM objects loaded or
# flushed): they run on the session's connection, inside its transaction.
_RESULTS = Result.__table__
_REPORT_RUN = (select(_RUNS.c.id, _RUNS.c.job_id, _RUNS.c.model_id, _RUNS.c.device_id, _RUNS.c.state,
                      _RUNS.c.lease_id, _RUNS.c.lease_expires_at, _RUNS.c.cancel_requested,
                      _RUNS.c.error, _RUNS.c.report_lease_id, _RUNS.c.report_digest)
               .where(_RUNS.c.id == bindparam("run_id")).with_for_update())
#: the job of the run, locked (its id read in the same statement)
_REPORT_JOB = (select(_JOBS.c.id, _JOBS.c.state, _JOBS.c.finished_at, _JOBS.c.cancel_reason,
                      _JOBS.c.dataset_id)
               .where(_JOBS.c.id == _JOB_OF_RUN.scalar_subquery()).with_for_update())
_BASELINES = Baseline.__table__


@lru_cache(maxsize=None)
def report_lock_statement() -> DriverStatement:
    """PostgreSQL: a report's first statement, one round trip for three. The agent's
    token is checked (``token_id``, ``secret_hash``) and its device read, the run's job
    locked (a materialized CTE, read before the run: the lock order of every path that
    finishes runs) and the run locked (``FOR UPDATE OF runs``: its newest version). No
    row when the token does not hold or the run is not its device's: nothing stored, the
    caller answers through ``record_report``'s own reads and their precise errors.
    Columns: ``agent_device``, the device's ``device_name``, ``device_platform``,
    ``device_capabilities``, the job's as ``j_<column>`` and the run's (``_REPORT_RUN``)."""
    tokens, devices = Token.__table__, Device.__table__
    job_columns = _REPORT_JOB.selected_columns
    locked_job = (select(*job_columns).where(_JOBS.c.id == _JOB_OF_RUN.scalar_subquery())
                  .with_for_update().cte("locked_job").prefix_with("MATERIALIZED"))
    return DriverStatement(
        select(tokens.c.device_id.label("agent_device"), devices.c.name.label("device_name"),
               devices.c.platform.label("device_platform"),
               devices.c.capabilities.label("device_capabilities"),
               *(locked_job.c[column.name].label(f"j_{column.name}") for column in job_columns),
               *_REPORT_RUN.selected_columns)
        .select_from(tokens.join(devices, devices.c.id == tokens.c.device_id)
                     .join(_RUNS, and_(_RUNS.c.id == bindparam("run_id"),
                                       _RUNS.c.device_id == tokens.c.device_id))
                     .join(locked_job, locked_job.c.id == _RUNS.c.job_id))
        .where(_agent_token_holds())
        .with_for_update(of=_RUNS)
    )


@dataclass
class LockedRows:
    """A report's job and run as ``report_lock_statement`` read them, locked."""

    job: object
    run: object


def locked_rows(row: Dict[str, object]) -> LockedRows:
    """The job's and the run's columns of a ``report_lock_statement`` row."""
    job = SimpleNamespace(**{column.name: row[f"j_{column.name}"] for column in _REPORT_JOB.selected_columns})
    run = SimpleNamespace(**{column.name: row[column.name] for column in _REPORT_RUN.selected_columns})
    return LockedRows(job, run)


_RESULT_OF_RUN = select(_RESULTS.c.id).where(_RESULTS.c.run_id == bindparam("run_id"))
_INSERT_RESULT = insert(_RESULTS).returning(_RESULTS.c.id)
_FINISH_RUN = (update(_RUNS).where(_RUNS.c.id == bindparam("run_id"))
               .values(state=bindparam("new_state"), finished_at=bindparam("finished"),
                       lease_expires_at=None, error=bindparam("new_error"),
                       report_lease_id=bindparam("report_lease"), report_digest=bindparam("digest")))
_SET_JOB_STATE = (update(_JOBS).where(_JOBS.c.id == bindparam("job_id"))
                  .values(state=bindparam("new_state"), finished_at=bindparam("finished")))


def record_report(
    session: Session, run_id: int, device_id: int, report: RunReport, device_snapshot: dict,
    now: Optional[datetime] = None, digest: Optional[str] = None,
    shas: Optional[Callable[[str, int], str]] = None, locked: Optional[LockedRows] = None,
    family_variant: Optional[Callable[[int], Tuple[str, str]]] = None,
    result_body: Optional[Dict[str, object]] = None,
) -> ReportOutcome:
    """Store the outcome of a run, once; a repeated identical post is a no-op.
    ``digest``: the report's ``report_digest``, when the caller computed it already, and
    ``result_body`` its result as JSON (``model_dump(mode="json")``), when it has it;
    ``shas(kind, id)``: the sha256 of a model or dataset (``"model"``, ``"dataset"``),
    when the caller keeps them (they never change), else read here.

    The job is locked before the run (the lock order of every path that finishes runs),
    the lease checked, the result inserted, the run finished and the job's state
    recomputed from its runs' counts, all on prebuilt Core statements: on SQLite 5 or 6, on
    PostgreSQL 3 or 4 (a round trip each; ``_finish_statement``). ``locked``: the job and
    run read and locked already (``report_lock_statement``): one statement fewer.
    ``family_variant(model_id)``: the model's family and variant, when the caller keeps
    them; on PostgreSQL the result's baseline is then read by the finishing statement
    (``ReportOutcome.baseline_read``)."""
    now = now or utcnow()
    connection = session.connection()
    if locked is None:
        job = connection.execute(_REPORT_JOB, {"run_id": run_id}).first()
        run = connection.execute(_REPORT_RUN, {"run_id": run_id}).first()
    else:
        job, run = locked.job, locked.run
    if run is None or job is None or run.device_id != device_id:
        raise LookupError(run_id)
    digest = digest or report_digest(report)
    if run.state in FINAL and run.report_lease_id == report.lease_id:
        if run.report_digest == digest:
            result_id = connection.execute(_RESULT_OF_RUN, {"run_id": run_id}).scalar()
            return ReportOutcome(run_id, run.job_id, run.model_id, device_id, run.state, result_id,
                                 duplicate=True)
        raise LeaseConflict(f"run {run_id} already has a different report for this lease")
    _check_lease(run, run_id, device_id, report.lease_id, now)
    problem = report_problem(report)
    if problem is not None:
        raise ValueError(problem)
    state = report.state
    if run.cancel_requested and state != RunState.succeeded:
        state = RunState.cancelled
    values = None
    if report.result is not None and state == RunState.succeeded:
        sha = shas or (lambda kind, row_id: _sha256_of(connection, kind, row_id))
        values = _result_values(run, job.dataset_id, report, digest, device_snapshot, now, sha, result_body)
    finish = {"run_id": run_id, "new_state": str(state), "finished": now,
              "new_error": report.error or run.error, "report_lease": report.lease_id, "digest": digest}
    baseline_read, baseline_id = False, None
    if connection.dialect.name == "postgresql":
        series = None
        if values is not None and family_variant is not None:
            family, variant = family_variant(run.model_id)
            series = {"b_family": family, "b_variant": variant, "b_device": device_id,
                      "b_runtime": values["runtime"]}
        result_id, counts, baseline_id = _finish_in_one(connection, run, job.id, str(state), finish, values,
                                                        series)
        baseline_read = series is not None
    else:
        result_id = connection.execute(_INSERT_RESULT, values).scalar_one() if values is not None else None
        connection.execute(_FINISH_RUN, finish)
        counts = dict(connection.execute(_RUN_COUNTS, {"job_id": run.job_id}).all())
    job_ended = _set_job_state(connection, run.job_id, job, counts)
    return ReportOutcome(run_id, run.job_id, run.model_id, device_id, str(state), result_id, duplicate=False,
                         job_ended=job_ended, baseline_read=baseline_read, baseline_id=baseline_id)


def _sha256_of(connection, kind: str, row_id: int) -> str:
    statement = _MODEL_SHA256 if kind == "model" else _DATASET_SHA256
    return connection.execute(statement, {"id": row_id}).scalar_one()


def _result_values(run, dataset_id: Optional[int], report: RunReport, digest: str, snapshot: dict,
                   now: datetime, sha: Callable[[str, int], str],
                   dumped: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """The result row a report stores (``dumped``: its result as JSON, when made already)."""
    body = report.result
    accuracy, metric = headline_metric(body.metrics)
    latency = body.latency_ms
    return {
        "run_id": run.id, "job_id": run.job_id, "model_id": run.model_id, "device_id": run.device_id,
        "dataset_id": dataset_id, "lease_id": report.lease_id, "digest": digest,
        "runtime": body.runtime.name, "runtime_version": body.runtime.version,
        "agent_version": body.agent_version, "model_sha256": sha("model", run.model_id),
        "dataset_sha256": sha("dataset", dataset_id) if dataset_id is not None else None,
        "p50_ms": latency.p50 if latency else None, "p90_ms": latency.p90 if latency else None,
        "accuracy": accuracy, "accuracy_metric": metric,
        "body": dumped if dumped is not None else body.model_dump(mode="json"),
        "device_snapshot": snapshot, "created_at": now,
    }


@lru_cache(maxsize=None)
def _finish_statement(result_columns: Tuple[str, ...], with_baseline: bool = False):
    """PostgreSQL: the report's writes and the job's run counts in one statement. Data-
    modifying CTEs insert the result and finish the run; the counts are read from the
    statement's snapshot, from before the run was finished (``_finish_in_one`` moves
    it to its new state). ``result_columns``: the result row's columns, each a bound
    parameter ``r_<column>`` (none: no result is stored). ``with_baseline``: also the
    result id the result's series is held to (``b_family``, ``b_variant``, ``b_device``,
    ``b_runtime``), column ``baseline_id``."""
    finished = _FINISH_RUN.returning(_RUNS.c.id).cte("finished")
    columns = [_RUNS.c.state, func.count().label("n")]
    if result_columns:
        row = {name: bindparam(f"r_{name}", type_=_RESULTS.c[name].type) for name in result_columns}
        inserted = insert(_RESULTS).values(row).returning(_RESULTS.c.id).cte("inserted")
        columns.append(select(inserted.c.id).scalar_subquery().label("result_id"))
    if with_baseline:
        baseline = select(_BASELINES.c.result_id).where(
            _BASELINES.c.family == bindparam("b_family"), _BASELINES.c.variant == bindparam("b_variant"),
            _BASELINES.c.device_id == bindparam("b_device", type_=Integer),
            _BASELINES.c.runtime == bindparam("b_runtime"))
        columns.append(baseline.scalar_subquery().label("baseline_id"))
    # (a parameter named like a column of ``runs`` would be set by the UPDATE too)
    return DriverStatement(select(*columns).where(_RUNS.c.job_id == bindparam("counted_job"))
                           .group_by(_RUNS.c.state).add_cte(finished))


def _finish_in_one(connection, run, job_id: int, state: str, finish: Dict[str, object],
                   values: Optional[Dict[str, object]], series: Optional[Dict[str, object]] = None,
                   ) -> Tuple[Optional[int], Dict[str, int], Optional[int]]:
    """(the stored result's id, the job's run counts with this run finished, the result
    its series is held to when ``series`` names it)."""
    params = dict(finish, counted_job=job_id, **(series or {}))
    if values is not None:
        params.update({f"r_{name}": value for name, value in values.items()})
    rows = _finish_statement(tuple(values or ()), series is not None).rows(connection, params)
    counts = {row["state"]: row["n"] for row in rows}
    counts[run.state] -= 1  # the snapshot's: the run as it was before this statement
    counts[state] = counts.get(state, 0) + 1
    return ((rows[0]["result_id"] if values is not None else None), counts,
            (rows[0]["baseline_id"] if series is not None else None))


def job_state_from_counts(counts: Dict[str, int], cancel_reason: Optional[str]) -> Optional[JobState]:
    """The state a job's runs' counts give it (None: the job has no runs yet)."""
    total = sum(counts.values())
    if total == 0:
        return None
    done = sum(counts.get(s, 0) for s in FINAL)
    if done == total:
        if counts.get(str(RunState.succeeded), 0) == total:
            return JobState.succeeded
        return JobState.cancelled if cancel_reason else JobState.failed
    if any(counts.get(s, 0) for s in ACTIVE) or done:
        return JobState.running
    return JobState.queued


def _set_job_state(connection, job_id: int, job, counts: Dict[str, int]) -> bool:
    """``refresh_job_state`` on the job's row (``job``: its state, finished_at and
    cancel_reason, read under its lock) from its runs' ``counts``, with a Core statement
    when it changes; whether the job ended."""
    state = job_state_from_counts(counts, job.cancel_reason)
    if state is None:
        return False
    if state.is_final:
        if job.state != str(state):
            connection.execute(_SET_JOB_STATE,
                               {"job_id": job_id, "new_state": str(state), "finished": utcnow()})
            return True
        return False
    if job.state != str(state) or job.finished_at is not None:
        connection.execute(_SET_JOB_STATE, {"job_id": job_id, "new_state": str(state), "finished": None})
    return False


def _finish(run: Run, state: RunState, error: Optional[str], now: datetime) -> None:
    run.state, run.finished_at, run.lease_expires_at = str(state), now, None
    if error:
        run.error = error


# ---------------------------------------------------------------- sweeps


def _locked_runs(session: Session, *conditions) -> List[Run]:
    """The runs meeting ``conditions``, each locked after its job (the lock order of
    reports, release and cancel, so a sweep never deadlocks with them); a run another
    transaction holds is skipped, one that no longer meets them once locked too."""
    found = session.execute(
        select(Run.id, Run.job_id).where(*conditions).order_by(Run.job_id, Run.id)
    ).all()
    runs = []
    for run_id, job_id in found:
        lock_job(session, job_id)
        run = session.scalars(
            select(Run).where(Run.id == run_id, *conditions).with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        ).first()
        if run is not None:
            runs.append(run)
    return runs


def sweep_due(session: Session, now: datetime) -> bool:
    """Whether any active run's lease or hard deadline has passed: two reads on
    ``ix_runs_state_lease_expires_at`` and ``ix_runs_state_deadline_at`` that touch
    only such rows, so the sweep opens a write transaction only when it has work."""
    return any(session.scalar(query) is not None for query in sweep_due_queries(now))


def sweep_due_queries(now: datetime) -> List[Select]:
    return [select(Run.id).where(Run.state.in_(ACTIVE), column < now).limit(1)
            for column in (Run.lease_expires_at, Run.deadline_at)]


def requeue_expired_leases(session: Session, now: Optional[datetime] = None) -> Dict[str, int]:
    """Leases past their expiry: requeue while attempts remain, else mark the run lost."""
    now = now or utcnow()
    counts = {"requeued": 0, "lost": 0, "cancelled": 0}
    for run in _locked_runs(session, Run.state.in_(ACTIVE), Run.lease_expires_at < now):
        note = (
            "agent_lost: no heartbeat before the lease expired "
            f"(attempt {run.attempt} of {run.max_attempts})"
        )
        if run.cancel_requested:
            _finish(run, RunState.cancelled, run.error, now)
            counts["cancelled"] += 1
        elif run.attempt >= run.max_attempts:
            _finish(run, RunState.lost, note, now)
            counts["lost"] += 1
        else:
            requeue(session, run, note)
            counts["requeued"] += 1
        refresh_job_state(session, run.job_id)
    return counts


def requeue(session: Session, run: Run, note: str) -> None:
    """Queue the run again, noting why. A pool run goes back to its pool (no device),
    so any device of it may take the next attempt; the devices to wake are recorded
    (``new_work_devices``): its own, or all of the pool's."""
    run.state, run.lease_id, run.lease_expires_at, run.error = str(RunState.queued), None, None, note
    if run.pooled:
        run.device_id = None
        new_work_devices(session).update(pool_device_ids(session, run.job_id))
    else:
        new_work_devices(session).add(run.device_id)


def fail_timed_out_runs(session: Session, now: Optional[datetime] = None) -> int:
    """Runs past their job's hard timeout fail, whatever their lease says."""
    now = now or utcnow()
    runs = _locked_runs(session, Run.state.in_(ACTIVE), Run.deadline_at < now)
    for run in runs:
        timeout = session.get(Job, run.job_id).timeout_seconds
        _finish(run, RunState.failed, f"timeout: the run exceeded the job's hard timeout of {timeout} s", now)
        run.cancel_requested = True
        refresh_job_state(session, run.job_id)
    return len(runs)


# ---------------------------------------------------------------- cancel and job state


def cancel_job(session: Session, job: Job, reason: str, now: Optional[datetime] = None) -> Dict[str, int]:
    """Queued runs are cancelled at once; leased and running ones are asked to stop."""
    now = now or utcnow()
    counts = {"cancelled": 0, "cancelling": 0}
    for run in session.scalars(select(Run).where(Run.job_id == job.id).with_for_update()):
        if run.state == str(RunState.queued):
            _finish(run, RunState.cancelled, f"cancelled: {reason}", now)
            counts["cancelled"] += 1
        elif run.state in ACTIVE and not run.cancel_requested:
            run.cancel_requested, run.error = True, f"cancelled: {reason}"
            counts["cancelling"] += 1
    job.cancel_reason = reason
    if job.state == str(JobState.waiting):
        job.state, job.finished_at = str(JobState.cancelled), now
    refresh_job_state(session, job.id)
    return counts


def run_counts(session: Session, job_id: int) -> Dict[str, int]:
    return {state: count for state, count in session.execute(_RUN_COUNTS, {"job_id": job_id})}


def lock_job(session: Session, job_id: int) -> Optional[Job]:
    """The job row, locked until the transaction ends (``FOR UPDATE``; SQLite's
    write transaction is serialised already). Read once per transaction: a second
    call returns the row this transaction already holds locked."""
    locked = session.info.setdefault("edgefarm_locked_jobs", set())
    if job_id in locked:
        job = session.get(Job, job_id)
        if job is not None:
            return job
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is not None:
        locked.add(job_id)
    return job


def lock_job_of_run(session: Session, run_id: int) -> None:
    """Lock the job of a run before the run itself: jobs before runs is the lock
    order of every path that finishes runs (reports, release, cancel), so two of
    them never wait on each other."""
    job_id = session.execute(_JOB_OF_RUN, {"run_id": run_id}).scalar()
    if job_id is not None:
        lock_job(session, job_id)


def refresh_job_state(session: Session, job_id: int) -> Job:
    """Recompute the job's state from its runs' states, under the job's row lock.

    The lock makes concurrent finishers of one job's runs take turns: under READ
    COMMITTED each counts the runs after the previous one committed, so the last
    to commit sees every run final (without it, two reports each saw the other's
    run unfinished and the job stayed ``running``)."""
    session.flush()
    job = lock_job(session, job_id)
    state = job_state_from_counts(run_counts(session, job_id), job.cancel_reason)
    if state is None:
        return job
    if state.is_final:
        if job.state != str(state):
            job.state, job.finished_at = str(state), utcnow()
    else:
        job.state, job.finished_at = str(state), None
    return job


def _touch_job(session: Session, job_id: int, state: JobState) -> None:
    """Set the job's state unless it has it already (then the statement writes nothing)."""
    session.connection().execute(_TOUCH_JOB, {"job_id": job_id, "new_state": str(state)})


def runs_using_model(session: Session, model_id: int) -> int:
    pending = (str(RunState.queued),) + ACTIVE
    waiting = session.scalar(
        select(func.count()).select_from(JobModel).join(Job, Job.id == JobModel.job_id)
        .where(JobModel.model_id == model_id, Job.state == str(JobState.waiting))
    )
    active = session.scalar(
        select(func.count()).select_from(Run).where(Run.model_id == model_id, Run.state.in_(pending))
    )
    return int(waiting or 0) + int(active or 0)


NOTIFY_PAYLOAD_MAX = 7000  # PostgreSQL refuses payloads of 8,000 bytes and more


def notify_new_work(session: Session) -> None:
    """Wake the long polls of the devices given work in this transaction
    (``new_work_devices``) in every server replica: PostgreSQL delivers the NOTIFY at
    commit, its payload the device ids (empty, when too long: every device)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    payload = ",".join(str(d) for d in sorted(new_work_devices(session)))
    if len(payload) > NOTIFY_PAYLOAD_MAX:
        payload = ""
    session.execute(text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": NOTIFY_CHANNEL, "payload": payload})


def active_run_for_device(session: Session, device_id: int) -> Optional[int]:
    return session.scalar(
        select(Run.id).where(Run.device_id == device_id, Run.state.in_(ACTIVE)).order_by(Run.id).limit(1)
    )
