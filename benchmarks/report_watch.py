"""What the regression watch adds to an agent's report, measured side by side.

One server (SQLite, a uvicorn process) and one agent spoken over HTTP. Reports of
results with ``--samples`` raw latency times are posted in alternation to two
series of the same device: one unwatched (no baseline), one watched (a baseline,
a webhook for every event, so each report also runs the significance test and
writes outbox rows). Prints the median report round trip of each and their ratio.
The test runs before the report's write transaction (``watch.prejudge``), so it
lengthens the watched report's round trip but not the time the write lock is held.
Run: ``.venv/bin/python benchmarks/report_watch.py``.
"""

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgefarm.shared.formats.tflite_builder import tiny_tflite  # noqa: E402
from tests.support.receiver import Receiver  # noqa: E402
from tests.support.servers import Farm, ServerProcess, sample_result  # noqa: E402


def result(samples: int, rng: random.Random) -> dict:
    times = sorted(10.0 * (1 + rng.uniform(-0.05, 0.05)) for _ in range(samples))
    body = sample_result(p50=10.0)
    body["latency_ms"] = {"count": samples, "mean": sum(times) / samples, "std": 0.3, "min": times[0],
                          "p50": times[samples // 2], "p90": times[int(samples * 0.9)], "p99": times[-1],
                          "max": times[-1], "samples": times}
    return body


def report_once(farm: Farm, agent, model: str, body: dict) -> float:
    farm.submit(models=[model], devices=f"id={agent.device_id}")
    lease = agent.lease()
    start = time.perf_counter()
    response = agent.report(lease, result=body)
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, response.text
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=40, help="reports per series")
    parser.add_argument("--samples", type=int, default=2000, help="raw latency times per report")
    args = parser.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as folder, Receiver() as receiver:
        server = ServerProcess(Path(folder), f"sqlite:///{folder}/edgefarm.db").start()
        farm = Farm(server)
        try:
            for name in ("plain", "watched"):
                path = Path(folder) / f"{name}.tflite"
                path.write_bytes(tiny_tflite(seed=len(name)))
                farm.push_model(path, name=name, family=name, task="classification")
            agent = farm.enroll("pc-1")
            report_once(farm, agent, "watched", result(args.samples, rng))
            farm.user.post("/api/v1/baselines", json={"result_id": farm.user.get(
                "/api/v1/results", params={"family": "watched"}).json()[0]["id"]})
            farm.admin.post("/api/v1/webhooks", json={"url": receiver.url, "events": [
                "job.finished", "run.failed", "regression.found", "device.offline"]})
            times = {"plain": [], "watched": []}
            for _ in range(args.reports):
                for name in times:
                    times[name].append(report_once(farm, agent, name, result(args.samples, rng)))
            plain, watched = (statistics.median(times[n]) * 1000 for n in ("plain", "watched"))
            print(f"report round trip, median of {args.reports}, {args.samples} raw times each")
            print(f"  unwatched series:                      {plain:7.2f} ms")
            print(f"  watched (baseline, test, outbox rows): {watched:7.2f} ms")
            print(f"  ratio watched / unwatched:             {watched / plain:7.2f}")
        finally:
            farm.close()
            server.stop()


if __name__ == "__main__":
    main()
