"""The test database fixtures hand out real, empty, isolated databases."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    inspect,
    select,
    text,
)


def _farms_table(metadata: MetaData) -> Table:
    return Table(
        "farms",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("name", String(50), nullable=False),
    )


def test_database_url_roundtrip(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert inspect(engine).get_table_names() == []  # fresh and empty
        metadata = MetaData()
        farms = _farms_table(metadata)
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(farms), [{"name": "north"}, {"name": "south"}])
        with engine.connect() as conn:
            rows = conn.execute(select(farms.c.name).order_by(farms.c.id)).scalars().all()
        assert rows == ["north", "south"]
        expected = "sqlite" if database_url.startswith("sqlite") else "postgresql"
        assert engine.dialect.name == expected
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_databases_are_isolated(pg_cluster) -> None:
    names = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    urls = [pg_cluster.create_database(name) for name in names]
    engines = [create_engine(url) for url in urls]
    try:
        assert urls[0] != urls[1]
        metadata = MetaData()
        farms = _farms_table(metadata)
        metadata.create_all(engines[0])
        with engines[0].begin() as conn:
            conn.execute(insert(farms), [{"name": "only-in-first"}])
        assert inspect(engines[1]).get_table_names() == []
        metadata.create_all(engines[1])
        with engines[1].connect() as conn:
            assert conn.execute(select(farms.c.name)).all() == []
        with engines[0].connect() as conn:
            assert conn.execute(select(farms.c.name)).scalars().all() == ["only-in-first"]
    finally:
        for engine in engines:
            engine.dispose()
        for name in names:
            pg_cluster.drop_database(name)
    with pytest.raises(Exception, match=names[0]):
        create_engine(urls[0]).connect().close()


@pytest.mark.postgres
def test_drop_database_terminates_open_connections(pg_cluster) -> None:
    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(pg_cluster.create_database(name))
    conn = engine.connect()
    conn.execute(text("SELECT 1"))
    try:
        pg_cluster.drop_database(name)  # must not hang or fail on the open session
    finally:
        conn.invalidate()
        engine.dispose()


@pytest.mark.postgres
def test_for_update_skip_locked(pg_database: str) -> None:
    engine = create_engine(pg_database)
    try:
        metadata = MetaData()
        jobs = Table(
            "jobs",
            metadata,
            Column("id", Integer, primary_key=True),
            Column("state", String(20), nullable=False),
        )
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(jobs), [{"id": i, "state": "queued"} for i in (1, 2, 3)])

        claim = select(jobs.c.id).order_by(jobs.c.id).limit(1).with_for_update(skip_locked=True)
        with engine.connect() as first, engine.connect() as second:
            first_tx = first.begin()
            assert first.execute(claim).scalar_one() == 1  # row 1 now locked
            second_tx = second.begin()
            assert second.execute(claim).scalar_one() == 2  # skips the locked row
            everything = select(jobs.c.id).order_by(jobs.c.id).with_for_update(skip_locked=True)
            assert second.execute(everything).scalars().all() == [2, 3]
            second_tx.rollback()
            first_tx.rollback()
            with second.begin():
                assert second.execute(claim).scalar_one() == 1  # lock released
    finally:
        engine.dispose()
