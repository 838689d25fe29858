"""Alembic migrations of the EdgeFarm server database (see ``edgefarm.server.migrate``)."""
