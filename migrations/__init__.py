"""Alembic migrations of the EdgeFarm server database (see ``server.migrate``)."""
