"""Datasets: archive upload validated against a named layout, registration of
datasets already on the devices, list, download, delete."""

from typing import List, Optional

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from edgefarm.shared.contract.enums import DatasetLayout, DatasetSource
from edgefarm.shared.contract.schemas import DatasetOut, DatasetRegister
from edgefarm.shared.datasets import LAYOUTS, DatasetError, validate_archive

from ..auth import Principal
from ..context import AppContext
from ..convert import dataset_out
from ..problems import ProblemException, conflict, not_found
from ..tables import Dataset, Job
from .artifacts import artifact_response
from .deps import downloader, get_ctx, reader, submitter
from .uploads import receive_upload

router = APIRouter(prefix="/datasets", tags=["datasets"])

def _form_value(fields: dict, key: str, required: bool = True) -> Optional[str]:
    value = (fields.get(key) or "").strip()
    if required and not value:
        raise ProblemException(422, "Missing field", f"the form needs a '{key}' field")
    return value or None

def _layout(value: str) -> DatasetLayout:
    if value not in LAYOUTS:
        raise ProblemException(
            422, "Unknown layout", f"layout {value!r} is not one of: {', '.join(LAYOUTS)}"
        )
    return DatasetLayout(value)

@router.post("", response_model=DatasetOut, status_code=201,
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["file", "name", "layout"], "properties": {
                     "file": {"type": "string", "format": "binary"},
                     "name": {"type": "string"}, "layout": {"type": "string", "enum": list(LAYOUTS)},
                     "split": {"type": "string"}}}}}}})
async def upload_dataset(
    request: Request, response: Response, ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(submitter),
) -> DatasetOut:
    upload = await receive_upload(request, ctx.store, "file", ctx.settings.max_dataset_bytes)
    writer = upload.writer
    try:
        name = _form_value(upload.fields, "name")
        layout = _layout(_form_value(upload.fields, "layout"))
        split = _form_value(upload.fields, "split", required=False)
        writer.finish()
        summary = await run_in_threadpool(validate_archive, writer.temp_path, str(layout), split)
    except DatasetError as exc:
        writer.abort()
        raise ProblemException(422, "Invalid dataset", str(exc), kind="invalid-dataset")
    except Exception:
        writer.abort()
        raise
    return await run_in_threadpool(_store_dataset, ctx, request, response, writer, name, summary)

def _store_dataset(ctx, request, response, writer, name, summary) -> DatasetOut:
    with ctx.db.write() as session:
        existing = session.scalar(select(Dataset).where(Dataset.name == name))
        if existing is not None:
            writer.abort()
            if existing.sha256 == writer.sha256:
                response.status_code = 200
                return dataset_out(existing, ctx.base_url(request))
            raise conflict(
                "Dataset name taken",
                f"a different dataset is already stored as {name!r}; choose another name",
            )
        dataset = Dataset(
            name=name, layout=summary.layout, source=str(DatasetSource.uploaded),
            sha256=writer.sha256, size_bytes=writer.size, sample_count=summary.sample_count,
            split=summary.split, root=summary.root, classes=summary.classes,
            num_classes=summary.num_classes,
        )
        writer.commit()
        session.add(dataset)
        session.flush()
        return dataset_out(dataset, ctx.base_url(request))

@router.post("/register", response_model=DatasetOut, status_code=201)
def register_dataset(
    body: DatasetRegister, request: Request, ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(submitter),
) -> DatasetOut:
    with ctx.db.write() as session:
        if session.scalar(select(Dataset.id).where(Dataset.name == body.name)) is not None:
            raise conflict("Dataset name taken", f"a dataset named {body.name!r} already exists")
        dataset = Dataset(
            name=body.name, layout=str(body.layout), source=str(DatasetSource.registered),
            sha256=body.sha256, sample_count=body.sample_count, split=body.split,
            classes=body.classes, num_classes=len(body.classes) if body.classes else None,
            path=body.path,
        )
        session.add(dataset)
        session.flush()
        return dataset_out(dataset, ctx.base_url(request))

def find_dataset(session, ref: str) -> Dataset:
    ref = ref.strip()
    if ref.isdigit():
        dataset = session.get(Dataset, int(ref))
        if dataset is not None:
            return dataset
    dataset = session.scalar(select(Dataset).where(Dataset.name == ref))
    if dataset is None:
        raise not_found("dataset", ref)
    return dataset

@router.get("", response_model=List[DatasetOut])
def list_datasets(
    request: Request, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader)
) -> List[DatasetOut]:
    with ctx.db.read() as session:
        rows = session.scalars(select(Dataset).order_by(Dataset.id))
        return [dataset_out(d, ctx.base_url(request)) for d in rows]

@router.get("/{ref}", response_model=DatasetOut)
def get_dataset(
    ref: str, request: Request, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader)
) -> DatasetOut:
    with ctx.db.read() as session:
        return dataset_out(find_dataset(session, ref), ctx.base_url(request))

@router.get("/{dataset_id}/file")
def download_dataset(
    dataset_id: int, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(downloader)
):
    with ctx.db.read() as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            raise not_found("dataset", dataset_id)
    if dataset.source != DatasetSource.uploaded:
        raise ProblemException(
            409, "Dataset not stored here",
            f"dataset {dataset.name!r} is registered at {dataset.path} on the devices; "
            "the server holds no copy",
        )
    return artifact_response(ctx, dataset.sha256, f"{dataset.name}.archive")

@router.delete("/{dataset_id}", response_model=DatasetOut)
def delete_dataset(
    dataset_id: int, request: Request, ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(submitter),
) -> DatasetOut:
    with ctx.db.write() as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            raise not_found("dataset", dataset_id)
        if session.scalar(select(Job.id).where(Job.dataset_id == dataset.id).limit(1)) is not None:
            raise conflict(
                "Dataset in use", f"dataset {dataset.name!r} is referenced by jobs; it is kept"
            )
        out = dataset_out(dataset, ctx.base_url(request))
        session.delete(dataset)
        shared_blob = session.scalar(
            select(Dataset.id).where(Dataset.sha256 == out.sha256, Dataset.id != dataset_id)
        )
    if out.source == DatasetSource.uploaded and shared_blob is None:
        ctx.store.delete(out.sha256)
    return out
