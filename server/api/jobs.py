"""Jobs: submit (fan-out into runs), list (pages of summaries), show, its runs, cancel."""

from typing import List, Optional

from fastapi import APIRouter, Depends, Request, Response

from edgefarm.shared.contract.enums import JobState
from edgefarm.shared.contract.schemas import JobCancel, JobCreate, JobOut, RunOut

from ..auth import Principal
from ..context import AppContext
from ..services import jobs
from .bodies import ContractRoute
from .deps import Offset, RowId, get_ctx, reader, submitter
from .pages import DEFAULT_LIMIT, Limit, send_page

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=ContractRoute)


@router.post("", response_model=JobOut, status_code=201)
def submit_job(
    body: JobCreate, response: Response, ctx: AppContext = Depends(get_ctx),
    principal: Principal = Depends(submitter),
) -> JobOut:
    out = jobs.submit(ctx, body, created_by=principal.token_id)
    response.headers["Location"] = f"/api/v1/jobs/{out.id}"
    return out


@router.get("", response_model=List[JobOut])
def list_jobs(
    request: Request, response: Response, state: Optional[JobState] = None,
    limit: Limit = DEFAULT_LIMIT, offset: Offset = 0, ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(reader),
) -> List[JobOut]:
    """One page of jobs, newest first, as summaries: ``counts`` holds the runs per state and
    ``runs`` is empty (``GET /jobs/{id}`` and ``GET /jobs/{id}/runs`` have them)."""
    return send_page(request, response, jobs.list_jobs(ctx, state, limit, offset))


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: RowId, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader)) -> JobOut:
    return jobs.get_job(ctx, job_id)


@router.get("/{job_id}/runs", response_model=List[RunOut])
def list_runs(
    job_id: RowId, request: Request, response: Response, limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader),
) -> List[RunOut]:
    """One page of the job's runs, in id order."""
    return send_page(request, response, jobs.list_runs(ctx, job_id, limit, offset))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel(
    job_id: RowId, body: JobCancel = JobCancel(), ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(submitter),
) -> JobOut:
    return jobs.cancel(ctx, job_id, body.reason)
