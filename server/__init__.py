"""The EdgeFarm server: a FastAPI application that queues benchmark jobs in a SQL
database, leases their runs to device agents and keeps the results.

``server.app.create_app(settings)`` builds the application; ``server.cli`` is the
``edgefarm-server`` command.
"""

__version__ = "0.1.0"
