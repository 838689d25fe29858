"""The catalog of models and datasets: reading an upload the API has streamed
into the artifact store (a model's format and tensors, a dataset archive's
layout), storing each file once under its sha256, registering datasets that
already sit on the devices, finding, listing and deleting them (refused while
jobs or results need them), and naming the stored file a download serves.

An upload arrives as an ``ArtifactWriter`` whose bytes are written; these
functions commit it into the store or abort it, whatever happens."""

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from sqlalchemy import delete, or_, select

from edgefarm.shared.contract.enums import DatasetLayout, DatasetSource, ModelFormat, Task
from edgefarm.shared.contract.schemas import (
    DEFAULT_PAGE_SIZE,
    DatasetOut,
    DatasetRegister,
    ModelMeta,
    ModelOut,
    TensorSpec,
)
from edgefarm.shared.datasets import DatasetError, validate_archive
from edgefarm.shared.formats import ModelFormatError, detect_format, read_tflite_info
from edgefarm.shared.formats.onnx import read_onnx_info

from ..context import AppContext
from ..queue import runs_using_model
from ..storage import ArtifactWriter, StorageFull
from ..tables import Dataset, Job, JobModel, Model, Result, Run
from .convert import dataset_out, model_out
from .errors import Conflict, Gone, InsufficientStorage, Invalid, NotFound, UnsupportedMedia
from .leases import device_needs_artifact
from .lookups import find_dataset, find_model, get_row
from .pages import Page, read_page


@dataclass(frozen=True)
class StoredFile:
    """A stored artifact to serve: its path in the store, its digest and a download name."""

    path: Path
    sha256: str
    filename: str


def stored_file(ctx: AppContext, sha256: str, filename: str) -> StoredFile:
    path = ctx.store.local_path(sha256)
    if path is None:
        raise Gone("Artifact missing", f"the stored file {sha256} is missing from the artifact store",
                   code="artifact-missing")
    return StoredFile(path, sha256, filename)


def blob_in_use(session, sha256: str) -> bool:
    """Whether a model or an uploaded dataset still names the stored file ``sha256``.

    Files are stored once per content, so one file can be a model and a dataset at
    once (a DLC is a zip archive); a delete removes the file only when this is False,
    asked inside the deleting transaction after its row is gone."""
    session.flush()
    model = session.scalar(select(Model.id).where(Model.sha256 == sha256).limit(1))
    dataset = session.scalar(
        select(Dataset.id).where(Dataset.sha256 == sha256,
                                 Dataset.source == str(DatasetSource.uploaded)).limit(1)
    )
    return model is not None or dataset is not None


@contextmanager
def _space_for(writer: ArtifactWriter) -> Iterator[None]:
    """A full artifact store as a domain error (507); the upload is dropped, nothing kept."""
    try:
        yield
    except StorageFull as exc:
        writer.abort()
        raise InsufficientStorage("Insufficient storage", f"{exc}; free space on the server "
                                  "(its data directory) and upload again") from exc


def _finished(writer: ArtifactWriter, inspect, *args):
    """Close the upload and run ``inspect(path, *args)`` on it; abort the upload if either fails."""
    try:
        with _space_for(writer):
            writer.finish()
        return inspect(writer.temp_path, *args)
    except Exception:
        writer.abort()
        raise


# ---------------------------------------------------------------- models


def inspect_model_file(path: Path) -> Tuple[ModelFormat, List[dict], List[dict]]:
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
    """A new row; what the metadata leaves out comes from the parent (by lineage) or the file."""
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


def add_model(ctx: AppContext, writer: ArtifactWriter, meta: ModelMeta, filename: Optional[str],
              base_url: str) -> Tuple[ModelOut, bool]:
    """Store an uploaded model: (the model, True) when new, (the stored one, False)
    when a model with the same content exists already."""
    try:
        fmt, inputs, outputs = _finished(writer, inspect_model_file)
    except ModelFormatError as exc:
        detail = str(exc).replace(str(writer.temp_path), filename or "the upload")
        raise UnsupportedMedia("Not a model file", detail, code="unsupported-model")
    with ctx.db.write() as session:
        existing = session.scalar(select(Model).where(Model.sha256 == writer.sha256))
        if existing is not None:
            writer.abort()
            return model_out(existing, base_url), False
        model = _build_model(session, meta, filename, writer.sha256, writer.size, fmt, inputs, outputs)
        with _space_for(writer):
            writer.commit()
        session.add(model)
        session.flush()
        return model_out(model, base_url), True


def list_models(ctx: AppContext, base_url: str, family: Optional[str] = None,
                name: Optional[str] = None, q: Optional[str] = None,
                limit: int = DEFAULT_PAGE_SIZE, offset: int = 0) -> Page[ModelOut]:
    """One page of models in upload order; ``q`` is a substring of the name or the family."""
    query = select(Model).order_by(Model.id)
    if family:
        query = query.where(Model.family == family)
    if name:
        query = query.where(Model.name == name)
    if q:
        query = query.where(or_(Model.name.contains(q), Model.family.contains(q)))
    with ctx.db.read() as session:
        return read_page(session, query, limit, offset, lambda m: model_out(m, base_url))


def get_model(ctx: AppContext, ref: str, base_url: str) -> ModelOut:
    with ctx.db.read() as session:
        return model_out(find_model(session, ref), base_url)


def _check_device_may_fetch(session, device_id: Optional[int], what: str, ref: int,
                            **artifact: int) -> None:
    """An agent (``device_id`` not None) fetches only what a run it holds names; anything
    else is answered as not found, so that an agent token learns nothing of the catalog
    (and a lease lost mid-download fails the run instead of stopping the agent, as a 403
    would)."""
    if device_id is not None and not device_needs_artifact(session, device_id, **artifact):
        raise NotFound(f"{what} among the runs this device holds", ref)


def model_file(ctx: AppContext, model_id: int, device_id: Optional[int] = None) -> StoredFile:
    """The model's stored file; for an agent (``device_id``) only a model its runs need."""
    with ctx.db.read() as session:
        _check_device_may_fetch(session, device_id, "model", model_id, model_id=model_id)
        model = get_row(session, Model, model_id, "model")
    return stored_file(ctx, model.sha256, f"{model.name}.{model.format}")


def delete_model(ctx: AppContext, model_id: int, base_url: str) -> ModelOut:
    """Refused while runs will use the model or results name it; its children lose their parent."""
    with ctx.db.write() as session:
        model = get_row(session, Model, model_id, "model")
        pending = runs_using_model(session, model.id)
        if pending:
            raise Conflict(
                "Model in use",
                f"model {model.id} ({model.name}) is used by {pending} queued, waiting or running "
                "run(s); cancel their jobs first",
            )
        if session.scalar(select(Result.id).where(Result.model_id == model.id).limit(1)):
            raise Conflict(
                "Model has results",
                f"model {model.id} ({model.name}) has stored results; deleting it would orphan them",
            )
        out = model_out(model, base_url)
        for child in session.scalars(select(Model).where(Model.parent_id == model.id)):
            child.parent_id = None
        session.execute(delete(JobModel).where(JobModel.model_id == model.id))
        session.execute(delete(Run).where(Run.model_id == model.id))
        session.delete(model)
        in_use = blob_in_use(session, out.sha256)
    ctx.lease_parts.clear()  # a SQLite database may give the id to the next model
    if not in_use:
        ctx.store.delete(out.sha256)
    return out


# ---------------------------------------------------------------- datasets


def add_dataset(ctx: AppContext, writer: ArtifactWriter, name: str, layout: DatasetLayout,
                split: Optional[str], base_url: str) -> Tuple[DatasetOut, bool]:
    """Store an uploaded archive that holds ``layout``: (the dataset, True) when new,
    (the stored one, False) when the same archive is stored under this name already."""
    try:
        summary = _finished(writer, validate_archive, str(layout), split)
    except DatasetError as exc:
        raise Invalid("Invalid dataset", str(exc), code="invalid-dataset")
    with ctx.db.write() as session:
        existing = session.scalar(select(Dataset).where(Dataset.name == name))
        if existing is not None:
            writer.abort()
            if existing.sha256 == writer.sha256:
                return dataset_out(existing, base_url), False
            raise Conflict(
                "Dataset name taken",
                f"a different dataset is already stored as {name!r}; choose another name",
            )
        dataset = Dataset(
            name=name, layout=summary.layout, source=str(DatasetSource.uploaded),
            sha256=writer.sha256, size_bytes=writer.size, sample_count=summary.sample_count,
            split=summary.split, root=summary.root, classes=summary.classes,
            num_classes=summary.num_classes,
        )
        with _space_for(writer):
            writer.commit()
        session.add(dataset)
        session.flush()
        return dataset_out(dataset, base_url), True


def register_dataset(ctx: AppContext, body: DatasetRegister, base_url: str) -> DatasetOut:
    """A dataset the devices already hold at ``body.path``; the server keeps no copy."""
    with ctx.db.write() as session:
        if session.scalar(select(Dataset.id).where(Dataset.name == body.name)) is not None:
            raise Conflict("Dataset name taken", f"a dataset named {body.name!r} already exists")
        dataset = Dataset(
            name=body.name, layout=str(body.layout), source=str(DatasetSource.registered),
            sha256=body.sha256, sample_count=body.sample_count, split=body.split,
            classes=body.classes, num_classes=len(body.classes) if body.classes else None,
            path=body.path,
        )
        session.add(dataset)
        session.flush()
        return dataset_out(dataset, base_url)


def list_datasets(ctx: AppContext, base_url: str, limit: int = DEFAULT_PAGE_SIZE,
                  offset: int = 0) -> Page[DatasetOut]:
    """One page of datasets in the order they were added."""
    with ctx.db.read() as session:
        return read_page(session, select(Dataset).order_by(Dataset.id), limit, offset,
                         lambda d: dataset_out(d, base_url))


def get_dataset(ctx: AppContext, ref: str, base_url: str) -> DatasetOut:
    with ctx.db.read() as session:
        return dataset_out(find_dataset(session, ref), base_url)


def dataset_file(ctx: AppContext, dataset_id: int, device_id: Optional[int] = None) -> StoredFile:
    """The dataset's stored archive; for an agent (``device_id``) only one its runs need."""
    with ctx.db.read() as session:
        _check_device_may_fetch(session, device_id, "dataset", dataset_id, dataset_id=dataset_id)
        dataset = get_row(session, Dataset, dataset_id, "dataset")
    if dataset.source != DatasetSource.uploaded:
        raise Conflict(
            "Dataset not stored here",
            f"dataset {dataset.name!r} is registered at {dataset.path} on the devices; "
            "the server holds no copy", code="dataset-not-stored-here",
        )
    return stored_file(ctx, dataset.sha256, f"{dataset.name}.archive")


def delete_dataset(ctx: AppContext, dataset_id: int, base_url: str) -> DatasetOut:
    """Refused while jobs name the dataset; the archive goes when no model or other dataset
    shares it."""
    with ctx.db.write() as session:
        dataset = get_row(session, Dataset, dataset_id, "dataset")
        if session.scalar(select(Job.id).where(Job.dataset_id == dataset.id).limit(1)) is not None:
            raise Conflict(
                "Dataset in use", f"dataset {dataset.name!r} is referenced by jobs; it is kept"
            )
        out = dataset_out(dataset, base_url)
        session.delete(dataset)
        in_use = blob_in_use(session, out.sha256)
    ctx.lease_parts.clear()  # a SQLite database may give the id to the next dataset
    if out.source == DatasetSource.uploaded and not in_use:
        ctx.store.delete(out.sha256)
    return out
