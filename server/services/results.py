"""Results: the filtered list (and its CSV), one result, and the family
comparison (every variant of a family on every device, with deltas against
the family's original). The arithmetic of the comparison is
``edgefarm.server.compare``'s; this module reads what it compares."""

import csv
import io
from datetime import datetime
from typing import List, Optional

from sqlalchemy import Select, or_, select

from edgefarm.shared.contract.ids import parse_id
from edgefarm.shared.contract.schemas import CompareOut, ResultOut

from ..compare import CSV_COLUMNS, compare_cells, flat_row
from ..context import AppContext
from ..tables import Dataset, Device, Job, Model, Result
from .convert import model_out, result_out
from .devices import describe
from .errors import NotFound
from .references import first_original


def _joined() -> Select:
    """Each result with what its answer names: model, device, dataset and the job's task."""
    return (
        select(Result, Model, Device, Dataset, Job.task)
        .join(Model, Model.id == Result.model_id).join(Device, Device.id == Result.device_id)
        .join(Job, Job.id == Result.job_id).outerjoin(Dataset, Dataset.id == Result.dataset_id)
    )


def _ref_filter(column_id, column_name, ref: str):
    row_id = parse_id(ref)
    if row_id is not None:
        return or_(column_id == row_id, column_name == ref)
    return column_name == ref


def find_results(
    session, base_url: str, *, model: Optional[str] = None, family: Optional[str] = None,
    variant: Optional[str] = None, device: Optional[str] = None, platform: Optional[str] = None,
    runtime: Optional[str] = None, task: Optional[str] = None, job: Optional[int] = None,
    since: Optional[datetime] = None, until: Optional[datetime] = None, limit: int = 500,
    offset: int = 0,
) -> List[ResultOut]:
    """Results in id order; ``model`` is an id, name or sha256, ``device`` an id or name,
    ``variant`` a quantization or a variant label."""
    query = _joined()
    if model:
        query = query.where(or_(_ref_filter(Model.id, Model.name, model), Model.sha256 == model))
    if family:
        query = query.where(Model.family == family)
    if variant:
        query = query.where(or_(Model.quantization == variant, Model.variant_label == variant))
    if device:
        query = query.where(_ref_filter(Device.id, Device.name, device))
    if platform:
        query = query.where(Device.platform == platform)
    if runtime:
        query = query.where(Result.runtime == runtime)
    if task:
        query = query.where(Job.task == task)
    if job is not None:
        query = query.where(Result.job_id == job)
    if since:
        query = query.where(Result.created_at >= since)
    if until:
        query = query.where(Result.created_at <= until)
    query = query.order_by(Result.id).limit(limit).offset(offset)
    return [result_out(r, m, d, ds, t, base_url) for r, m, d, ds, t in session.execute(query)]


def list_results(ctx: AppContext, base_url: str, **filters) -> List[ResultOut]:
    """``find_results`` in a read transaction of its own."""
    with ctx.db.read() as session:
        return find_results(session, base_url, **filters)


def get_result(ctx: AppContext, result_id: int, base_url: str) -> ResultOut:
    with ctx.db.read() as session:
        row = session.execute(_joined().where(Result.id == result_id)).first()
        if row is None:
            raise NotFound("result", result_id)
        return result_out(*row, base_url)


def compare_family(ctx: AppContext, family: str, base_url: str, platform: Optional[str] = None,
                   runtime: Optional[str] = None) -> CompareOut:
    """Variants of one family x devices, with deltas against the base model (the family's
    original, else its oldest model)."""
    with ctx.db.read() as session:
        models = list(session.scalars(select(Model).where(Model.family == family).order_by(Model.id)))
        if not models:
            raise NotFound("model family", family)
        base = first_original(models) or models[0]
        results = find_results(session, base_url, family=family, platform=platform,
                               runtime=runtime, limit=10000)
        device_ids = sorted({r.device_id for r in results})
        devices = [describe(session, session.get(Device, i), ctx) for i in device_ids]
        return CompareOut(
            family=family, base_model_id=base.id, models=[model_out(m, base_url) for m in models],
            devices=devices, cells=compare_cells(results, base.id),
        )


def to_csv(results: List[ResultOut]) -> str:
    """One row per result with the columns of ``compare.CSV_COLUMNS``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow(flat_row(result))
    return buffer.getvalue()
