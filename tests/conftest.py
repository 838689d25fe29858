"""Shared pytest fixtures: fresh SQLite and PostgreSQL databases per test.

Fixtures:

``pg_cluster`` (session)
    A running ``tests.support.pgcluster.PgCluster``: a private throwaway cluster, or
    the server named by ``$EDGEFARM_TEST_PG_URL``.  Skipped when PostgreSQL is
    unavailable, except when ``$CI`` is set: then the tests fail instead.
``database_url`` (function, parametrised ``sqlite`` / ``postgresql``)
    URL of a fresh, empty database; the PostgreSQL one is dropped afterwards.

The PostgreSQL variants carry the ``postgres`` marker (``-m postgres`` /
``-m "not postgres"``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.support.pgcluster import PgCluster, PgClusterError, pg_available


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgres: needs a real PostgreSQL server (fixture pg_cluster)"
    )


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    available, reason = pg_available()
    if not available:
        if _in_ci():
            pytest.fail(f"PostgreSQL is required when CI is set: {reason}", pytrace=False)
        pytest.skip(f"PostgreSQL unavailable: {reason}")
    cluster = PgCluster()
    try:
        cluster.start()
    except PgClusterError as exc:
        pytest.fail(f"could not start PostgreSQL for the tests: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_database(pg_cluster: PgCluster) -> Iterator[str]:
    """SQLAlchemy URL of a fresh PostgreSQL database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = pg_cluster.create_database(name)
    try:
        yield url
    finally:
        pg_cluster.drop_database(name)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """URL of a fresh, empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/edgefarm.db"
    else:
        # Looked up lazily so a `-m "not postgres"` run never starts the cluster.
        yield request.getfixturevalue("pg_database")


@pytest.fixture
def start_farm(database_url, tmp_path):
    """Start a real server (uvicorn subprocess) on the test's database; returns a Farm.

    Keyword arguments become ``EDGEFARM_*`` settings, e.g. ``lease_seconds=2``.
    """
    from tests.support.servers import Farm, ServerProcess

    farms = []

    def start(**settings) -> Farm:
        settings.setdefault("sweep_interval_seconds", 0.2)
        server = ServerProcess(tmp_path / f"data{len(farms)}", database_url, **settings).start()
        farm = Farm(server)
        farms.append(farm)
        return farm

    yield start
    for farm in farms:
        farm.close()
        farm.server.stop()


@pytest.fixture
def farm(start_farm):
    """A running farm with default settings on SQLite and on PostgreSQL."""
    return start_farm()


@pytest.fixture
def sqlite_farm(tmp_path):
    """A running farm on a fresh SQLite file only (for tests whose subject is not the database)."""
    from tests.support.servers import Farm, ServerProcess

    server = ServerProcess(tmp_path / "data", f"sqlite:///{tmp_path}/edgefarm.db").start()
    farm = Farm(server)
    try:
        yield farm
    finally:
        farm.close()
        server.stop()
