"""Runs: read by users; heartbeat (lease renewal), release and report by the
agent that holds the lease. An agent can only touch its own device's runs."""

from fastapi import APIRouter, Depends

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
from ..services import jobs, leases
from .bodies import ContractRoute
from .deps import RowId, agent, get_ctx, reader

router = APIRouter(prefix="/runs", tags=["runs"], route_class=ContractRoute)


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: RowId, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader)) -> RunOut:
    return jobs.get_run(ctx, run_id)


@router.post("/{run_id}/heartbeat", response_model=RunHeartbeatResponse)
def heartbeat(
    run_id: RowId, body: RunHeartbeat, ctx: AppContext = Depends(get_ctx),
    principal: Principal = Depends(agent),
) -> RunHeartbeatResponse:
    """Renew the lease; the answer says whether the run has been cancelled."""
    return leases.renew(ctx, run_id, principal.device_id, body)


@router.post("/{run_id}/release", response_model=RunOut)
def release(
    run_id: RowId, body: RunRelease, ctx: AppContext = Depends(get_ctx),
    principal: Principal = Depends(agent),
) -> RunOut:
    return leases.release(ctx, run_id, principal.device_id, body)


@router.post("/{run_id}/report", response_model=RunReportResponse)
def report(
    run_id: RowId, body: RunReport, ctx: AppContext = Depends(get_ctx),
    principal: Principal = Depends(agent),
) -> RunReportResponse:
    """Post the run's outcome; accepted only with the current lease id."""
    return leases.report(ctx, run_id, principal.device_id, body)
