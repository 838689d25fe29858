"""The agent side of the protocol: enrolment, device heartbeats and the
long-poll lease endpoint."""

import asyncio

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from edgefarm.shared.contract import PROTOCOL_VERSION
from edgefarm.shared.contract.enums import Role
from edgefarm.shared.contract.schemas import (
    AgentHeartbeat,
    AgentHeartbeatResponse,
    EnrollRequest,
    EnrollResponse,
    Lease,
    LeaseRequest,
)

from ..auth import Principal, issue_token, mark_used
from ..context import AppContext
from ..convert import dataset_ref, device_status, model_ref
from ..problems import ProblemException
from ..queue import active_run_for_device, claim_next_run, expand_waiting_jobs, notify_new_work
from ..tables import Dataset, Device, Job, Model, Run, Token, utcnow
from .deps import agent, check_protocol, get_ctx, get_principal

router = APIRouter(prefix="/agents", tags=["agents"])


@router.post("/enroll", response_model=EnrollResponse, status_code=201)
def enroll(
    body: EnrollRequest, request: Request, ctx: AppContext = Depends(get_ctx),
    principal: Principal = Depends(get_principal),
) -> EnrollResponse:
    """Exchange a one-time enrolment token for a device and its agent token."""
    check_protocol(request)
    if body.protocol_version != PROTOCOL_VERSION:
        raise ProblemException(
            426, "Protocol version mismatch",
            f"this server speaks protocol {PROTOCOL_VERSION}, the agent {body.protocol_version}",
            kind="protocol-mismatch",
        )
    if principal.role not in (Role.enrol, Role.admin):
        raise ProblemException(403, "Forbidden", "enrolment needs an 'enrol' token", kind="forbidden")
    with ctx.db.write() as session:
        if principal.role == Role.enrol:
            token = session.get(Token, principal.token_id, with_for_update=True)
            if token.used_at is not None:
                raise ProblemException(401, "Unauthorized", "this enrolment token has already been used")
            mark_used(session, principal.token_id)
        caps = body.capabilities
        device = Device(
            name=body.name, platform=caps.platform, capabilities=caps.model_dump(mode="json"),
            last_seen_at=utcnow(),
        )
        session.add(device)
        session.flush()
        _, secret = issue_token(session, Role.agent, f"agent {body.name}", device_id=device.id)
        made = expand_waiting_jobs(session, device)
        if made:
            notify_new_work(session)
        response = EnrollResponse(
            device_id=device.id, agent_token=secret, protocol_version=PROTOCOL_VERSION,
            intervals=ctx.settings.intervals(),
        )
    if made:
        ctx.waker.notify()
    return response


@router.post("/heartbeat", response_model=AgentHeartbeatResponse)
def device_heartbeat(
    body: AgentHeartbeat, ctx: AppContext = Depends(get_ctx), principal: Principal = Depends(agent)
) -> AgentHeartbeatResponse:
    """The agent is alive; optionally its capabilities changed (new runtime, labels)."""
    made = 0
    with ctx.db.write() as session:
        device = session.get(Device, principal.device_id)
        device.last_seen_at = utcnow()
        if body.capabilities is not None:
            device.capabilities = body.capabilities.model_dump(mode="json")
            device.platform = body.capabilities.platform
            made = expand_waiting_jobs(session, device)
            if made:
                notify_new_work(session)
        current = active_run_for_device(session, device.id)
        response = AgentHeartbeatResponse(
            device_id=device.id, intervals=ctx.settings.intervals(), draining=device.draining,
            status=device_status(device, current, ctx.settings.offline_after_seconds),
        )
    if made:
        ctx.waker.notify()
    return response


def try_claim(ctx: AppContext, device_id: int, base_url: str):
    with ctx.db.write() as session:
        device = session.get(Device, device_id)
        device.last_seen_at = utcnow()
        if not device.enabled or device.draining:
            return None
        run = claim_next_run(session, device_id, ctx.settings.lease_seconds)
        if run is None:
            return None
        return build_lease(session, run, ctx, base_url)


def reference_model(session, job: Job, run: Run):
    """The model this run compares its outputs with, when its job names a reference."""
    reference = (job.settings or {}).get("reference")
    if not isinstance(reference, dict):
        return None
    model_id = (reference.get("resolved") or {}).get(str(run.model_id))
    return session.get(Model, model_id) if model_id is not None else None


def build_lease(session, run: Run, ctx: AppContext, base_url: str) -> Lease:
    job = session.get(Job, run.job_id)
    model = session.get(Model, run.model_id)
    dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
    reference = reference_model(session, job, run)
    return Lease(
        run_id=run.id, job_id=job.id, lease_id=run.lease_id, lease_expires_at=run.lease_expires_at,
        attempt=run.attempt, max_attempts=run.max_attempts, task=job.task,
        timeout_seconds=job.timeout_seconds, model=model_ref(model, base_url),
        dataset=dataset_ref(dataset, base_url) if dataset else None, settings=job.settings,
        intervals=ctx.settings.intervals(),
        reference_model=model_ref(reference, base_url) if reference is not None else None,
    )


@router.post("/lease", response_model=Lease, responses={204: {"description": "no work yet"}})
async def lease(
    request: Request, body: LeaseRequest = LeaseRequest(), ctx: AppContext = Depends(get_ctx),
    principal: Principal = Depends(agent),
):
    """Long poll: answers at once with a lease when a run is claimable, else waits up
    to ``wait_seconds`` (the server's poll interval at most) and answers 204."""
    limit = ctx.settings.poll_wait_seconds
    wait = limit if body.wait_seconds is None else min(body.wait_seconds, limit)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    base_url = ctx.base_url(request)
    while True:
        event = ctx.waker.subscribe()
        try:
            if await request.is_disconnected():
                return Response(status_code=204)
            granted = await run_in_threadpool(try_claim, ctx, principal.device_id, base_url)
            if granted is not None:
                return granted
            remaining = deadline - loop.time()
            if remaining <= 0:
                return Response(status_code=204)
            await ctx.waker.wait(event, min(remaining, 5.0))
        finally:
            ctx.waker.unsubscribe(event)


