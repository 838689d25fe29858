"""A longer seeded schemathesis run against a real server: starts ``edgefarm-server``
on a fresh SQLite database (``--postgres``: a throwaway PostgreSQL cluster), stores a little of everything,
sends ``--examples`` generated requests per operation and generation mode (valid,
then invalid), and prints the counts of requests, server errors and schema
violations (``tests.support.fuzz``). The test suite runs the same at a smaller
size (``tests/integration/test_api_fuzz.py``).
Run: ``.venv/bin/python benchmarks/fuzz_api.py --examples 200 --seed 1``.
"""

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.fuzz import fuzz_api, seed_farm  # noqa: E402
from tests.support.pgcluster import PgCluster  # noqa: E402
from tests.support.servers import Farm, ServerProcess  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="per operation and mode")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", action="store_true", help="default: a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        folder = Path(scratch)
        url = f"sqlite:///{folder}/fuzz.db"
        if args.postgres:
            cluster = stack.enter_context(PgCluster())
            url = cluster.create_database("fuzz")
        server = ServerProcess(folder / "data", url, poll_wait_seconds=0.2).start()
        farm = Farm(server)
        try:
            tokens = seed_farm(farm, folder)
            started = time.monotonic()
            report = fuzz_api(server.url, tokens, examples=args.examples, seed=args.seed)
            elapsed = time.monotonic() - started
        finally:
            farm.close()
            server.stop()
        log = server.log_path.read_text() if server.log_path.exists() else ""
    print(report.summary(limit=20))
    print(f"{elapsed:.0f} s, {report.requests / max(elapsed, 1e-9):.0f} requests/s; "
          f"server log tracebacks: {log.count('Traceback')}")
    for label, count in sorted(report.per_operation.items()):
        print(f"  {count:6d}  {label}")
    return 1 if report.server_errors or report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
