"""Jobs: submission (the task, the dataset that must fit it, the output
reference, the devices, and the fan-out into ``repeat`` runs per model and
device, or per model into the pool of a job placed ``any``),
listing, one job or run, and cancellation. A job whose devices have not
enrolled yet waits and fans out when one does (``queue.expand_waiting_jobs``).
Lists are pages of job summaries (run counts per state); one job has its runs."""

from typing import Dict, List, Optional, Tuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from edgefarm.shared.contract.enums import JobState, Placement, RunState, Task
from edgefarm.shared.contract.schemas import DEFAULT_PAGE_SIZE, JobCreate, JobOut, RunOut
from edgefarm.shared.contract.selectors import DeviceSelector, SelectorError, format_selector, parse_selector

from ..context import AppContext
from ..queue import cancel_job, fan_out, matching_devices, notify_new_work, pool_device_ids
from ..tables import Dataset, Device, Job, JobModel, Model, Result, Run
from .convert import job_out, run_out
from .errors import Conflict, Invalid
from .lookups import find_dataset, find_model, get_row
from .pages import Page, read_page
from .references import resolve_reference
from .webhooks import announce_job, public_base

#: The most runs one submission may create (models x devices x repeat).
MAX_JOB_RUNS = 10_000


def job_view(session: Session, job: Job, warnings: Optional[List[str]] = None) -> JobOut:
    """The job with its runs and the result id of each run that has one."""
    runs = list(session.scalars(select(Run).where(Run.job_id == job.id).order_by(Run.id)))
    results: Dict[int, int] = dict(
        session.execute(select(Result.run_id, Result.id).where(Result.job_id == job.id)).all()
    )
    return job_out(job, runs, results, warnings, pool=pool_device_ids(session, job.id))


def _resolve_task(body: JobCreate, models: List[Model], has_dataset: bool) -> Task:
    if not has_dataset:
        return Task.latency if body.task in (None, Task.latency) else body.task
    if body.task is not None:
        return body.task
    tasks = {m.task for m in models if m.task}
    if len(tasks) == 1:
        return Task(tasks.pop())
    raise Invalid(
        "Task unknown",
        "the job has a dataset but the models do not say which task they solve; "
        "pass task (classification or segmentation)",
    )


def _check_dataset_task(task: Task, layout: str) -> None:
    seg = layout == "voc-seg"
    if task == Task.segmentation and not seg or task == Task.classification and seg:
        raise Invalid("Dataset does not fit the task", f"a {layout} dataset cannot evaluate a {task} job")


def _inputs(session: Session, body: JobCreate) -> Tuple[List[Model], Optional[Dataset], Task]:
    """The job's models, its dataset and the task they are evaluated on."""
    models = [find_model(session, ref) for ref in body.models]
    if len({m.id for m in models}) != len(models):
        raise Invalid("Duplicate model", "each model may appear once in a job")
    dataset = find_dataset(session, body.dataset) if body.dataset else None
    task = _resolve_task(body, models, dataset is not None)
    if dataset is not None:
        _check_dataset_task(task, dataset.layout)
    return models, dataset, task


def _devices(session: Session, body: JobCreate, selector: DeviceSelector,
             warnings: List[str]) -> List[Device]:
    """The devices the job runs on now; none makes the job wait (or, if asked, refuses it)."""
    settings = body.settings
    devices = matching_devices(session, selector, str(settings.runtime), settings.accelerator)
    if not devices:
        message = (
            f"no enrolled, enabled device matches '{format_selector(selector)}' with runtime "
            f"{settings.runtime} on {settings.accelerator}"
        )
        if body.require_device:
            raise Invalid("No matching device", message, code="no-device")
        warnings.append(message + "; the job waits until one enrolls")
    return devices


def _check_run_count(body: JobCreate, models: int, devices: int) -> None:
    """Refuse a job that would make more than ``MAX_JOB_RUNS`` runs at once."""
    per_model = body.repeat * (devices if body.placement == Placement.each else 1)
    if models * per_model > MAX_JOB_RUNS:
        raise Invalid(
            "Too many runs",
            f"{models} model(s) x {per_model} run(s) each is more than {MAX_JOB_RUNS} runs in one job; "
            "lower repeat or split the job",
        )


def submit(ctx: AppContext, body: JobCreate, created_by: int) -> JobOut:
    """Create the job and its runs; the answer carries warnings (no reference, waiting)."""
    try:
        selector = parse_selector(body.devices)
    except SelectorError as exc:
        raise Invalid("Invalid device selector", str(exc))
    with ctx.db.write() as session:
        models, dataset, task = _inputs(session, body)
        reference, warnings = resolve_reference(session, body.settings.reference, models)
        devices = _devices(session, body, selector, warnings)
        _check_run_count(body, len(models), len(devices))
        job = Job(
            name=body.name, state=str(JobState.queued if devices else JobState.waiting),
            task=str(task), dataset_id=dataset.id if dataset else None,
            settings={**body.settings.model_dump(mode="json"), "reference": reference},
            selector=format_selector(selector), priority=body.priority,
            timeout_seconds=body.timeout_seconds, max_attempts=body.max_attempts,
            placement=str(body.placement), repeat=body.repeat, created_by=created_by,
        )
        job.model_links = [JobModel(model_id=m.id, position=i) for i, m in enumerate(models)]
        session.add(job)
        session.flush()
        fan_out(session, job, [m.id for m in models], devices)
        notify_new_work(session)
        out = job_view(session, job, warnings)
    ctx.waker.notify([d.id for d in devices])
    return out


def _jobs_query(state: Optional[JobState]):
    query = select(Job).options(selectinload(Job.model_links)).order_by(Job.id.desc())
    return query.where(Job.state == str(state)) if state is not None else query


def _run_counts(session: Session, job_ids: List[int]) -> Dict[int, Dict[str, int]]:
    """job id -> run state -> runs, one grouped query over ``ix_runs_job_state``."""
    counts: Dict[int, Dict[str, int]] = {i: {} for i in job_ids}
    rows = session.execute(select(Run.job_id, Run.state, func.count()).where(Run.job_id.in_(job_ids))
                           .group_by(Run.job_id, Run.state))
    for job_id, state, count in rows:
        counts[job_id][state] = count
    return counts


def list_jobs(ctx: AppContext, state: Optional[JobState] = None, limit: int = DEFAULT_PAGE_SIZE,
              offset: int = 0) -> Page[JobOut]:
    """Newest first, as summaries: run counts per state, no runs (``get_job`` has them)."""
    with ctx.db.read() as session:
        page = read_page(session, _jobs_query(state), limit, offset, lambda job: job)
        counts = _run_counts(session, [job.id for job in page.items])
        page.items = [job_out(job, [], {}).model_copy(update={"counts": counts[job.id]})
                      for job in page.items]
        return page


def _shown_runs(session: Session, job_id: int, lines: int) -> List[Run]:
    """At most ``lines`` runs of the job, in id order: its active ones first, then its newest."""
    active = list(session.scalars(select(Run).where(
        Run.job_id == job_id, Run.state.in_([str(s) for s in RunState if not s.is_final]))
        .order_by(Run.id).limit(lines)))
    newest = list(session.scalars(select(Run).where(
        Run.job_id == job_id, Run.state.in_([str(s) for s in RunState if s.is_final]))
        .order_by(Run.id.desc()).limit(lines - len(active)))) if len(active) < lines else []
    return sorted(active + newest, key=lambda run: run.id)


def recent_jobs(ctx: AppContext, limit: int, run_lines: int) -> List[JobOut]:
    """The newest jobs with their run counts and at most ``run_lines`` runs each (active
    runs first, then the newest): what the dashboard's job cards show."""
    with ctx.db.read() as session:
        jobs = list(session.scalars(_jobs_query(None).limit(limit)))
        counts = _run_counts(session, [job.id for job in jobs])
        out = []
        for job in jobs:
            runs = _shown_runs(session, job.id, run_lines)
            results: Dict[int, int] = dict(session.execute(
                select(Result.run_id, Result.id).where(Result.run_id.in_([r.id for r in runs]))).all())
            out.append(job_out(job, runs, results).model_copy(update={"counts": counts[job.id]}))
        return out


def list_runs(ctx: AppContext, job_id: int, limit: int = DEFAULT_PAGE_SIZE,
              offset: int = 0) -> Page[RunOut]:
    """One page of a job's runs in id order, each with its result id if it has one."""
    with ctx.db.read() as session:
        get_row(session, Job, job_id, "job")
        page = read_page(session, select(Run).where(Run.job_id == job_id).order_by(Run.id),
                         limit, offset, lambda run: run)
        results: Dict[int, int] = dict(session.execute(
            select(Result.run_id, Result.id).where(Result.run_id.in_([r.id for r in page.items]))).all())
        page.items = [run_out(run, results.get(run.id)) for run in page.items]
        return page


def get_job(ctx: AppContext, job_id: int) -> JobOut:
    with ctx.db.read() as session:
        return job_view(session, get_row(session, Job, job_id, "job"))


def cancel(ctx: AppContext, job_id: int, reason: Optional[str] = None) -> JobOut:
    """Queued runs end at once; leased and running ones are told at their next heartbeat."""
    with ctx.db.write() as session:
        job = get_row(session, Job, job_id, "job", with_for_update=True)
        if JobState(job.state).is_final:
            raise Conflict("Job finished", f"job {job_id} already ended as {job.state}")
        cancel_job(session, job, reason or "cancelled by a user")
        if JobState(job.state).is_final:  # nothing was running: it ended here
            announce_job(session, job, public_base(ctx))
        return job_view(session, job)


def get_run(ctx: AppContext, run_id: int) -> RunOut:
    with ctx.db.read() as session:
        run = get_row(session, Run, run_id, "run")
        return run_out(run, session.scalar(select(Result.id).where(Result.run_id == run_id)))

