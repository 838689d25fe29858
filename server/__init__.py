"""The EdgeFarm server: a FastAPI application that queues benchmark jobs in a SQL
database, leases their runs to device agents and keeps the results.

``edgefarm.server.app.create_app(settings)`` builds the application; ``edgefarm.server.cli`` is the
``edgefarm-server`` command.
"""

from edgefarm.shared import __version__

__all__ = ["__version__"]
