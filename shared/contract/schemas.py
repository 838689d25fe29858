"""Request and response bodies of the REST API (``/api/v1``).

The server never returns ORM rows: every response is one of these models, and
the agent and CLI parse responses with them. Field names are the contract; add
fields freely, rename only with a protocol version bump.

Every body refuses what no honest client sends (HTTP 422): floats are finite
(no NaN or Infinity), whole numbers fit the database (``ids``: ``DbId``,
``Count``), counts, sizes and times are not negative, a report's latency
statistics are ordered (``min <= p50 <= p90 <= p99 <= max``), accuracies lie in
[0, 1] and a latency report keeps at most ``MAX_REPORT_SAMPLES`` raw samples.
"""

from datetime import datetime
from typing import Annotated, Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .enums import (
    ColorOrder,
    DatasetLayout,
    DatasetSource,
    DeviceStatus,
    JobState,
    Layout,
    ModelFormat,
    Placement,
    Quantization,
    Role,
    RunState,
    Runtime,
    Task,
)
from .ids import MAX_DB_INT, MAX_INT32, Count, DbId


class Schema(BaseModel):
    """Base of every wire model: unknown fields are ignored (forward compatible),
    floats must be finite."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=(), allow_inf_nan=False)


#: The most raw per-run times one ``LatencyStats`` may carry (the agent keeps at most
#: 40,000; ``edgefarm.agent.clock``). A report with more is refused.
MAX_REPORT_SAMPLES = 100_000

#: A duration in milliseconds or seconds, or any other non-negative figure.
NonNegative = Annotated[float, Field(ge=0)]
#: A rate such as top-1 accuracy or mIoU.
Fraction = Annotated[float, Field(ge=0, le=1)]


# ---------------------------------------------------------------- lists

#: Every list of the API is read a page at a time: this many rows unless ``limit`` says
#: otherwise, never more than ``MAX_PAGE_SIZE``. The body is a JSON array; the
#: ``X-Total-Count`` header counts the whole list and ``Link: <...>; rel="next"`` names the
#: next page while there is one.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


# ---------------------------------------------------------------- errors


class ProblemError(Schema):
    loc: List[Any] = Field(default_factory=list)
    msg: str


class Problem(Schema):
    """An RFC 9457 problem details body (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int = Field(..., ge=100, le=599)
    detail: str = ""
    instance: Optional[str] = None
    errors: List[ProblemError] = Field(default_factory=list)


# ---------------------------------------------------------------- tokens


class TokenCreate(Schema):
    role: Role
    name: Optional[str] = Field(None, max_length=200)


class TokenOut(Schema):
    id: DbId
    role: Role
    name: Optional[str] = None
    created_at: datetime
    used_at: Optional[datetime] = None
    revoked: bool = False
    device_id: Optional[DbId] = None
    token: Optional[str] = Field(None, description="the secret, returned only at creation")


# ---------------------------------------------------------------- models


class TensorQuantization(Schema):
    scale: List[float] = Field(default_factory=list)
    zero_point: List[int] = Field(default_factory=list)


class TensorSpec(Schema):
    name: str
    shape: List[int]
    dtype: str
    quantization: Optional[TensorQuantization] = None


class Preprocessing(Schema):
    """How a sample becomes an input tensor: ``(pixel * scale - mean) / std``.

    With the defaults a pixel in 0..255 maps to -1..1 (``x/127.5 - 1``).
    """

    mean: List[float] = Field(default_factory=lambda: [127.5, 127.5, 127.5])
    std: List[float] = Field(default_factory=lambda: [127.5, 127.5, 127.5])
    scale: float = 1.0
    color: ColorOrder = ColorOrder.rgb
    layout: Optional[Layout] = None  # None: read it from the model's input shape
    resize: str = "bilinear"


class Variant(Schema):
    """What distinguishes a model from the other members of its family."""

    quantization: Quantization = Quantization.none
    sparsity: Optional[float] = Field(None, ge=0.0, le=1.0)
    label: Optional[str] = Field(None, max_length=200)  # free text such as "pruned-0.9"


class Lineage(Schema):
    """Where a variant comes from: its parent model and the recipe applied."""

    parent_sha256: Optional[str] = None
    recipe: Dict[str, Any] = Field(default_factory=dict)
    calibration_dataset_sha256: Optional[str] = None
    tool: Optional[str] = None


class ModelMeta(Schema):
    """Metadata sent with a model upload (the ``meta`` form field, JSON)."""

    name: Optional[str] = Field(None, max_length=200)
    family: Optional[str] = Field(None, max_length=200)
    task: Optional[Task] = None
    variant: Variant = Field(default_factory=Variant)
    preprocessing: Optional[Preprocessing] = None
    labels: Optional[List[str]] = None
    lineage: Optional[Lineage] = None
    description: Optional[str] = None


class ModelRef(Schema):
    """A stored model as a lease names it: what an agent needs to fetch and run it."""

    id: DbId
    name: str
    family: str
    format: ModelFormat
    sha256: str
    size_bytes: Count
    download_url: str
    task: Optional[Task] = None
    variant: Variant = Field(default_factory=Variant)
    preprocessing: Optional[Preprocessing] = None
    labels: Optional[List[str]] = None
    inputs: List[TensorSpec] = Field(default_factory=list)
    outputs: List[TensorSpec] = Field(default_factory=list)


class ModelOut(ModelRef):
    """A stored model as the API shows it: its reference plus lineage and bookkeeping."""

    lineage: Optional[Lineage] = None
    parent_id: Optional[DbId] = None
    description: Optional[str] = None
    created_at: datetime


# ---------------------------------------------------------------- datasets


class DatasetRegister(Schema):
    """A dataset already present on the devices (not uploaded)."""

    name: str = Field(..., min_length=1, max_length=200)
    layout: DatasetLayout
    path: str = Field(..., min_length=1)
    sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$")
    sample_count: Optional[int] = Field(None, ge=1, le=MAX_INT32)
    split: Optional[str] = Field(None, max_length=100)
    classes: Optional[List[str]] = None


class DatasetRef(Schema):
    """A dataset as a lease names it: what an agent needs to fetch (or find) and read it."""

    id: DbId
    name: str
    layout: DatasetLayout
    source: DatasetSource
    sha256: str
    size_bytes: Optional[Count] = None
    sample_count: Optional[Count] = None
    split: Optional[str] = None
    classes: Optional[List[str]] = None
    download_url: Optional[str] = None
    path: Optional[str] = None


class DatasetOut(DatasetRef):
    """A dataset as the API shows it: its reference plus what validation found."""

    root: Optional[str] = None
    num_classes: Optional[Count] = None
    created_at: datetime


# ---------------------------------------------------------------- devices


class RuntimeInfo(Schema):
    name: str
    version: Optional[str] = None
    accelerators: List[str] = Field(default_factory=lambda: ["cpu"])


class DeviceCapabilities(Schema):
    platform: str = Field("pc", pattern=r"^[a-z0-9][a-z0-9_.-]{0,39}$")
    labels: List[str] = Field(default_factory=list)
    hostname: Optional[str] = None
    arch: Optional[str] = None
    cpu_model: Optional[str] = None
    cores: Optional[Count] = None
    memory_bytes: Optional[Count] = None
    os: Optional[str] = None
    python: Optional[str] = None
    agent_version: Optional[str] = None
    runtimes: List[RuntimeInfo] = Field(default_factory=list)


class Intervals(Schema):
    """The pace the server sets for its agents (seconds)."""

    poll_wait_seconds: NonNegative
    poll_jitter_seconds: NonNegative
    heartbeat_seconds: NonNegative
    lease_seconds: NonNegative


class EnrollRequest(Schema):
    name: str = Field(..., min_length=1, max_length=200)
    capabilities: DeviceCapabilities
    protocol_version: Count


class EnrollResponse(Schema):
    device_id: DbId
    agent_token: str
    protocol_version: int
    intervals: Intervals


class AgentHeartbeat(Schema):
    capabilities: Optional[DeviceCapabilities] = None


class AgentHeartbeatResponse(Schema):
    device_id: DbId
    status: DeviceStatus
    intervals: Intervals
    draining: bool = False


class DevicePatch(Schema):
    labels: Optional[List[str]] = None
    draining: Optional[bool] = None
    enabled: Optional[bool] = None


class DeviceOut(Schema):
    id: DbId
    name: str
    platform: str
    labels: List[str]
    status: DeviceStatus
    enabled: bool
    draining: bool
    capabilities: DeviceCapabilities
    last_seen_at: Optional[datetime] = None
    current_run_id: Optional[DbId] = None
    created_at: datetime


# ---------------------------------------------------------------- jobs and runs


class ReferenceSpec(Schema):
    """What a run's outputs are compared with (output agreement).

    ``model`` is a model id, name or sha256; None means the run's own model. The
    server fills ``resolved`` at submission: job model id (as a string) -> the id of
    the reference model it resolved for it, which the lease then carries.
    ``max_samples`` caps how many evaluated samples are compared (None: all).
    """

    runtime: Runtime = Runtime.tflite
    accelerator: str = "cpu"
    model: Optional[str] = None
    max_samples: Optional[int] = Field(100, ge=1, le=MAX_DB_INT)
    resolved: Dict[str, DbId] = Field(default_factory=dict)

    @field_validator("model", mode="before")
    @classmethod
    def _model_as_string(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class RunSettings(Schema):
    """How each run benchmarks: the runtime and the latency protocol, whose defaults are TFLite
    ``benchmark_model``'s (1 warmup run and 0.5 s; at least 50 measured runs and 1 s; at most 150 s).

    ``reference``: None (no output agreement), "auto" (the same model on tflite CPU,
    or for a variant its family's base model; the server resolves it at submission)
    or a ``ReferenceSpec``.
    """

    runtime: Runtime = Runtime.tflite
    accelerator: str = "cpu"
    threads: Optional[int] = Field(None, ge=1, le=256)
    warmup_runs: int = Field(1, ge=0, le=MAX_DB_INT)
    warmup_seconds: float = Field(0.5, ge=0)
    measured_runs: int = Field(50, ge=1, le=MAX_DB_INT)
    min_seconds: float = Field(1.0, ge=0)
    max_seconds: float = Field(150.0, gt=0)
    sample_limit: Optional[int] = Field(None, ge=1, le=MAX_DB_INT)
    preprocessing: Optional[Preprocessing] = None  # overrides the model's defaults
    options: Dict[str, Any] = Field(default_factory=dict)
    reference: Optional[Union[Literal["auto"], ReferenceSpec]] = None
    target_ci: Optional[float] = Field(
        None, gt=0, lt=1, description="keep measuring past measured_runs/min_seconds until the 95% "
        "interval of p50 is within +-target_ci of p50 (0.01 = 1%) or max_seconds has passed")
    rerun_throttled: bool = Field(
        False, description="re-run a measurement once, after a cool-down, when it was throttled")
    profile: bool = Field(
        False, description="also measure load stages (in a fresh process, before the timed runs) and "
        "per-layer time and per-layer drift (after them): a few seconds more per run")
    layer_runs: int = Field(5, ge=1, le=1000, description="profiled runs of the per-layer time pass")
    drift_samples: int = Field(2, ge=1, le=64, description="inputs compared by the per-layer drift pass")


#: The most runs one ``repeat`` may ask for per model (and device, with ``each``).
MAX_REPEAT = 1000


class JobCreate(Schema):
    models: List[str] = Field(..., min_length=1, description="model ids, names or sha256")
    dataset: Optional[str] = Field(None, description="dataset id or name; none = latency only")
    task: Optional[Task] = None
    settings: RunSettings = Field(default_factory=RunSettings)
    devices: str = Field("all", max_length=1000,
                         description="selector: all, platform=X, label=X, id=N, ...")
    priority: int = Field(0, ge=-100, le=100)
    timeout_seconds: int = Field(3600, ge=1, le=7 * 24 * 3600)
    max_attempts: int = Field(3, ge=1, le=10)
    require_device: bool = False
    name: Optional[str] = Field(None, max_length=200)
    placement: Placement = Field(
        Placement.each,
        description="each: the runs on every matching device; any: on one free matching device",
    )
    repeat: int = Field(1, ge=1, le=MAX_REPEAT,
                        description="runs per model (each: per model and device; any: spread over the pool)")

    @field_validator("models", mode="before")
    @classmethod
    def _models_as_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(m) if isinstance(m, int) and not isinstance(m, bool) else m for m in value]
        return value

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset_as_string(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("models")
    @classmethod
    def _models_not_blank(cls, value: List[str]) -> List[str]:
        if any(not m.strip() for m in value):
            raise ValueError("model references must not be blank")
        return value


class RunOut(Schema):
    id: DbId
    job_id: DbId
    model_id: DbId
    #: None while a pool run (placement ``any``) is queued: no device has taken it yet
    device_id: Optional[DbId] = None
    state: RunState
    attempt: Count
    max_attempts: Count
    lease_expires_at: Optional[datetime] = None
    created_at: datetime
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    error: Optional[str] = None
    progress: Optional[Dict[str, Any]] = None
    result_id: Optional[DbId] = None


class JobOut(Schema):
    id: DbId
    name: Optional[str] = None
    state: JobState
    task: Task
    models: List[DbId]
    dataset_id: Optional[DbId] = None
    settings: RunSettings
    devices: str
    priority: int
    timeout_seconds: int
    max_attempts: int
    placement: Placement = Placement.each
    repeat: Count = 1
    #: with placement ``any``: the devices that may take its runs
    pool: List[DbId] = Field(default_factory=list)
    created_at: datetime
    finished_at: Optional[datetime] = None
    cancel_reason: Optional[str] = None
    counts: Dict[str, Count] = Field(default_factory=dict)
    runs: List[RunOut] = Field(default_factory=list)
    warnings: List[str] = Field(default_factory=list)


class JobCancel(Schema):
    reason: Optional[str] = Field(None, max_length=500)


# ---------------------------------------------------------------- leases


class LeaseRequest(Schema):
    wait_seconds: Optional[float] = Field(None, ge=0, le=60)


class Lease(Schema):
    run_id: DbId
    job_id: DbId
    lease_id: str
    lease_expires_at: datetime
    attempt: Count
    max_attempts: Count
    task: Task
    timeout_seconds: Count
    model: ModelRef
    dataset: Optional[DatasetRef] = None
    settings: RunSettings
    intervals: Intervals
    reference_model: Optional[ModelRef] = None  # the model to compare outputs with


class RunHeartbeat(Schema):
    lease_id: str
    state: Optional[RunState] = None  # "running" once the agent starts work
    progress: Optional[Dict[str, Any]] = None


class RunHeartbeatResponse(Schema):
    lease_expires_at: datetime
    cancel: bool = False
    cancel_reason: Optional[str] = None


class RunRelease(Schema):
    lease_id: str
    reason: str = Field("released by agent", max_length=500)


# ---------------------------------------------------------------- results


class LatencyStats(Schema):
    """Statistics of per-run times in milliseconds, with the raw samples kept (at
    most ``MAX_REPORT_SAMPLES``); the order statistics must be ordered."""

    count: Count
    mean: NonNegative
    std: NonNegative
    min: NonNegative
    p50: NonNegative
    p90: NonNegative
    p99: NonNegative
    max: NonNegative
    samples: List[NonNegative] = Field(default_factory=list, max_length=MAX_REPORT_SAMPLES)

    @model_validator(mode="after")
    def _ordered(self) -> "LatencyStats":
        names = ("min", "p50", "p90", "p99", "max")
        values = [getattr(self, name) for name in names]
        for (low, a), (high, b) in zip(zip(names, values), zip(names[1:], values[1:])):
            if a > b:
                raise ValueError(f"{low} ({a}) must not exceed {high} ({b})")
        return self


class IouCounts(Schema):
    """Per-image pixel counts per class (``edgefarm.shared.stats.encoding.pack_counts``):
    ``intersection`` and ``union`` are ``images`` x ``classes`` tables."""

    classes: Count
    images: Count
    intersection: str = Field(..., max_length=64 * 1024 * 1024)
    union: str = Field(..., max_length=64 * 1024 * 1024)


class PerSample(Schema):
    """Which samples a result got right, in evaluation order, so the server can compute
    intervals and paired tests without the dataset (``edgefarm.shared.stats.encoding``).

    ``order_sha256`` is ``sample_order_sha256`` of the evaluated sample ids: two results are
    paired sample by sample only when it is equal. ``top1_correct``/``top5_correct`` are
    ``pack_flags`` bit sets of ``count`` samples; ``iou`` the per-image counts (segmentation).
    """

    count: Count
    order_sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$")
    top1_correct: Optional[str] = Field(None, max_length=16 * 1024 * 1024)
    top5_correct: Optional[str] = Field(None, max_length=16 * 1024 * 1024)
    iou: Optional[IouCounts] = None


class Metrics(Schema):
    model_config = ConfigDict(extra="allow")

    sample_count: Optional[Count] = None
    top1: Optional[Fraction] = None
    top5: Optional[Fraction] = None
    miou: Optional[Fraction] = None
    pixel_accuracy: Optional[Fraction] = None
    per_class_iou: Optional[Dict[str, Optional[Fraction]]] = None
    per_sample: Optional[PerSample] = None


class RuntimeReport(Schema):
    name: str = Field(..., max_length=32)
    version: Optional[str] = Field(None, max_length=100)
    accelerator: str = "cpu"
    threads: Optional[Count] = None
    delegate: Optional[str] = None


class Environment(Schema):
    """Thermal and frequency provenance of a run."""

    model_config = ConfigDict(extra="allow")

    governor: Optional[str] = None
    freq_khz_before: Optional[List[Count]] = None
    freq_khz_after: Optional[List[Count]] = None
    temp_c_before: Optional[float] = None
    temp_c_after: Optional[float] = None
    throttled: Optional[bool] = None
    gating: Optional["Gating"] = None
    trace: List["EnvironmentSample"] = Field(default_factory=list, max_length=10_000)


class Gating(Schema):
    """What the agent waited for before a measured run: the SoC temperature below the device's
    threshold (or no longer falling) and the governor/frequency the device's config expects."""

    model_config = ConfigDict(extra="allow")

    waited_seconds: NonNegative = 0.0
    ready: bool = True  # False: the bounded wait ran out and the run went ahead
    reason: Optional[str] = None  # why it waited or why it stopped waiting
    start_temp_c: Optional[float] = None
    threshold_temp_c: Optional[float] = None
    governor: Optional[str] = None
    expected_governor: Optional[str] = None


class EnvironmentSample(Schema):
    """Temperature and frequency sampled during a run (``t`` seconds from its start)."""

    t: NonNegative
    temp_c: Optional[float] = None
    freq_khz: Optional[List[Count]] = None


class Attempt(Schema):
    """One measurement of a run that was measured more than once (a high coefficient of
    variation or a throttled measurement): kept, not hidden."""

    model_config = ConfigDict(extra="allow")

    reason: str = Field(..., max_length=500)  # why it was not the one kept
    count: Count
    p50: NonNegative
    cv: Optional[NonNegative] = None
    throttled: Optional[bool] = None


class Repetition(Schema):
    """How long the harness measured: ``target_ci`` asked, ``achieved_ci`` (the 95% interval
    half-width of p50 relative to p50), whether the target was met or time ran out, and every
    earlier attempt of the measurement."""

    target_ci: Optional[float] = None
    achieved_ci: Optional[NonNegative] = None
    met: Optional[bool] = None
    stopped_by: Optional[str] = Field(None, max_length=200)  # "target", "max_seconds", "measured_runs"
    attempts: List[Attempt] = Field(default_factory=list, max_length=100)


Environment.model_rebuild()


class OutputAgreement(Schema):
    """How far one output is from the reference's, over the compared samples.

    ``psnr_db`` is ``10 * log10(peak^2 / MSE)`` with ``peak = max|reference|`` over
    the compared values; it is None when the outputs are identical (MSE 0).
    """

    max_abs_error: NonNegative
    mean_abs_error: NonNegative
    psnr_db: Optional[float] = None
    identical: bool = False
    reference_name: Optional[str] = None


class Agreement(Schema):
    """Output agreement of a run with its reference (``RunSettings.reference``).

    ``outputs`` is keyed by the run's output names; ``psnr_db`` is the lowest of them.
    ``top1_agreement`` (classification) is the rate at which the argmax of the first
    output agrees; ``error`` says why agreement could not be computed.
    """

    model_config = ConfigDict(extra="allow")

    reference: Dict[str, Any] = Field(default_factory=dict)
    sample_count: Count = 0
    outputs: Dict[str, OutputAgreement] = Field(default_factory=dict)
    psnr_db: Optional[float] = None
    top1_agreement: Optional[Fraction] = None
    error: Optional[str] = None


#: The most rows a result's layer table or drift table carries (the slowest / first kept).
MAX_LAYER_ROWS = 2000


class StageFigures(Schema):
    """One stage of a model's life in a fresh process: its time, how much the resident set
    grew over it (``rss_increase_bytes``, may be negative) and the highest it rose above its
    start while it ran (``rss_peak_increase_bytes``, sampled, plus the end)."""

    name: str = Field(..., max_length=40)  # cold_load, warm_load, first_inference, steady_inference
    ms: Optional[NonNegative] = None
    runs: Count = 1  # steady_inference: the mean of this many runs
    rss_before_bytes: Optional[Count] = None
    rss_increase_bytes: Optional[int] = Field(None, ge=-MAX_DB_INT, le=MAX_DB_INT)
    rss_peak_increase_bytes: Optional[Count] = None


class Stages(Schema):
    """Cold load, warm load, first and steady-state inference, measured in a fresh process
    before the run's own load. ``cache_dropped`` says whether the model file was dropped from
    the page cache first (``cache_note`` says how, or why not)."""

    stages: List[StageFigures] = Field(default_factory=list, max_length=20)
    sample_interval_ms: Optional[NonNegative] = None
    cache_dropped: bool = False
    cache_note: Optional[str] = Field(None, max_length=500)
    not_available: Optional[str] = Field(None, max_length=1000)


class LayerTime(Schema):
    """One layer (node) of the profiled runs: mean time over them and its share of their sum."""

    name: str = Field(..., max_length=1000)
    op_type: str = Field(..., max_length=100)
    kernel: Optional[str] = Field(None, max_length=100)  # the runtime's own kernel or layer type
    ms: NonNegative
    share: Fraction
    unit: Optional[str] = Field(None, max_length=40)  # CPU, GPU, DSP, ... where the runtime says


class LayerProfile(Schema):
    """Per-layer time from the runtime's own profiler, in a pass after the timed runs.
    ``total_ms`` is the mean over the profiled runs of the sum of layer times, ``run_ms``
    the mean wall time of those runs. ``e2e_ms`` is the median end-to-end time of as many
    unprofiled runs on the runtime's normal (timed-run) code path, made in the same pass
    (interleaved with the profiled runs where the runtime runs one inference at a time), so
    the layer sum is compared with an unprofiled time under the same machine load; None in
    results from before it was measured. ``not_available`` says why a runtime gives none."""

    source: Optional[str] = Field(None, max_length=200)
    runs: Count = 0
    total_ms: Optional[NonNegative] = None
    run_ms: Optional[NonNegative] = None
    e2e_ms: Optional[NonNegative] = None
    layers: List[LayerTime] = Field(default_factory=list, max_length=MAX_LAYER_ROWS)
    layers_left_out: Count = 0
    not_available: Optional[str] = Field(None, max_length=1000)


class TensorDrift(Schema):
    """How far one intermediate tensor of the run's model is from its reference's match."""

    name: str = Field(..., max_length=1000)
    reference_name: str = Field(..., max_length=1000)
    op_type: Optional[str] = Field(None, max_length=100)
    layer: Optional[str] = Field(None, max_length=1000)  # the node that produces it, when named
    position: Count  # order of the producing op in the model's graph
    matched_by: Literal["name", "position"]
    psnr_db: Optional[float] = None  # None: identical
    max_abs_error: NonNegative
    identical: bool = False


class Drift(Schema):
    """Per-layer numerical drift against the reference model on the same inputs: every
    matched intermediate tensor, dequantized, in graph order. ``matching`` says how tensors
    were paired; ``not_available`` why there is no table."""

    reference: Dict[str, Any] = Field(default_factory=dict)
    sample_count: Count = 0
    matching: Optional[str] = Field(None, max_length=1000)
    tensors: List[TensorDrift] = Field(default_factory=list, max_length=MAX_LAYER_ROWS)
    unmatched: Count = 0
    reference_unmatched: Count = 0
    not_available: Optional[str] = Field(None, max_length=1000)


class RunResult(Schema):
    """The figures an agent posts for a run (also ``edgefarm-agent bench --json``)."""

    runtime: RuntimeReport
    agent_version: Optional[str] = Field(None, max_length=100)
    init_ms: Optional[NonNegative] = None
    first_inference_ms: Optional[NonNegative] = None
    latency_ms: Optional[LatencyStats] = None
    end_to_end_ms: Optional[LatencyStats] = None
    model_size_bytes: Optional[Count] = None
    peak_rss_bytes: Optional[Count] = None
    metrics: Optional[Metrics] = None
    environment: Optional[Environment] = None
    extra: Dict[str, Any] = Field(default_factory=dict)
    agreement: Optional[Agreement] = None
    repetition: Optional[Repetition] = None
    stages: Optional[Stages] = None
    layers: Optional[LayerProfile] = None
    drift: Optional[Drift] = None


class LayerRow(Schema):
    """One row of a result's layer table: a profiled layer and, where a drift tensor is
    produced by it (or named like it), that tensor's drift; or a drift tensor alone."""

    name: str
    op_type: Optional[str] = None
    unit: Optional[str] = None
    ms: Optional[float] = None
    share: Optional[float] = None
    psnr_db: Optional[float] = None  # None with ``identical`` true: no drift at all
    max_abs_error: Optional[float] = None
    identical: Optional[bool] = None
    drift_tensor: Optional[str] = None
    slowest: bool = False  # one of the five slowest layers
    most_drifted: bool = False  # one of the five tensors of lowest PSNR


class LayerTableOut(Schema):
    """A result's layer table (``GET /api/v1/results/{id}/layers``, JSON or CSV): per-layer
    time and per-layer drift side by side, and why either is missing."""

    result_id: DbId
    runtime: str
    source: Optional[str] = None
    runs: int = 0
    total_ms: Optional[float] = None
    run_ms: Optional[float] = None
    e2e_ms: Optional[float] = None  # the unprofiled end-to-end time (``LayerProfile.e2e_ms``)
    layers_not_available: Optional[str] = None
    drift_reference: Dict[str, Any] = Field(default_factory=dict)
    drift_sample_count: int = 0
    drift_matching: Optional[str] = None
    drift_not_available: Optional[str] = None
    rows: List[LayerRow] = Field(default_factory=list)


class RunReport(Schema):
    """What the agent posts when a run ends, succeeded or failed."""

    lease_id: str
    state: RunState  # succeeded or failed
    error: Optional[str] = None
    result: Optional[RunResult] = None


class RunReportResponse(Schema):
    run_id: DbId
    state: RunState
    result_id: Optional[DbId] = None
    duplicate: bool = False


# ---------------------------------------------------------------- statistics

#: A comparison the data cannot support (no raw samples, no per-sample data, different samples).
NOT_TESTABLE = "not testable"


class IntervalOut(Schema):
    """A figure with its confidence interval (``edgefarm.shared.stats``); a bound is None
    when the data cannot give it (too few samples)."""

    estimate: float
    low: Optional[float] = None
    high: Optional[float] = None
    confidence: float = 0.95
    method: str = Field(..., max_length=200)


class ResultIntervals(Schema):
    """95% intervals of a result's headline figures, computed by the server from the data
    kept with the result; ``missing`` says why a figure has none ("no interval")."""

    latency_p50: Optional[IntervalOut] = None
    latency_p90: Optional[IntervalOut] = None
    latency_p99: Optional[IntervalOut] = None
    top1: Optional[IntervalOut] = None
    top5: Optional[IntervalOut] = None
    miou: Optional[IntervalOut] = None
    pixel_accuracy: Optional[IntervalOut] = None
    latency_samples: Count = 0  # how many raw samples the latency intervals come from
    missing: Dict[str, str] = Field(default_factory=dict)


class ShiftOut(Schema):
    """``new - base`` of one figure with its interval and verdict: "better" or "worse" only
    when the interval excludes zero, else "no significant difference"; "not testable" (with
    ``reason``) when the data cannot support a test. ``relative`` is ``estimate / base``."""

    verdict: str
    estimate: Optional[float] = None
    low: Optional[float] = None
    high: Optional[float] = None
    relative: Optional[float] = None
    confidence: float = 0.95
    method: Optional[str] = None
    p_value: Optional[float] = None
    reason: Optional[str] = None


class ResultOut(RunResult):
    id: DbId
    run_id: DbId
    job_id: DbId
    created_at: datetime
    model_id: DbId
    model_name: str
    model_sha256: str
    family: str
    variant: Variant
    task: Task
    dataset_id: Optional[DbId] = None
    dataset_name: Optional[str] = None
    dataset_sha256: Optional[str] = None
    device_id: DbId
    device_name: str
    platform: str
    device_snapshot: Dict[str, Any] = Field(default_factory=dict)
    permalink: str
    intervals: Optional[ResultIntervals] = None  # on one result (GET /results/{id}), not in lists


class CompareCell(Schema):
    result_id: DbId
    model_id: DbId
    device_id: DbId
    accuracy: Optional[float] = None
    accuracy_metric: Optional[str] = None
    p50_ms: Optional[float] = None
    p90_ms: Optional[float] = None
    model_size_bytes: Optional[Count] = None
    peak_rss_bytes: Optional[Count] = None
    delta_accuracy: Optional[float] = None
    latency_ratio: Optional[float] = None
    size_ratio: Optional[float] = None
    pareto: bool = False
    p50_interval: Optional[IntervalOut] = None
    accuracy_interval: Optional[IntervalOut] = None
    latency_shift: Optional[ShiftOut] = None  # against the base model on this device
    accuracy_shift: Optional[ShiftOut] = None


class ResultVersus(Schema):
    """Result ``result_id`` against ``base_result_id`` (any two results: one model on two
    devices, two runtimes, a variant and its base): the latency shift and the headline
    accuracy difference, each with its interval and verdict."""

    base_result_id: DbId
    result_id: DbId
    latency: ShiftOut
    accuracy: ShiftOut


class PlatformSpread(Schema):
    """Board-to-board spread: one model on several devices of one platform, the
    newest result of each board (its p50) summarised across the boards."""

    model_id: DbId
    platform: str
    boards: Count
    device_ids: List[DbId]
    p50_min_ms: Optional[float] = None
    p50_median_ms: Optional[float] = None
    p50_max_ms: Optional[float] = None
    #: (max - min) / median of the boards' p50, None without two latencies
    p50_relative_spread: Optional[float] = None


class CompareOut(Schema):
    family: str
    base_model_id: Optional[DbId] = None
    models: List[ModelOut]
    devices: List[DeviceOut]
    cells: List[CompareCell]
    spread: List[PlatformSpread] = Field(default_factory=list)


class Page(Schema):
    total: Count
    limit: Count
    offset: Count


class ServerInfo(Schema):
    name: str = "edgefarm"
    version: str
    protocol_version: int
    database: str
