"""The README's main job (``make demo``): start the farm on the embedded SQLite
default in ``./edgefarm-data``, create a user token, print how to reach it, and
keep serving until interrupted.

The device agent and the dashboard join this job as they land; today it starts
the server and prints its URL and a token for the CLI and curl.
"""

import os
import sys
from pathlib import Path

from .cli import main as server_main
from .config import Settings
from .db import Database
from .migrate import upgrade


def user_token(data_dir: Path) -> str:
    """Reuse the demo's token across runs; create it the first time."""
    token_file = data_dir / "demo-user-token"
    if token_file.exists():
        return token_file.read_text().strip()
    settings = Settings(data_dir=data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url())
    db = Database(settings.resolved_database_url())
    from shared.enums import Role

    from .auth import issue_token

    try:
        with db.write() as session:
            _, secret = issue_token(session, Role.user, "demo user")
    finally:
        db.dispose()
    token_file.write_text(secret + "\n")
    token_file.chmod(0o600)
    return secret


def main() -> int:
    data_dir = Path(os.environ.get("EDGEFARM_DATA_DIR", "edgefarm-data"))
    port = os.environ.get("EDGEFARM_PORT", "8000")
    token = user_token(data_dir)
    print(f"\nEdgeFarm demo: server at http://127.0.0.1:{port}\n"
          f"  export EDGEFARM_URL=http://127.0.0.1:{port} EDGEFARM_TOKEN={token}\n"
          f"  curl -H \"Authorization: Bearer $EDGEFARM_TOKEN\" $EDGEFARM_URL/api/v1/devices\n"
          "Press Ctrl-C to stop.\n", file=sys.stderr, flush=True)
    return server_main(["serve", "--data-dir", str(data_dir), "--port", port])


if __name__ == "__main__":
    sys.exit(main())
