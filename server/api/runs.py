"""Runs: read by users; heartbeat (lease renewal), release and report by the
agent that holds the lease. An agent can only touch its own device's runs."""

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

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
from .deps import RowId, agent, agent_headers, authenticate_agent, bearer_token, get_ctx, reader

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


@router.post("/{run_id}/report", response_model=RunReportResponse,
             dependencies=[Depends(agent_headers)])
async def report(
    run_id: RowId, body: RunReport, request: Request, ctx: AppContext = Depends(get_ctx),
) -> Response:
    """Post the run's outcome; accepted only with the current lease id. The token is read
    in the report's own transaction, on one trip to a worker thread."""
    return await answer_report(ctx, request, run_id, body)


async def answer_report(ctx: AppContext, request: Request, run_id: int, body: RunReport) -> Response:
    """The report route's answer (also ``hot.HotPaths``')."""
    def store() -> RunReportResponse:
        return leases.report(ctx, run_id, None, body,
                             authorize=lambda session: authenticate_agent(session, request, with_device=True),
                             token=bearer_token(request))

    answer = await run_in_threadpool(store)
    return Response(answer.model_dump_json(), media_type="application/json")
