"""Results: list and filter, CSV and JSON export, one result by id, and the
family comparison (variants side by side across devices)."""

import csv
import io
from datetime import datetime
from typing import List, Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import or_, select

from edgefarm.shared.contract.schemas import CompareOut, ResultOut

from ..auth import Principal
from ..compare import CSV_COLUMNS, compare_cells, flat_row
from ..context import AppContext
from ..convert import model_out, result_out
from ..problems import not_found
from ..tables import Dataset, Device, Job, Model, Result
from .deps import get_ctx, reader
from .devices import describe

router = APIRouter(prefix="/results", tags=["results"])


def _ref_filter(column_id, column_name, ref: str):
    if ref.isdigit():
        return or_(column_id == int(ref), column_name == ref)
    return column_name == ref


def query_results(
    session, base_url: str, *, model=None, family=None, variant=None, device=None, platform=None,
    runtime=None, task=None, job=None, since=None, until=None, limit=500, offset=0,
) -> List[ResultOut]:
    query = (
        select(Result, Model, Device, Dataset, Job.task)
        .join(Model, Model.id == Result.model_id).join(Device, Device.id == Result.device_id)
        .join(Job, Job.id == Result.job_id).outerjoin(Dataset, Dataset.id == Result.dataset_id)
    )
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


def to_csv(results: List[ResultOut]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow(flat_row(result))
    return buffer.getvalue()


@router.get("", response_model=List[ResultOut])
def list_results(
    request: Request,
    model: Optional[str] = Query(None, description="model id, name or sha256"),
    family: Optional[str] = None,
    variant: Optional[str] = Query(
        None, description="quantization (none, fp16, dynamic, int8) or variant label"
    ),
    device: Optional[str] = Query(None, description="device id or name"),
    platform: Optional[str] = None, runtime: Optional[str] = None, task: Optional[str] = None,
    job: Optional[int] = None, since: Optional[datetime] = None, until: Optional[datetime] = None,
    format: str = Query("json", pattern="^(json|csv)$"),
    limit: int = Query(500, ge=1, le=10000), offset: int = Query(0, ge=0),
    ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader),
):
    with ctx.db.read() as session:
        results = query_results(
            session, ctx.base_url(request), model=model, family=family, variant=variant,
            device=device, platform=platform, runtime=runtime, task=task, job=job, since=since,
            until=until, limit=limit, offset=offset,
        )
    wants_csv = format == "csv" or "text/csv" in request.headers.get("accept", "")
    if wants_csv:
        return Response(to_csv(results), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="results.csv"'})
    return results


@router.get("/compare", response_model=CompareOut)
def compare_family(
    request: Request, family: str, platform: Optional[str] = None, runtime: Optional[str] = None,
    ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader),
) -> CompareOut:
    """Variants of one family x devices, with deltas against the base model."""
    base_url = ctx.base_url(request)
    with ctx.db.read() as session:
        models = list(session.scalars(select(Model).where(Model.family == family).order_by(Model.id)))
        if not models:
            raise not_found("model family", family)
        base = _base_model(models)
        results = query_results(session, base_url, family=family, platform=platform,
                                runtime=runtime, limit=10000)
        device_ids = sorted({r.device_id for r in results})
        devices = [describe(session, session.get(Device, i), ctx) for i in device_ids]
        return CompareOut(
            family=family, base_model_id=base.id if base else None,
            models=[model_out(m, base_url) for m in models], devices=devices,
            cells=compare_cells(results, base.id if base else None),
        )


def _base_model(models: List[Model]) -> Optional[Model]:
    """The family's original: no parent, not quantized, not pruned; else the oldest."""
    for model in models:
        if model.parent_id is None and model.quantization == "none" and not model.sparsity:
            return model
    return models[0] if models else None


@router.get("/{result_id}", response_model=ResultOut)
def get_result(
    result_id: int, request: Request, ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(reader),
) -> ResultOut:
    with ctx.db.read() as session:
        row = session.execute(
            select(Result, Model, Device, Dataset, Job.task)
            .join(Model, Model.id == Result.model_id).join(Device, Device.id == Result.device_id)
            .join(Job, Job.id == Result.job_id).outerjoin(Dataset, Dataset.id == Result.dataset_id)
            .where(Result.id == result_id)
        ).first()
        if row is None:
            raise not_found("result", result_id)
        return result_out(*row, ctx.base_url(request))


