"""Wire schemas of the regression watch: series and their history, baselines and
the thresholds they are held to, regressions found, webhooks and their deliveries.

A *series* is the results of one model family's variant on one device with one
runtime: ``(family, variant, device, runtime)``. The variant is the model's
variant label, else its quantization (``none``, ``fp16``, ``dynamic``, ``int8``),
so a retrained model with the same label continues its series. Runtime, agent
and OS versions are recorded on every point: a version change stays in the
series (and is compared with the baseline held before it) and is marked on
its history.
"""

from datetime import datetime
from typing import List, Optional

from pydantic import Field, HttpUrl

from .enums import StrEnum
from .ids import Count, DbId
from .schemas import NonNegative, Schema


class Thresholds(Schema):
    """How far a result may move from its baseline before it is a regression.
    Latency is relative (percent of the baseline's p50), accuracy (top-1 or mIoU)
    in percentage points, output agreement (PSNR) in decibels."""

    latency_pct: NonNegative = 5.0
    accuracy_pp: NonNegative = 0.5
    psnr_db: NonNegative = 3.0


#: What every family is held to unless an admin sets its own thresholds.
DEFAULT_THRESHOLDS = Thresholds()


class FamilyThresholds(Schema):
    family: str
    thresholds: Thresholds
    default: bool = True  # False: the family's own thresholds, set by an admin


class Series(Schema):
    family: str = Field(..., min_length=1, max_length=200)
    variant: str = Field(..., min_length=1, max_length=200)
    device_id: DbId
    runtime: str = Field(..., min_length=1, max_length=32)


class BaselineSet(Schema):
    """Hold a series to one of its results: ``result_id``, or the newest result of ``series``."""

    result_id: Optional[DbId] = None
    series: Optional[Series] = None


class BaselineOut(Schema):
    id: DbId
    series: Series
    device_name: str
    result_id: DbId
    p50_ms: Optional[float] = None
    accuracy: Optional[float] = None
    accuracy_metric: Optional[str] = None
    runtime_version: Optional[str] = None
    created_at: datetime


class Rule(StrEnum):
    """How a regression was decided. ``threshold``: the change alone passed the
    threshold (no raw samples to test, or no significance test available).
    ``significance``: the change passed the threshold and its confidence
    interval excludes no change."""

    threshold = "threshold"
    significance = "significance"


class RegressionOut(Schema):
    id: DbId
    result_id: DbId
    baseline_result_id: DbId
    job_id: DbId
    series: Series
    device_name: str
    metric: str  # latency_p50_ms, accuracy, psnr_db
    rule: Rule
    baseline_value: float
    value: float
    change: float  # latency: percent; accuracy: percentage points; psnr: dB
    threshold: float
    low: Optional[float] = None  # the change's confidence interval (significance rule)
    high: Optional[float] = None
    detail: str
    created_at: datetime


class HistoryPoint(Schema):
    result_id: DbId
    job_id: DbId
    created_at: datetime
    model_id: DbId
    model_name: str
    p50_ms: Optional[float] = None
    p50_low: Optional[float] = None  # the median's confidence interval, from the raw samples
    p50_high: Optional[float] = None
    accuracy: Optional[float] = None
    accuracy_metric: Optional[str] = None
    psnr_db: Optional[float] = None
    runtime_version: Optional[str] = None
    agent_version: Optional[str] = None
    os: Optional[str] = None
    changes: List[str] = Field(default_factory=list)  # what differs from the point before
    baseline: bool = False
    regressions: List[str] = Field(default_factory=list)  # metrics that regressed


class HistoryOut(Schema):
    series: Series
    device_name: str
    baseline_result_id: Optional[DbId] = None
    thresholds: Thresholds
    total: Count
    points: List[HistoryPoint]


class Event(StrEnum):
    """What a webhook can ask to be sent."""

    job_finished = "job.finished"
    run_failed = "run.failed"  # failed, lost or timed out
    regression_found = "regression.found"
    device_offline = "device.offline"


class WebhookCreate(Schema):
    url: HttpUrl
    events: List[Event] = Field(..., min_length=1)
    description: Optional[str] = Field(None, max_length=200)


class WebhookOut(Schema):
    id: DbId
    url: str
    events: List[Event]
    description: Optional[str] = None
    active: bool = True
    created_at: datetime
    secret: Optional[str] = Field(None, description="the signing secret, returned only at creation")


class DeliveryState(StrEnum):
    pending = "pending"  # waiting for its first or next attempt
    delivered = "delivered"  # the receiver answered 2xx
    failed = "failed"  # every attempt failed


class DeliveryOut(Schema):
    id: DbId
    webhook_id: DbId
    event: Event
    state: DeliveryState
    attempts: Count
    next_attempt_at: Optional[datetime] = None
    last_error: Optional[str] = None
    response_code: Optional[int] = None
    created_at: datetime
    delivered_at: Optional[datetime] = None
