"""Server settings, read from ``EDGEFARM_*`` environment variables or passed in."""

from pathlib import Path
from typing import Optional

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from edgefarm.shared.contract.rules import DEFAULT_INTERVALS
from edgefarm.shared.contract.schemas import Intervals


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEFARM_", extra="ignore")

    data_dir: Path = Field(default_factory=lambda: Path("edgefarm-data"))
    database_url: Optional[str] = None  # default: SQLite file in the data dir

    max_model_bytes: int = 2 * 1024**3
    max_dataset_bytes: int = 64 * 1024**3

    poll_wait_seconds: float = DEFAULT_INTERVALS.poll_wait_seconds
    poll_jitter_seconds: float = DEFAULT_INTERVALS.poll_jitter_seconds
    heartbeat_seconds: float = DEFAULT_INTERVALS.heartbeat_seconds
    lease_seconds: float = DEFAULT_INTERVALS.lease_seconds
    sweep_interval_seconds: float = 5.0
    offline_after_seconds: float = 90.0
    last_seen_write_seconds: float = 15.0  # a device's last_seen_at is written at most this often

    # webhooks (``edgefarm.server.outbox``): how often the outbox is read, the first retry's
    # wait (doubled at each failure), attempts before a delivery is given up, each POST's timeout
    webhook_interval_seconds: float = 1.0
    webhook_retry_seconds: float = 10.0
    webhook_max_attempts: int = 8
    webhook_timeout_seconds: float = 10.0

    public_url: Optional[str] = None  # base URL put into download links; default: request URL
    migrate_on_start: Optional[bool] = None  # default: True for SQLite, False otherwise

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'edgefarm.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url().startswith("sqlite")

    def should_migrate_on_start(self) -> bool:
        if self.migrate_on_start is not None:
            return self.migrate_on_start
        return self.is_sqlite

    def intervals(self) -> Intervals:
        return Intervals(
            poll_wait_seconds=self.poll_wait_seconds,
            poll_jitter_seconds=self.poll_jitter_seconds,
            heartbeat_seconds=self.heartbeat_seconds,
            lease_seconds=self.lease_seconds,
        )
