"""Database tables (SQLAlchemy 2.x ORM). The API never returns these rows
directly: ``edgefarm.server.services.convert`` turns them into ``edgefarm.shared.contract.schemas`` models."""

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Optional[datetime], dialect) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict: JSON, list: JSON, Any: JSON}


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[Optional[str]] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[Optional[datetime]]
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    device_id: Mapped[Optional[int]] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))


class RevokedSession(Base):
    """A dashboard session ended by ``/logout`` before it expired (its cookie nonce):
    a copy of the cookie no longer signs anyone in. Rows past ``expires_at`` are
    pruned at the next sign-out."""

    __tablename__ = "revoked_sessions"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("tokens.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    platform: Mapped[str] = mapped_column(String(40), index=True)
    labels: Mapped[list] = mapped_column(default=list)
    capabilities: Mapped[dict] = mapped_column(default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    draining: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[Optional[datetime]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    family: Mapped[str] = mapped_column(String(200), index=True)
    task: Mapped[Optional[str]] = mapped_column(String(32))
    format: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    quantization: Mapped[str] = mapped_column(String(32), default="none")
    sparsity: Mapped[Optional[float]] = mapped_column(Float)
    variant_label: Mapped[Optional[str]] = mapped_column(String(200))
    preprocessing: Mapped[Optional[dict]]
    labels: Mapped[Optional[list]]
    inputs: Mapped[list] = mapped_column(default=list)
    outputs: Mapped[list] = mapped_column(default=list)
    lineage: Mapped[Optional[dict]]
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    description: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    layout: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[Optional[int]] = mapped_column(BigInteger)
    sample_count: Mapped[Optional[int]]
    split: Mapped[Optional[str]] = mapped_column(String(100))
    root: Mapped[Optional[str]] = mapped_column(Text)
    classes: Mapped[Optional[list]]
    num_classes: Mapped[Optional[int]]
    path: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[Optional[str]] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), index=True)
    task: Mapped[str] = mapped_column(String(32))
    dataset_id: Mapped[Optional[int]] = mapped_column(ForeignKey("datasets.id"))
    settings: Mapped[dict] = mapped_column(default=dict)
    selector: Mapped[str] = mapped_column(String(1000))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[Optional[int]] = mapped_column(ForeignKey("tokens.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[Optional[datetime]]
    cancel_reason: Mapped[Optional[str]] = mapped_column(Text)
    placement: Mapped[str] = mapped_column(String(8), default="each", server_default="each")
    repeat: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    model_links: Mapped[list["JobModel"]] = relationship(
        order_by="JobModel.position", cascade="all, delete-orphan"
    )


class JobModel(Base):
    """The models of a job, in the order they were given."""

    __tablename__ = "job_models"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)


class JobPoolDevice(Base):
    """A device that may take the pool runs of a job placed ``any``: the job's
    selector resolved to devices (at submission, and as matching devices enroll).
    The claim joins it on ``ix_job_pool_devices_device`` (device first)."""

    __tablename__ = "job_pool_devices"
    __table_args__ = (Index("ix_job_pool_devices_device", "device_id", "job_id"),)

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_claim", "device_id", "state", "priority", "id"),
        # the lease sweep: only active runs whose lease or hard deadline has passed
        Index("ix_runs_state_lease_expires_at", "state", "lease_expires_at"),
        Index("ix_runs_state_deadline_at", "state", "deadline_at"),
        Index("ix_runs_job_state", "job_id", "state"),  # run counts per job (the jobs list)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    #: the device that runs it; a pool run's is set by the claim and cleared by a requeue
    device_id: Mapped[Optional[int]] = mapped_column(ForeignKey("devices.id"))
    #: whether any device of the job's pool (``JobPoolDevice``) may take it
    pooled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    state: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    lease_id: Mapped[Optional[str]] = mapped_column(String(36))
    lease_expires_at: Mapped[Optional[datetime]]
    leased_at: Mapped[Optional[datetime]]
    deadline_at: Mapped[Optional[datetime]]
    started_at: Mapped[Optional[datetime]]
    finished_at: Mapped[Optional[datetime]]
    error: Mapped[Optional[str]] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress: Mapped[Optional[dict]]
    report_lease_id: Mapped[Optional[str]] = mapped_column(String(36))
    report_digest: Mapped[Optional[str]] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Result(Base):
    __tablename__ = "results"
    #: the newest result of a (model, device): one seek (the family comparison)
    __table_args__ = (Index("ix_results_model_device", "model_id", "device_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), unique=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    dataset_id: Mapped[Optional[int]] = mapped_column(ForeignKey("datasets.id"))
    lease_id: Mapped[str] = mapped_column(String(36))
    digest: Mapped[str] = mapped_column(String(64))
    runtime: Mapped[str] = mapped_column(String(32), index=True)
    runtime_version: Mapped[Optional[str]] = mapped_column(String(100))
    agent_version: Mapped[Optional[str]] = mapped_column(String(100))
    model_sha256: Mapped[str] = mapped_column(String(64))
    dataset_sha256: Mapped[Optional[str]] = mapped_column(String(64))
    p50_ms: Mapped[Optional[float]] = mapped_column(Float)
    p90_ms: Mapped[Optional[float]] = mapped_column(Float)
    accuracy: Mapped[Optional[float]] = mapped_column(Float)
    accuracy_metric: Mapped[Optional[str]] = mapped_column(String(32))
    body: Mapped[dict] = mapped_column(default=dict)
    device_snapshot: Mapped[dict] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


# ---------------------------------------------------------------- regression watch


class Baseline(Base):
    """What a series (model family, variant, device, runtime) is held to: one of its
    results. Setting a new one replaces the old (one row per series)."""

    __tablename__ = "baselines"
    __table_args__ = (
        Index("ix_baselines_series", "family", "variant", "device_id", "runtime", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    family: Mapped[str] = mapped_column(String(200))
    variant: Mapped[str] = mapped_column(String(200))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    runtime: Mapped[str] = mapped_column(String(32))
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"))
    created_by: Mapped[Optional[int]] = mapped_column(ForeignKey("tokens.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RegressionThresholds(Base):
    """A family's own thresholds (the others keep the defaults of ``server.verdicts``)."""

    __tablename__ = "regression_thresholds"

    family: Mapped[str] = mapped_column(String(200), primary_key=True)
    thresholds: Mapped[dict] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Regression(Base):
    """One metric of one result that moved past its series' baseline."""

    __tablename__ = "regressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True)
    baseline_result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"))
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    family: Mapped[str] = mapped_column(String(200), index=True)
    variant: Mapped[str] = mapped_column(String(200))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    runtime: Mapped[str] = mapped_column(String(32))
    metric: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str] = mapped_column(String(16))
    baseline_value: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)
    change: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    low: Mapped[Optional[float]] = mapped_column(Float)
    high: Mapped[Optional[float]] = mapped_column(Float)
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Webhook(Base):
    """A URL that is sent the events it asks for, signed with its own secret."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list] = mapped_column(default=list)
    secret: Mapped[str] = mapped_column(String(100))
    description: Mapped[Optional[str]] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """The outbox: one event for one webhook, written in the transaction that caused it
    and sent by the delivery loop (``edgefarm.server.outbox``) until accepted or spent."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[Optional[datetime]]
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    response_code: Mapped[Optional[int]] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[Optional[datetime]]


class DeviceOfflineNotice(Base):
    """The last time a device was announced offline (its ``last_seen_at`` then): an
    offline device is announced once per silence, by whichever replica sees it first."""

    __tablename__ = "device_offline_notices"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    last_seen_at: Mapped[Optional[datetime]]
