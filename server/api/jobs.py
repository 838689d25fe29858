"""Jobs: submit (fan-out into runs), list, show, cancel."""

from typing import Dict, List, Optional

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select

from edgefarm.shared.contract.enums import JobState, Task
from edgefarm.shared.contract.schemas import JobCancel, JobCreate, JobOut
from edgefarm.shared.contract.selectors import SelectorError, format_selector, parse_selector

from ..auth import Principal
from ..context import AppContext
from ..convert import job_out
from ..problems import ProblemException, conflict, not_found
from ..queue import cancel_job, fan_out, matching_devices, notify_new_work
from ..references import resolve_reference
from ..tables import Job, JobModel, Model, Result, Run
from .datasets import find_dataset
from .deps import get_ctx, reader, submitter
from .models import find_model

router = APIRouter(prefix="/jobs", tags=["jobs"])


def _resolve_task(body: JobCreate, models: List[Model], has_dataset: bool) -> Task:
    if not has_dataset:
        return Task.latency if body.task in (None, Task.latency) else body.task
    if body.task is not None:
        return body.task
    tasks = {m.task for m in models if m.task}
    if len(tasks) == 1:
        return Task(tasks.pop())
    raise ProblemException(
        422, "Task unknown",
        "the job has a dataset but the models do not say which task they solve; "
        "pass task (classification or segmentation)",
    )


def _check_dataset_task(task: Task, layout: str) -> None:
    seg = layout == "voc-seg"
    if task == Task.segmentation and not seg or task == Task.classification and seg:
        raise ProblemException(
            422, "Dataset does not fit the task",
            f"a {layout} dataset cannot evaluate a {task} job",
        )


def load_job(session, job: Job, warnings: Optional[List[str]] = None) -> JobOut:
    runs = list(session.scalars(select(Run).where(Run.job_id == job.id).order_by(Run.id)))
    results: Dict[int, int] = dict(
        session.execute(select(Result.run_id, Result.id).where(Result.job_id == job.id)).all()
    )
    return job_out(job, runs, results, warnings)


@router.post("", response_model=JobOut, status_code=201)
def submit_job(
    body: JobCreate, response: Response, ctx: AppContext = Depends(get_ctx),
    principal: Principal = Depends(submitter),
) -> JobOut:
    try:
        selector = parse_selector(body.devices)
    except SelectorError as exc:
        raise ProblemException(422, "Invalid device selector", str(exc))
    settings = body.settings
    with ctx.db.write() as session:
        models = [find_model(session, ref) for ref in body.models]
        if len({m.id for m in models}) != len(models):
            raise ProblemException(422, "Duplicate model", "each model may appear once in a job")
        dataset = find_dataset(session, body.dataset) if body.dataset else None
        task = _resolve_task(body, models, dataset is not None)
        if dataset is not None:
            _check_dataset_task(task, dataset.layout)
        reference, warnings = resolve_reference(session, settings.reference, models, find_model)
        devices = matching_devices(session, selector, str(settings.runtime), settings.accelerator)
        if not devices:
            message = (
                f"no enrolled, enabled device matches '{format_selector(selector)}' with runtime "
                f"{settings.runtime} on {settings.accelerator}"
            )
            if body.require_device:
                raise ProblemException(422, "No matching device", message, kind="no-device")
            warnings.append(message + "; the job waits until one enrols")
        job = Job(
            name=body.name, state=str(JobState.queued if devices else JobState.waiting),
            task=str(task), dataset_id=dataset.id if dataset else None,
            settings={**settings.model_dump(mode="json"), "reference": reference},
            selector=format_selector(selector),
            priority=body.priority, timeout_seconds=body.timeout_seconds,
            max_attempts=body.max_attempts, created_by=principal.token_id,
        )
        job.model_links = [JobModel(model_id=m.id, position=i) for i, m in enumerate(models)]
        session.add(job)
        session.flush()
        fan_out(session, job, [m.id for m in models], devices)
        notify_new_work(session)
        out = load_job(session, job, warnings)
    ctx.waker.notify()
    response.headers["Location"] = f"/api/v1/jobs/{out.id}"
    return out


@router.get("", response_model=List[JobOut])
def list_jobs(
    state: Optional[JobState] = None, limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0), ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(reader),
) -> List[JobOut]:
    query = select(Job).order_by(Job.id.desc()).limit(limit).offset(offset)
    if state is not None:
        query = query.where(Job.state == str(state))
    with ctx.db.read() as session:
        return [load_job(session, job) for job in session.scalars(query)]


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: int, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader)) -> JobOut:
    with ctx.db.read() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise not_found("job", job_id)
        return load_job(session, job)


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel(
    job_id: int, body: JobCancel = JobCancel(), ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(submitter),
) -> JobOut:
    with ctx.db.write() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            raise not_found("job", job_id)
        if job.state in (JobState.succeeded, JobState.failed, JobState.cancelled):
            raise conflict("Job finished", f"job {job_id} already ended as {job.state}")
        cancel_job(session, job, body.reason or "cancelled by a user")
        return load_job(session, job)
