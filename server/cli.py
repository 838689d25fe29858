"""``edgefarm-server``: serve, migrate, create-token."""

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

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


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app

    settings = _settings(args)
    app = create_app(settings)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"EdgeFarm server on http://{shown}:{args.port}  (API docs: /docs, data: "
          f"{settings.data_dir.resolve()}, database: {app.state.ctx.db.dialect})",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=5)
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
