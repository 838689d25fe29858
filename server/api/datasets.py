"""Datasets: archive upload validated against a named layout, registration of
datasets already on the devices, list, download, delete."""

from typing import List, Optional

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from edgefarm.shared.contract.enums import DatasetLayout
from edgefarm.shared.contract.schemas import DatasetOut, DatasetRegister
from edgefarm.shared.datasets import LAYOUTS

from ..auth import Principal
from ..context import AppContext
from ..problems import ProblemException
from ..services import catalog
from .artifacts import dataset_download
from .bodies import FILE_RESPONSE, ContractRoute
from .deps import Offset, RowId, downloader, get_ctx, reader, submitter
from .pages import DEFAULT_LIMIT, Limit, send_page
from .uploads import receive_upload

router = APIRouter(prefix="/datasets", tags=["datasets"], route_class=ContractRoute)


#: The longest value of each text field of the upload form (its column's width).
FIELD_LENGTHS = {"name": 200, "layout": 32, "split": 100}


def _form_value(fields: dict, key: str, required: bool = True) -> Optional[str]:
    value = (fields.get(key) or "").strip()
    if required and not value:
        raise ProblemException(422, "Missing field", f"the form needs a '{key}' field")
    if len(value) > FIELD_LENGTHS[key]:
        raise ProblemException(422, "Field too long",
                               f"'{key}' is longer than {FIELD_LENGTHS[key]} characters")
    return value or None


def _layout(value: str) -> DatasetLayout:
    if value not in LAYOUTS:
        raise ProblemException(
            422, "Unknown layout", f"layout {value!r} is not one of: {', '.join(LAYOUTS)}"
        )
    return DatasetLayout(value)


@router.post("", response_model=DatasetOut, status_code=201,
             responses={200: {"model": DatasetOut,
                              "description": "the same archive is stored under this name already"}},
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["file", "name", "layout"], "properties": {
                     "file": {"type": "string", "format": "binary"},
                     "name": {"type": "string", "maxLength": 200},
                     "layout": {"type": "string", "enum": list(LAYOUTS)},
                     "split": {"type": "string", "maxLength": 100}}}}}}})
async def upload_dataset(
    request: Request, response: Response, ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(submitter),
) -> DatasetOut:
    """201 for a new dataset; 200 when the same archive is stored under this name already."""
    upload = await receive_upload(request, ctx.store, "file", ctx.settings.max_dataset_bytes)
    try:
        name = _form_value(upload.fields, "name")
        layout = _layout(_form_value(upload.fields, "layout"))
        split = _form_value(upload.fields, "split", required=False)
    except Exception:
        upload.writer.abort()
        raise
    dataset, created = await run_in_threadpool(
        catalog.add_dataset, ctx, upload.writer, name, layout, split, ctx.base_url(request)
    )
    if not created:
        response.status_code = 200
    return dataset


@router.post("/register", response_model=DatasetOut, status_code=201)
def register_dataset(
    body: DatasetRegister, request: Request, ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(submitter),
) -> DatasetOut:
    return catalog.register_dataset(ctx, body, ctx.base_url(request))


@router.get("", response_model=List[DatasetOut])
def list_datasets(
    request: Request, response: Response, limit: Limit = DEFAULT_LIMIT, offset: Offset = 0,
    ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader),
) -> List[DatasetOut]:
    """One page of datasets (``X-Total-Count``, ``Link: rel="next"``)."""
    return send_page(request, response, catalog.list_datasets(ctx, ctx.base_url(request), limit, offset))


@router.get("/{ref}", response_model=DatasetOut)
def get_dataset(
    ref: str, request: Request, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader)
) -> DatasetOut:
    return catalog.get_dataset(ctx, ref, ctx.base_url(request))


@router.get("/{dataset_id}/file", response_class=FileResponse, responses=FILE_RESPONSE)
def download_dataset(
    dataset_id: RowId, ctx: AppContext = Depends(get_ctx), principal: Principal = Depends(downloader)
):
    return dataset_download(ctx, dataset_id, principal)


@router.delete("/{dataset_id}", response_model=DatasetOut)
def delete_dataset(
    dataset_id: RowId, request: Request, ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(submitter),
) -> DatasetOut:
    return catalog.delete_dataset(ctx, dataset_id, ctx.base_url(request))
