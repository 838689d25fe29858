"""``edgefarm-server``: serve, migrate, create-token."""

import argparse
import os
import sys
from pathlib import Path
from typing import IO, List, Optional

from edgefarm.shared.contract.enums import Role

from .auth import issue_token
from .config import Settings
from .db import Database
from .migrate import upgrade


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    return Settings(**overrides)


#: The exit code of ``serve`` when another server process already serves the SQLite database.
EXIT_SQLITE_IN_USE = 2


def sqlite_serve_lock(database_url: str) -> Optional[IO[bytes]]:
    """Take the exclusive lock that makes one SQLite database one server process.

    SQLite has no row locks and no LISTEN/NOTIFY: a second replica on the same file would
    serialise every write and never hear of new work, so replicas need PostgreSQL. The lock
    is ``flock`` on ``<database>.serve.lock`` beside the file; the kernel drops it when the
    process ends, even by SIGKILL, so a crash never leaves a stale lock. Returns the open
    lock file (keep it open while serving), or None for PostgreSQL and in-memory SQLite;
    raises ``BlockingIOError`` when another process holds it.
    """
    import fcntl

    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    path = Path(url.database).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path.with_name(path.name + ".serve.lock"), "ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise BlockingIOError(f"{path} is already served by another edgefarm-server process") from None
    return handle


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app

    settings = _settings(args)
    try:
        lock = sqlite_serve_lock(settings.resolved_database_url())  # noqa: F841 (held while serving)
    except BlockingIOError as exc:
        print(f"edgefarm-server: {exc}. SQLite allows one server process per database; stop the "
              "other one, or run replicas on PostgreSQL (EDGEFARM_DATABASE_URL=postgresql+psycopg://...).",
              file=sys.stderr, flush=True)
        return EXIT_SQLITE_IN_USE
    app = create_app(settings)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"EdgeFarm server on http://{shown}:{args.port}  (API docs: /docs, data: "
          f"{settings.data_dir.resolve()}, database: {app.state.ctx.db.dialect})",
          file=sys.stderr, flush=True)
    # http/loop "auto": httptools and uvloop (the server extra) when installed, else h11
    # and asyncio; no access log unless asked (a line per request of every polling agent)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                access_log=args.access_log, http="auto", loop="auto", timeout_graceful_shutdown=5)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url(), args.revision)
    print(f"database at revision {args.revision}", file=sys.stderr)
    return 0


def cmd_create_token(args: argparse.Namespace) -> int:
    settings = _settings(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url()
    if settings.should_migrate_on_start():
        upgrade(url)
    db = Database(url)
    try:
        with db.write() as session:
            _, secret = issue_token(session, Role(args.role), args.name)
    finally:
        db.dispose()
    print(secret)
    return 0


def _role(text: str) -> str:
    """A token role as typed; ``enrol``, the old spelling, is ``enroll``."""
    return "enroll" if text == "enrol" else text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgefarm-server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", default=os.environ.get("EDGEFARM_DATA_DIR"),
                       help="data directory (default: $EDGEFARM_DATA_DIR or ./edgefarm-data)")
        p.add_argument("--database-url", default=None,
                       help="SQLAlchemy URL (default: $EDGEFARM_DATABASE_URL or SQLite in the data dir)")

    serve = sub.add_parser("serve", help="run the API server")
    common(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--access-log", action="store_true",
                       help="log every request (off by default: agents poll all the time)")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    common(migrate)
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(func=cmd_migrate)

    token = sub.add_parser("create-token", help="create a token; prints only the token")
    common(token)
    token.add_argument("--role", required=True, type=_role, choices=["admin", "user", "enroll"])
    token.add_argument("--name", default=None)
    token.set_defaults(func=cmd_create_token)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
