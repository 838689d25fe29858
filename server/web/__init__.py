"""The web dashboard: server-rendered pages (Jinja2, inline SVG charts, no
JavaScript library, nothing loaded from other hosts) at ``/``, signed-in with
a user or admin token.

Modules: ``routes`` (the pages), ``login`` (sign-in and sign-out),
``session`` (secret key, session cookie, CSRF), ``errors`` (error pages, and
the route class that shows the services' domain errors as pages), ``views``
(what the pages show, from ``edgefarm.shared.contract.schemas`` models),
``history`` (series, baselines, regressions), ``charts`` and ``timeline`` (SVG
geometry), ``render`` (templates, formats, headers). The data
comes from the services (``edgefarm.server.services``), as it does for the API.
"""

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from .errors import DashboardError
from .history import router as history_router
from .render import STATIC, page
from .routes import router
from .session import load_secret_key


def _error_page(request: Request, exc: DashboardError):
    return page(request, "error.html", exc.status, error=exc)


def mount_dashboard(app: FastAPI) -> None:
    """Add the pages and their static files; create the session secret on first start."""
    app.state.dashboard_key = load_secret_key(app.state.ctx.settings.data_dir)
    app.add_exception_handler(DashboardError, _error_page)
    app.include_router(router)
    app.include_router(history_router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
