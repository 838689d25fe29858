"""Turning table rows into wire schemas (``edgefarm.shared.contract.schemas``):
the services answer with these, never with rows."""

import math
from datetime import datetime, timedelta
from typing import Any, Dict, List, Optional

from pydantic import ValidationError

from edgefarm.shared.contract.enums import DeviceStatus, JobState, Placement, RunState, Task
from edgefarm.shared.contract.schemas import (
    DatasetOut,
    DatasetRef,
    DeviceCapabilities,
    DeviceOut,
    JobOut,
    ModelOut,
    ModelRef,
    ResultOut,
    RunOut,
    RunResult,
    RunSettings,
    TokenOut,
    Variant,
)

from ..tables import Dataset, Device, Job, Model, Result, Run, Token, utcnow


def model_variant(model: Model) -> Variant:
    return Variant(quantization=model.quantization, sparsity=model.sparsity, label=model.variant_label)


def _model_fields(model: Model, base_url: str) -> dict:
    """The ``ModelRef`` fields of a model row."""
    return dict(
        id=model.id, name=model.name, family=model.family, task=model.task, format=model.format,
        sha256=model.sha256, size_bytes=model.size_bytes, variant=model_variant(model),
        preprocessing=model.preprocessing, labels=model.labels, inputs=model.inputs or [],
        outputs=model.outputs or [], download_url=f"{base_url}/api/v1/models/{model.id}/file",
    )


def model_ref(model: Model, base_url: str) -> ModelRef:
    return ModelRef(**_model_fields(model, base_url))


def model_out(model: Model, base_url: str) -> ModelOut:
    return ModelOut(**_model_fields(model, base_url), lineage=model.lineage, parent_id=model.parent_id,
                    description=model.description, created_at=model.created_at)


def dataset_download_url(dataset: Dataset, base_url: str) -> Optional[str]:
    if dataset.source != "uploaded":
        return None
    return f"{base_url}/api/v1/datasets/{dataset.id}/file"


def _dataset_fields(dataset: Dataset, base_url: str) -> dict:
    """The ``DatasetRef`` fields of a dataset row."""
    return dict(
        id=dataset.id, name=dataset.name, layout=dataset.layout, source=dataset.source,
        sha256=dataset.sha256, size_bytes=dataset.size_bytes, sample_count=dataset.sample_count,
        split=dataset.split, classes=dataset.classes, path=dataset.path,
        download_url=dataset_download_url(dataset, base_url),
    )


def dataset_ref(dataset: Dataset, base_url: str) -> DatasetRef:
    return DatasetRef(**_dataset_fields(dataset, base_url))


def dataset_out(dataset: Dataset, base_url: str) -> DatasetOut:
    return DatasetOut(**_dataset_fields(dataset, base_url), root=dataset.root,
                      num_classes=dataset.num_classes, created_at=dataset.created_at)


def device_status(
    device: Device, current_run: Optional[int], offline_after: float, now: Optional[datetime] = None
) -> DeviceStatus:
    now = now or utcnow()
    if not device.enabled:
        return DeviceStatus.disabled
    seen = device.last_seen_at
    if seen is None or now - seen > timedelta(seconds=offline_after):
        return DeviceStatus.offline
    if current_run is not None:
        return DeviceStatus.busy
    if device.draining:
        return DeviceStatus.draining
    return DeviceStatus.online


def device_out(device: Device, current_run: Optional[int], offline_after: float) -> DeviceOut:
    return DeviceOut(
        id=device.id, name=device.name, platform=device.platform, labels=device.labels or [],
        status=device_status(device, current_run, offline_after), enabled=device.enabled,
        draining=device.draining, capabilities=DeviceCapabilities(**(device.capabilities or {})),
        last_seen_at=device.last_seen_at, current_run_id=current_run, created_at=device.created_at,
    )


def run_out(run: Run, result_id: Optional[int] = None) -> RunOut:
    return RunOut(
        id=run.id, job_id=run.job_id, model_id=run.model_id, device_id=run.device_id,
        state=RunState(run.state), attempt=run.attempt, max_attempts=run.max_attempts,
        lease_expires_at=run.lease_expires_at, created_at=run.created_at,
        started_at=run.started_at, finished_at=run.finished_at, error=run.error,
        progress=run.progress, result_id=result_id,
    )


def job_out(
    job: Job, runs: List[Run], results: Dict[int, int], warnings: Optional[List[str]] = None,
    pool: Optional[List[int]] = None,
) -> JobOut:
    counts: Dict[str, int] = {}
    for run in runs:
        counts[run.state] = counts.get(run.state, 0) + 1
    return JobOut(
        id=job.id, name=job.name, state=JobState(job.state), task=Task(job.task),
        models=[link.model_id for link in job.model_links], dataset_id=job.dataset_id,
        settings=RunSettings.model_validate(job.settings), devices=job.selector, priority=job.priority,
        timeout_seconds=job.timeout_seconds, max_attempts=job.max_attempts,
        placement=Placement(job.placement), repeat=job.repeat, pool=pool or [],
        created_at=job.created_at, finished_at=job.finished_at, cancel_reason=job.cancel_reason,
        counts=counts, runs=[run_out(r, results.get(r.id)) for r in runs], warnings=warnings or [],
    )


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinite numbers as None (dropped from lists)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value if not (isinstance(item, float) and not math.isfinite(item))]
    return value


def stored_result_body(body: dict) -> dict:
    """A stored result body as today's contract reads it. Reports are checked on
    the way in, but rows written by an older server (or by hand) may hold NaN,
    infinite or out-of-range figures: such a figure is shown as missing, never
    as a failed page or a wrong number."""
    fields = _finite(dict(body))
    try:
        RunResult.model_validate(fields)
    except ValidationError as error:
        for problem in error.errors():
            name = problem["loc"][0] if problem["loc"] else None
            if name in RunResult.model_fields and name != "runtime":
                fields[name] = None
    return fields


def result_out(
    result: Result, model: Model, device: Device, dataset: Optional[Dataset], task: str,
    base_url: str,
) -> ResultOut:
    return ResultOut(
        **stored_result_body(result.body), id=result.id, run_id=result.run_id, job_id=result.job_id,
        created_at=result.created_at, model_id=model.id, model_name=model.name,
        model_sha256=result.model_sha256, family=model.family, variant=model_variant(model),
        task=Task(task), dataset_id=result.dataset_id,
        dataset_name=dataset.name if dataset else None, dataset_sha256=result.dataset_sha256,
        device_id=device.id, device_name=device.name, platform=device.platform,
        device_snapshot=result.device_snapshot or {},
        permalink=f"{base_url}/results/{result.id}",
    )


def token_out(row: Token, secret: Optional[str] = None) -> TokenOut:
    """A token row; ``secret`` (the plaintext token) only in the answer that creates it."""
    return TokenOut(
        id=row.id, role=row.role, name=row.name, created_at=row.created_at, used_at=row.used_at,
        revoked=row.revoked, device_id=row.device_id, token=secret,
    )
