"""Models: streamed upload, metadata, download by sha256/ETag, list, delete."""

import json
from pathlib import Path
from typing import List, Optional

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import ValidationError
from sqlalchemy import delete, or_, select

from edgefarm.shared.contract.enums import ModelFormat, Task
from edgefarm.shared.contract.schemas import ModelMeta, ModelOut, TensorSpec
from edgefarm.shared.formats import ModelFormatError, detect_format, read_tflite_info
from edgefarm.shared.formats.onnx import read_onnx_info

from ..auth import Principal
from ..context import AppContext
from ..convert import model_out
from ..problems import ProblemError, ProblemException, conflict, not_found
from ..queue import runs_using_model
from ..tables import JobModel, Model, Result, Run
from .artifacts import artifact_response
from .deps import downloader, get_ctx, reader, submitter
from .uploads import receive_upload

router = APIRouter(prefix="/models", tags=["models"])


def parse_meta(fields: dict) -> ModelMeta:
    """The ``meta`` JSON field, with the plain fields name/family/task as shortcuts."""
    try:
        raw = json.loads(fields.get("meta") or "{}")
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


def inspect_file(path: Path):
    """Format from the content, and tensors when the format lets us read them."""
    fmt = detect_format(path)
    inputs: List[dict] = []
    outputs: List[dict] = []
    if fmt == ModelFormat.tflite:
        info = read_tflite_info(path)
        inputs, outputs = info["inputs"], info["outputs"]
    elif fmt == ModelFormat.onnx:  # DLC tensors stay unknown: the agent reads them on the device
        info = read_onnx_info(path)
        inputs, outputs = info["inputs"], info["outputs"]
    return fmt, inputs, outputs


def guess_task(outputs: List[dict]) -> Optional[Task]:
    if len(outputs) != 1:
        return None
    shape = outputs[0].get("shape") or []
    if len(shape) == 4 and min(shape[1], shape[2]) > 1:
        return Task.segmentation
    if len(shape) == 2 and shape[1] > 1:
        return Task.classification
    return None


def _build_model(session, meta: ModelMeta, filename: Optional[str], sha: str, size: int,
                 fmt: str, inputs: list, outputs: list) -> Model:
    parent = None
    if meta.lineage and meta.lineage.parent_sha256:
        parent = session.scalar(select(Model).where(Model.sha256 == meta.lineage.parent_sha256))
    name = meta.name or (Path(filename).stem if filename else sha[:12])
    family = meta.family or (parent.family if parent else name)
    task = meta.task or (Task(parent.task) if parent and parent.task else None) or guess_task(outputs)
    labels = meta.labels if meta.labels is not None else (parent.labels if parent else None)
    preprocessing = meta.preprocessing or None
    if preprocessing is None and parent is not None and parent.preprocessing:
        pre = parent.preprocessing
    else:
        pre = preprocessing.model_dump(mode="json") if preprocessing else None
    return Model(
        name=name, family=family, task=str(task) if task else None, format=fmt, sha256=sha,
        size_bytes=size, quantization=str(meta.variant.quantization),
        sparsity=meta.variant.sparsity, variant_label=meta.variant.label,
        preprocessing=pre, labels=labels,
        inputs=[TensorSpec(**t).model_dump(mode="json") for t in inputs],
        outputs=[TensorSpec(**t).model_dump(mode="json") for t in outputs],
        lineage=meta.lineage.model_dump(mode="json") if meta.lineage else None,
        parent_id=parent.id if parent else None, description=meta.description,
    )


@router.post("", response_model=ModelOut, status_code=201,
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["file"], "properties": {
                     "file": {"type": "string", "format": "binary"},
                     "meta": {"type": "string", "description": "ModelMeta as JSON"},
                     "name": {"type": "string"}, "family": {"type": "string"},
                     "task": {"type": "string"}}}}}}})
async def upload_model(
    request: Request, response: Response, ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(submitter),
) -> ModelOut:
    upload = await receive_upload(request, ctx.store, "file", ctx.settings.max_model_bytes)
    writer = upload.writer
    try:
        meta = parse_meta(upload.fields)
        writer.finish()
        fmt, inputs, outputs = await run_in_threadpool(inspect_file, writer.temp_path)
    except ModelFormatError as exc:
        writer.abort()
        detail = str(exc).replace(str(writer.temp_path), upload.filename or "the upload")
        raise ProblemException(415, "Not a model file", detail, kind="unsupported-model")
    except Exception:
        writer.abort()
        raise
    return await run_in_threadpool(
        _store_model, ctx, request, response, writer, meta, upload.filename, fmt, inputs, outputs
    )


def _store_model(ctx, request, response, writer, meta, filename, fmt, inputs, outputs) -> ModelOut:
    base = ctx.base_url(request)
    with ctx.db.write() as session:
        existing = session.scalar(select(Model).where(Model.sha256 == writer.sha256))
        if existing is not None:
            writer.abort()
            response.status_code = 200
            return model_out(existing, base)
        model = _build_model(session, meta, filename, writer.sha256, writer.size, fmt, inputs, outputs)
        writer.commit()
        session.add(model)
        session.flush()
        response.headers["Location"] = f"/api/v1/models/{model.id}"
        return model_out(model, base)


def find_model(session, ref: str) -> Model:
    """A model by id, full or abbreviated (>= 8 hex) sha256, or name (newest wins)."""
    ref = ref.strip()
    if ref.isdigit():
        model = session.get(Model, int(ref))
        if model is not None:
            return model
    query = select(Model).order_by(Model.id.desc())
    if len(ref) >= 8 and all(c in "0123456789abcdef" for c in ref):
        model = session.scalars(query.where(Model.sha256.startswith(ref))).first()
        if model is not None:
            return model
    model = session.scalars(query.where(Model.name == ref)).first()
    if model is None:
        raise not_found("model", ref)
    return model


@router.get("", response_model=List[ModelOut])
def list_models(
    request: Request, family: Optional[str] = None, name: Optional[str] = None,
    q: Optional[str] = Query(None, description="substring of name or family"),
    ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader),
) -> List[ModelOut]:
    query = select(Model).order_by(Model.id)
    if family:
        query = query.where(Model.family == family)
    if name:
        query = query.where(Model.name == name)
    if q:
        query = query.where(or_(Model.name.contains(q), Model.family.contains(q)))
    with ctx.db.read() as session:
        return [model_out(m, ctx.base_url(request)) for m in session.scalars(query)]


@router.get("/{ref}", response_model=ModelOut)
def get_model(
    ref: str, request: Request, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader)
) -> ModelOut:
    with ctx.db.read() as session:
        return model_out(find_model(session, ref), ctx.base_url(request))


@router.get("/{model_id}/file")
def download_model(
    model_id: int, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(downloader)
) -> FileResponse:
    with ctx.db.read() as session:
        model = session.get(Model, model_id)
        if model is None:
            raise not_found("model", model_id)
    return artifact_response(ctx, model.sha256, f"{model.name}.{model.format}")


@router.delete("/{model_id}", response_model=ModelOut)
def delete_model(
    model_id: int, request: Request, ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(submitter),
) -> ModelOut:
    with ctx.db.write() as session:
        model = session.get(Model, model_id)
        if model is None:
            raise not_found("model", model_id)
        pending = runs_using_model(session, model.id)
        if pending:
            raise conflict(
                "Model in use",
                f"model {model.id} ({model.name}) is used by {pending} queued, waiting or running "
                "run(s); cancel their jobs first",
            )
        if session.scalar(select(Result.id).where(Result.model_id == model.id).limit(1)):
            raise conflict(
                "Model has results",
                f"model {model.id} ({model.name}) has stored results; deleting it would orphan them",
            )
        out = model_out(model, ctx.base_url(request))
        for child in session.scalars(select(Model).where(Model.parent_id == model.id)):
            child.parent_id = None
        session.execute(delete(JobModel).where(JobModel.model_id == model.id))
        session.execute(delete(Run).where(Run.model_id == model.id))
        session.delete(model)
    ctx.store.delete(out.sha256)
    return out
