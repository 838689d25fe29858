"""Read times with many results: a real server (uvicorn subprocess) on SQLite
and on PostgreSQL, its database filled with ``--results`` results (100,000 by
default) by bulk SQL inserts, then the p50 of each read over real HTTP:

- the results list, first page and a deep page 90% in (by ``offset``, and by the
  ``after`` id cursor that the ``Link: rel="next"`` header gives; the code before
  pagination ignored ``after``, so its figure is not shown),
- the family comparison (API) and its dashboard page,
- the jobs list (API) and the dashboard's results page,

with the size of each answer. The results spread over 6 (model, device) pairs
of one family, in jobs of 2,000 runs (50 jobs for 100,000 results).
``--label`` names the column of this run; ``--merge FILE`` prints this run's
table side by side with an earlier run's (saved with ``--save FILE``).

Run: ``.venv/bin/python benchmarks/read_times.py --save /tmp/reads-new.json``.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.bulk_results import fill_results  # noqa: E402

__all__ = ["fill_results", "main"]

READS = [  # (name, path, params)
    ("results, first page", "/api/v1/results", {}),
    ("results, deep page (offset)", "/api/v1/results", {"offset": "DEEP"}),
    ("results, deep page (cursor)", "/api/v1/results", {"after": "DEEP"}),
    ("compare (API)", "/api/v1/results/compare", {"family": "net"}),
    ("compare page", "/compare/net", {}),
    ("jobs list (API)", "/api/v1/jobs", {}),
    ("results page", "/results", {}),
]


def time_reads(client, total: int, repeat: int) -> dict:
    """name -> (p50 seconds, bytes of the answer)."""
    out = {}
    for name, path, params in READS:
        params = {k: (str(total * 9 // 10) if v == "DEEP" else v) for k, v in params.items()}
        samples, size = [], 0
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(path, params=params)
            samples.append(time.perf_counter() - started)
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
            size = len(response.content)
        out[name] = (statistics.median(samples), size)
    return out


def measure(database_url: str, count: int, repeat: int) -> dict:
    from tests.support.servers import Farm, ServerProcess, populate_family

    with tempfile.TemporaryDirectory() as folder:
        server = ServerProcess(Path(folder) / "data", database_url).start()
        try:
            farm = Farm(server)
            populate_family(farm, Path(folder))
            started = time.perf_counter()
            fill_results(database_url, count - 6)
            print(f"  filled {count} results in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            return time_reads(farm.user, count, repeat)
        finally:
            server.stop()


def databases(which: str):
    if which in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as folder:
            yield "sqlite", f"sqlite:///{folder}/edgefarm.db"
    if which in ("postgresql", "both"):
        from tests.support.pgcluster import PgCluster

        with PgCluster() as cluster:
            yield "postgresql", cluster.create_database("reads")


def table(runs: dict) -> str:
    """runs: label -> {database -> {read -> (p50, bytes)}}, as Markdown."""
    labels = list(runs)
    head = "| database | read | " + " | ".join(f"{label} p50 | {label} size" for label in labels)
    lines = [head + " |", "|" + " --- |" * (2 + 2 * len(labels))]
    for database in runs[labels[-1]]:
        for name, _path, _params in READS:
            cells = []
            for label in labels:
                p50, size = runs[label].get(database, {}).get(name, (None, None))
                if label != labels[-1] and "cursor" in name:
                    p50 = None
                cells.append(f"{p50 * 1000:.0f} ms | {size / 1e6:.2f} MB" if p50 is not None else "- | -")
            lines.append(f"| {database} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--label", default="now")
    parser.add_argument("--save", help="write this run's figures to a JSON file")
    parser.add_argument("--merge", help="an earlier run's JSON file, printed side by side")
    args = parser.parse_args()
    figures = {}
    for name, url in databases(args.database):
        print(f"{name}: {args.results} results", file=sys.stderr)
        figures[name] = measure(url, args.results, args.repeat)
    if args.save:
        Path(args.save).write_text(json.dumps({args.label: figures}))
    runs = json.loads(Path(args.merge).read_text()) if args.merge else {}
    runs[args.label] = figures
    print(f"p50 of {args.repeat} reads with {args.results} results")
    print(table(runs))


if __name__ == "__main__":
    main()
