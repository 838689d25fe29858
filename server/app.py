"""``create_app(settings)``: the FastAPI application with its API, problem
handlers (and their OpenAPI description), the request limits, the background
sweeper, writer of idle devices' ``last_seen_at`` and webhook outbox, and (on
PostgreSQL) the LISTEN thread."""

import asyncio
import contextlib
import logging
from typing import Optional

from fastapi import FastAPI

from . import __version__
from .api import api_router
from .api.bodies import RequestLimits
from .api.hot import HotPaths
from .config import Settings
from .context import AppContext
from .db import Database, Throttle
from .migrate import upgrade
from .notify import PgListener, Waker
from .outbox import deliver_forever
from .problems import document_problems, install_problem_handlers
from .storage import LocalArtifactStore
from .sweeper import sweep_forever, write_seen_forever
from .web import mount_dashboard

log = logging.getLogger(__name__)


def build_context(settings: Settings) -> AppContext:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url()
    if settings.should_migrate_on_start():
        upgrade(url)
    return AppContext(
        settings=settings, db=Database(url),
        store=LocalArtifactStore(settings.data_dir / "artifacts"), waker=Waker(),
        last_seen=Throttle(settings.last_seen_write_seconds),
    )


def create_app(settings: Optional[Settings] = None) -> FastAPI:
    settings = settings or Settings()
    ctx = build_context(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        ctx.waker.bind(asyncio.get_running_loop())
        listener = PgListener(ctx.db.url, ctx.waker) if ctx.db.dialect == "postgresql" else None
        if listener:
            listener.start()
        tasks = [asyncio.create_task(sweep_forever(ctx), name="lease-sweeper"),
                 asyncio.create_task(write_seen_forever(ctx), name="last-seen-writer"),
                 asyncio.create_task(deliver_forever(ctx), name="webhook-outbox")]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if listener:
                listener.stop()
            ctx.db.dispose()

    app = FastAPI(
        title="EdgeFarm", version=__version__, lifespan=lifespan,
        description="Remote device farm for benchmarking compressed deep-learning models.",
    )
    app.state.ctx = ctx
    install_problem_handlers(app)
    app.include_router(api_router())
    mount_dashboard(app)
    document_problems(app)
    app.add_middleware(HotPaths)  # inside RequestLimits: the last added is the outermost
    app.add_middleware(RequestLimits)
    return app
