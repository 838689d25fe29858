"""The queue's hot statements on PostgreSQL run on the driver's own cursor
(``db.DriverStatement``): constant and JSON parameters converted as SQLAlchemy would, rows
as dicts, inside the caller's transaction, prepared by the server; read transactions end
with COMMIT, so psycopg keeps what it prepared (it forgets everything at a ROLLBACK); a
report's transaction is a Core connection whose ORM session is made on demand and flushed
before the commit. Also: a report's digest is the same from its one JSON dump."""

import pytest

pytest.importorskip("sqlalchemy")

from sqlalchemy import bindparam, func, insert, select, text, update  # noqa: E402

from edgefarm.server.db import Database, DriverStatement  # noqa: E402
from edgefarm.server.migrate import upgrade  # noqa: E402
from edgefarm.server.queue import report_digest  # noqa: E402
from edgefarm.server.tables import Device  # noqa: E402
from edgefarm.shared.contract.schemas import RunReport  # noqa: E402
from tests.support.servers import sample_result  # noqa: E402

DEVICES = Device.__table__


@pytest.fixture
def db(database_url):
    upgrade(database_url)
    database = Database(database_url)
    try:
        yield database
    finally:
        database.dispose()


def _postgres_only(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("DriverStatement is PostgreSQL's (SQLite runs the same statements through SQLAlchemy)")


# a statement with a constant (the 'pc' literal), a JSON parameter and a nullable one
_ADD = DriverStatement(
    insert(DEVICES).values(
        name=bindparam("name"), platform="pc", labels=[], enabled=True, draining=False,
        capabilities=bindparam("caps", type_=DEVICES.c.capabilities.type),
        last_seen_at=bindparam("seen", type_=DEVICES.c.last_seen_at.type), created_at=func.now())
    .returning(DEVICES.c.id, DEVICES.c.platform, DEVICES.c.capabilities, DEVICES.c.last_seen_at)
)
_RENAME = DriverStatement(
    update(DEVICES).where(DEVICES.c.id == bindparam("device_id")).values(name=bindparam("new_name"))
)


def test_driver_statements_convert_parameters_and_run_in_the_callers_transaction(db):
    _postgres_only(db)
    with db.write_on_connection() as session:
        rows = _ADD.rows(session.connection(), {"name": "a", "caps": {"runtimes": ["tflite"], "n": 2}, "seen": None})
    assert len(rows) == 1 and isinstance(rows[0], dict)
    row = rows[0]
    assert row["platform"] == "pc" and row["capabilities"] == {"runtimes": ["tflite"], "n": 2}
    assert row["last_seen_at"] is None
    # SQLAlchemy computes Python-side defaults when it executes: a statement that needs them is refused
    with db.write_on_connection() as session, pytest.raises(ValueError, match="enabled"):
        DriverStatement(insert(DEVICES).values(name=bindparam("name"), platform="pc")).rows(
            session.connection(), {"name": "no defaults"})
    with pytest.raises(RuntimeError):
        with db.write_on_connection() as session:
            assert _RENAME.rows(session.connection(), {"device_id": row["id"], "new_name": "b"}) == []
            raise RuntimeError("roll back")
    with db.read() as session:
        assert session.scalar(select(DEVICES.c.name).where(DEVICES.c.id == row["id"])) == "a"


def test_read_transactions_keep_the_statements_the_server_prepared(db):
    _postgres_only(db)
    count = DriverStatement(select(func.count().label("n")).select_from(DEVICES).where(DEVICES.c.platform == bindparam("p")))
    with db.write_on_connection() as session:
        connection = session.connection()
        backend = connection.execute(text("SELECT pg_backend_pid()")).scalar()
        assert count.rows(connection, {"p": "pc"}) == [{"n": 0}]
    with db.read() as session:  # the same pooled connection (last in, first out)
        assert session.execute(text("SELECT pg_backend_pid()")).scalar() == backend
        assert session.scalar(select(func.count()).select_from(DEVICES)) == 0
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar() == backend
        prepared = connection.execute(text(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%count(*)%devices%'")).scalar()
    assert prepared == 1  # still there after the read transaction ended


def test_a_reports_connection_session_flushes_its_orm_work_and_rolls_back_on_error(db):
    with db.write_on_connection() as session:
        device = Device(name="orm", platform="pc")
        session.add(device)  # the ORM session, made now, joins the transaction
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Device).where(Device.name == "orm")) == 1
    with pytest.raises(ValueError):
        with db.write_on_connection() as session:
            session.add(Device(name="gone", platform="pc"))
            session.connection().execute(update(DEVICES).values(platform="pi3"))
            raise ValueError("roll back")
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Device).where(Device.name == "gone")) == 0
        assert session.scalar(select(Device.platform).where(Device.name == "orm")) == "pc"


def test_the_digest_from_the_reports_one_dump_is_its_digest():
    report = RunReport.model_validate({"lease_id": "l-1", "state": "succeeded", "result": sample_result()})
    dumped = report.model_dump(mode="json")
    assert report_digest(report, dumped) == report_digest(report)
    other = report.model_copy(update={"lease_id": "l-2"})
    assert report_digest(other, other.model_dump(mode="json")) == report_digest(report)  # the lease is not hashed
    changed = RunReport.model_validate({"lease_id": "l-1", "state": "failed", "error": "x"})
    assert report_digest(changed, changed.model_dump(mode="json")) != report_digest(report)
