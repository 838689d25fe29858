"""Alembic on both databases: upgrade from empty gives exactly the ORM schema,
and a downgrade/upgrade round trip works."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from edgefarm.server.migrate import current_revision, downgrade, upgrade
from edgefarm.server.tables import Base


def schema_diff(url):
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def table_names(url):
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_from_empty_matches_orm(database_url):
    upgrade(database_url)
    assert current_revision(database_url) is not None
    assert table_names(database_url) == set(Base.metadata.tables)
    assert schema_diff(database_url) == []


def test_downgrade_and_upgrade_round_trip(database_url):
    upgrade(database_url)
    head = current_revision(database_url)
    downgrade(database_url, "base")
    assert table_names(database_url) == set()
    assert current_revision(database_url) is None
    upgrade(database_url)
    assert current_revision(database_url) == head
    assert schema_diff(database_url) == []


def test_enrollment_tokens_of_the_old_spelling_are_renamed(database_url):
    from sqlalchemy import text

    upgrade(database_url, "0001")
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO tokens (role, name, secret_hash, revoked, created_at) VALUES "
                "('enrol', 'old', 'x', false, CURRENT_TIMESTAMP), ('user', 'u', 'y', false, CURRENT_TIMESTAMP)"))
        upgrade(database_url)
        with engine.connect() as connection:
            roles = dict(connection.execute(text("SELECT name, role FROM tokens")).all())
        assert roles == {"old": "enroll", "u": "user"}
        downgrade(database_url, "0001")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT role FROM tokens WHERE name = 'old'")).scalar() == "enrol"
    finally:
        engine.dispose()
