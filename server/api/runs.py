"""Runs: read by users; heartbeat (lease renewal), release and report by the
agent that holds the lease. An agent can only touch its own device's runs."""

from fastapi import APIRouter, Depends
from sqlalchemy import select

from edgefarm.shared.contract.enums import RunState
from edgefarm.shared.contract.rules import report_problem
from edgefarm.shared.contract.schemas import (
    RunHeartbeat,
    RunHeartbeatResponse,
    RunOut,
    RunRelease,
    RunReport,
    RunReportResponse,
)

from ..auth import Principal
from ..context import AppContext
from ..convert import run_out
from ..problems import ProblemException, not_found
from ..queue import LeaseConflict, record_report, release_lease, renew_lease
from ..tables import Device, Result, Run, utcnow
from .deps import agent, get_ctx, reader

router = APIRouter(prefix="/runs", tags=["runs"])


def _lease_conflict(exc: LeaseConflict) -> ProblemException:
    return ProblemException(
        409, "Lease not current",
        f"{exc}; the run was requeued or finished and this agent must drop it",
        kind="lease-conflict",
    )


def _run_lookup(run_id: int) -> ProblemException:
    return not_found("run of this device", run_id)


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: int, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader)) -> RunOut:
    with ctx.db.read() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise not_found("run", run_id)
        result_id = session.scalar(select(Result.id).where(Result.run_id == run_id))
        return run_out(run, result_id)


@router.post("/{run_id}/heartbeat", response_model=RunHeartbeatResponse)
def heartbeat(
    run_id: int, body: RunHeartbeat, ctx: AppContext = Depends(get_ctx),
    principal: Principal = Depends(agent),
) -> RunHeartbeatResponse:
    """Renew the lease; the answer says whether the run has been cancelled."""
    with ctx.db.write() as session:
        try:
            run = renew_lease(
                session, run_id, principal.device_id, body.lease_id, ctx.settings.lease_seconds,
                state=body.state, progress=body.progress,
            )
        except LeaseConflict as exc:
            raise _lease_conflict(exc)
        except LookupError:
            raise _run_lookup(run_id)
        session.get(Device, principal.device_id).last_seen_at = utcnow()
        return RunHeartbeatResponse(
            lease_expires_at=run.lease_expires_at, cancel=run.cancel_requested,
            cancel_reason=run.error if run.cancel_requested else None,
        )


@router.post("/{run_id}/release", response_model=RunOut)
def release(
    run_id: int, body: RunRelease, ctx: AppContext = Depends(get_ctx),
    principal: Principal = Depends(agent),
) -> RunOut:
    with ctx.db.write() as session:
        try:
            run = release_lease(session, run_id, principal.device_id, body.lease_id, body.reason)
        except LeaseConflict as exc:
            raise _lease_conflict(exc)
        except LookupError:
            raise _run_lookup(run_id)
        out = run_out(run)
    ctx.waker.notify()
    return out


@router.post("/{run_id}/report", response_model=RunReportResponse)
def report(
    run_id: int, body: RunReport, ctx: AppContext = Depends(get_ctx),
    principal: Principal = Depends(agent),
) -> RunReportResponse:
    """Post the run's outcome; accepted only with the current lease id."""
    problem = report_problem(body)
    if problem is not None:
        raise ProblemException(422, "Invalid report", problem)
    with ctx.db.write() as session:
        device = session.get(Device, principal.device_id)
        device.last_seen_at = utcnow()
        snapshot = {"name": device.name, "platform": device.platform, **(device.capabilities or {})}
        try:
            outcome = record_report(session, run_id, principal.device_id, body, snapshot)
        except LeaseConflict as exc:
            raise _lease_conflict(exc)
        except LookupError:
            raise _run_lookup(run_id)
        return RunReportResponse(
            run_id=run_id, state=RunState(outcome.run.state),
            result_id=outcome.result.id if outcome.result else None, duplicate=outcome.duplicate,
        )
