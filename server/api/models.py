"""Models: streamed upload, metadata, download by sha256/ETag, list, delete."""

from typing import List, Optional

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import ValidationError

from edgefarm.shared.contract.enums import Task
from edgefarm.shared.contract.schemas import ModelMeta, ModelOut

from ..auth import Principal
from ..context import AppContext
from ..problems import ProblemError, ProblemException
from ..services import catalog
from .artifacts import model_download
from .bodies import FILE_RESPONSE, ContractRoute, strict_json
from .deps import Offset, RowId, downloader, get_ctx, reader, submitter
from .pages import DEFAULT_LIMIT, Limit, send_page
from .uploads import receive_upload

router = APIRouter(prefix="/models", tags=["models"], route_class=ContractRoute)


def parse_meta(fields: dict) -> ModelMeta:
    """The ``meta`` JSON field, with the plain fields name/family/task as shortcuts."""
    try:
        raw = strict_json(fields.get("meta") or "{}")
        if not isinstance(raw, dict):
            raise ValueError("meta must be a JSON object")
        for key in ("name", "family", "task", "description"):
            if fields.get(key):
                raw[key] = fields[key]
        return ModelMeta(**raw)
    except ValidationError as exc:
        errors = [ProblemError(loc=list(e["loc"]), msg=e["msg"]) for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors)
        raise ProblemException(422, "Invalid model metadata", detail, kind="validation", errors=errors)
    except ValueError as exc:
        raise ProblemException(422, "Invalid model metadata", f"the meta field is not valid JSON: {exc}")


@router.post("", response_model=ModelOut, status_code=201,
             responses={200: {"model": ModelOut, "description": "the same file is stored already"}},
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["file"], "properties": {
                     "file": {"type": "string", "format": "binary"},
                     "meta": {"type": "string", "description": "ModelMeta as JSON"},
                     "name": {"type": "string", "maxLength": 200},
                     "family": {"type": "string", "maxLength": 200},
                     "task": {"type": "string", "enum": [t.value for t in Task]}}}}}}})
async def upload_model(
    request: Request, response: Response, ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(submitter),
) -> ModelOut:
    """201 with a Location for a new model; 200 with the stored one for known content."""
    upload = await receive_upload(request, ctx.store, "file", ctx.settings.max_model_bytes)
    try:
        meta = parse_meta(upload.fields)
    except Exception:
        upload.writer.abort()
        raise
    model, created = await run_in_threadpool(
        catalog.add_model, ctx, upload.writer, meta, upload.filename, ctx.base_url(request)
    )
    if created:
        response.headers["Location"] = f"/api/v1/models/{model.id}"
    else:
        response.status_code = 200
    return model


@router.get("", response_model=List[ModelOut])
def list_models(
    request: Request, response: Response, family: Optional[str] = None, name: Optional[str] = None,
    q: Optional[str] = Query(None, description="substring of name or family"),
    limit: Limit = DEFAULT_LIMIT, offset: Offset = 0,
    ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader),
) -> List[ModelOut]:
    """One page of models in upload order (``X-Total-Count``, ``Link: rel="next"``)."""
    page = catalog.list_models(ctx, ctx.base_url(request), family=family, name=name, q=q,
                               limit=limit, offset=offset)
    return send_page(request, response, page)


@router.get("/{ref}", response_model=ModelOut)
def get_model(
    ref: str, request: Request, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader)
) -> ModelOut:
    return catalog.get_model(ctx, ref, ctx.base_url(request))


@router.get("/{model_id}/file", response_class=FileResponse, responses=FILE_RESPONSE)
def download_model(
    model_id: RowId, ctx: AppContext = Depends(get_ctx), principal: Principal = Depends(downloader)
) -> FileResponse:
    return model_download(ctx, model_id, principal)


@router.delete("/{model_id}", response_model=ModelOut)
def delete_model(
    model_id: RowId, request: Request, ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(submitter),
) -> ModelOut:
    return catalog.delete_model(ctx, model_id, ctx.base_url(request))
