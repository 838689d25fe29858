"""The agent side of the protocol: enrollment, device heartbeats and the
long-poll lease endpoint."""

import asyncio
from typing import Optional, Tuple

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from edgefarm.shared.contract.schemas import (
    AgentHeartbeat,
    AgentHeartbeatResponse,
    EnrollRequest,
    EnrollResponse,
    Lease,
    LeaseRequest,
)

from ..auth import Principal, parse_token
from ..context import AppContext
from ..services import leases
from .bodies import ContractRoute
from .deps import (
    agent,
    agent_headers,
    authenticate_agent,
    bearer_token,
    check_protocol,
    get_ctx,
    get_principal,
)

router = APIRouter(prefix="/agents", tags=["agents"], route_class=ContractRoute)


@router.post("/enroll", response_model=EnrollResponse, status_code=201)
def enroll(
    body: EnrollRequest, request: Request, ctx: AppContext = Depends(get_ctx),
    principal: Principal = Depends(get_principal),
) -> EnrollResponse:
    """Exchange a one-time enrollment token for a device and its agent token."""
    check_protocol(request)
    return leases.enroll(ctx, principal, body)


@router.post("/heartbeat", response_model=AgentHeartbeatResponse)
def device_heartbeat(
    body: AgentHeartbeat, ctx: AppContext = Depends(get_ctx), principal: Principal = Depends(agent)
) -> AgentHeartbeatResponse:
    """The agent is alive; optionally its capabilities changed (new runtime, labels)."""
    return leases.device_heartbeat(ctx, principal.device_id, body)


def token_key(request: Request) -> Optional[int]:
    """The id of the request's bearer token, unverified (a hint's key, never a credential)."""
    parsed = parse_token(request.headers.get("authorization", "").partition(" ")[2].strip())
    return parsed[0] if parsed else None


def _json(model: BaseModel) -> Response:
    """The answer of a hot route, serialised once (the service built it from the contract
    already: FastAPI's ``response_model`` would validate it a second time)."""
    return Response(model.model_dump_json(), media_type="application/json")


@router.post("/lease", response_model=Lease, responses={204: {"description": "no work yet"}},
             dependencies=[Depends(agent_headers)])
async def lease(
    request: Request, body: LeaseRequest = LeaseRequest(), ctx: AppContext = Depends(get_ctx),
):
    """Long poll: answers at once with a lease when a run is claimable, else parks until
    work appears for this device (``Waker.notify``) or ``wait_seconds`` (the server's
    poll interval at most) pass, and answers 204. A parked poll holds no thread and
    queries nothing: it claims again only when woken for its own device. The first
    attempt reads the token and looks for work in one session, and claims, in one trip
    to a worker thread; a wake delivered before the poll subscribed makes it look again."""
    return await answer_lease(ctx, request, body)


async def answer_lease(ctx: AppContext, request: Request, body: LeaseRequest) -> Response:
    """The lease route's answer (also ``hot.HotPaths``'): a lease, or 204."""
    limit = ctx.settings.poll_wait_seconds
    wait = limit if body.wait_seconds is None else min(body.wait_seconds, limit)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    base_url = ctx.base_url(request)

    def authorize(session) -> int:
        return authenticate_agent(session, request).device_id

    def first() -> Tuple[int, Optional[Lease]]:
        token_id = token_key(request)
        device_id = ctx.working_agents.device_of(token_id)
        if device_id is not None and not ctx.db.is_sqlite:  # one statement, token and claim
            authorized, granted = leases.claim_by_token(ctx, base_url, device_id, bearer_token(request))
            if authorized:
                ctx.working_agents.mark(token_id, device_id if granted is not None else None)
                return device_id, granted
        if device_id is not None:  # its last poll got work: claim at once
            device_id, granted = leases.claim_as(ctx, base_url, authorize)
        else:
            with ctx.db.read_each() as session:
                device_id = authorize(session)
                found = leases.work_waiting(session, device_id)
            granted = leases.claim(ctx, device_id, base_url, found)
        ctx.working_agents.mark(token_id, device_id if granted is not None else None)
        return device_id, granted

    wakes = ctx.waker.wakes
    device_id, granted = await run_in_threadpool(first)
    while granted is None:
        event = ctx.waker.subscribe(device_id)
        try:
            if ctx.waker.wakes == wakes:  # else a wake may have passed before the subscription
                remaining = deadline - loop.time()
                if remaining <= 0 or not await ctx.waker.wait(event, remaining):
                    return Response(status_code=204)
            wakes = ctx.waker.wakes
            if await request.is_disconnected():
                return Response(status_code=204)
            granted = await run_in_threadpool(leases.claim, ctx, device_id, base_url)
        finally:
            ctx.waker.unsubscribe(device_id, event)
    return _json(granted)
