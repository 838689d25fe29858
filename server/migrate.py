"""Applying the Alembic migrations (``edgefarm.migrations``, the ``migrations/``
folder of a checkout, shipped inside the wheel) to a database URL.

The embedded SQLite default is upgraded on every server start; PostgreSQL is
upgraded by ``edgefarm-server migrate`` (so replicas never race to migrate).
"""

import importlib.util
from pathlib import Path
from typing import Optional

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine


def _migrations_dir() -> Path:
    """The Alembic script folder. Found, not imported: its ``env.py`` imports the
    server's tables, so the server treats the folder as data it hands to Alembic."""
    spec = importlib.util.find_spec("edgefarm.migrations")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the edgefarm.migrations package is missing from this installation")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


MIGRATIONS_DIR = _migrations_dir()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> Optional[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
