"""A simulated fleet against one real ``edgefarm-server serve`` process, figures side by side.

Agents are simulated on the real endpoints (enroll, long-poll lease, report) from this
one client process with httpx + asyncio, so thousands of idle agents are feasible. For
each database (SQLite, then PostgreSQL on a throwaway cluster) it prints, each figure
the median of 3 short rounds:

1. busy fleet (8 and 64 agents, every agent lease -> report as fast as it can):
   cycles/s, the same server's requests/s on ``GET /api/v1/info`` with as many
   clients in the same run (alternating with the cycles), the ratio
   cycles/s / info requests/s (a cycle is 2 requests: 0.5 is the ceiling), lease p50/p99;
2. idle fleet (500 and 2,000 agents long-polling): the server's CPU (from
   ``/proc/<pid>/stat``, % of one core), and among 2,000 idle agents the delay from
   submitting a job for one of them to that agent holding its lease (p50 and max);
3. correctness all along: errors (non-2xx answers, transport errors), double leases
   (one run leased twice), lost results (accepted reports with no result row), and long
   polls answered later than wait + 2 s.

4. read times with ``--reads`` results stored (100,000 by default; 0 skips them): the
   results list (first and deep page), the comparison (API and page), the jobs list and the
   dashboard's results page, p50 of 7 each (``read_times.py``'s measurement, on a fresh
   database of each kind);

5. with ``--replicas``: two server processes on one PostgreSQL behind haproxy
   (deploy/haproxy.cfg), busy cycles/s through the balancer with one replica enabled
   and with both, and the CPU of each process in each phase.

The client process can itself saturate a core at high request rates; its CPU is printed
next to the server's so a reader can tell. Run:
``.venv/bin/python benchmarks/fleet.py [--db sqlite|postgresql|both] [--quick] [--reads N] [--replicas]``.

``start_server(db, workdir)`` starts the server and returns a ``Started`` (url, pid,
admin token, database URL, stop); other measurements can reuse it.
"""

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgefarm.shared.contract import PROTOCOL_HEADER, PROTOCOL_VERSION  # noqa: E402
from tests.support.servers import ServerProcess  # noqa: E402

API = "/api/v1"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Started:
    url: str
    pid: int
    admin_token: str
    user_token: str
    database_url: str
    stop: Callable[[], None]
    db_pid: Optional[int] = None  # PostgreSQL's postmaster (its backends are its children)
    pids: List[int] = field(default_factory=list)  # every server replica
    balancer: Optional[object] = None  # the HAProxy in front of the replicas


def start_server(db: str, workdir: Path, replicas: int = 1, **settings: object) -> Started:
    """A real server on ``db`` ('sqlite' or 'postgresql', the latter on a throwaway
    cluster), with an admin and a user token; ``stop()`` ends all. With ``replicas`` > 1
    (PostgreSQL only), that many server processes on the one database and artifact folder,
    behind Debian's haproxy configured from deploy/haproxy.cfg: ``url`` is the balancer's."""
    cleanups: List[Callable[[], None]] = []
    db_pid = None
    if db == "sqlite":
        url = f"sqlite:///{workdir / 'fleet.db'}"
    else:
        from tests.support.pgcluster import PgCluster

        cluster = PgCluster().start()
        cleanups.append(cluster.stop)
        url = cluster.create_database("fleet")
        pid_file = cluster.data_dir / "postmaster.pid" if cluster.base_dir else None
        if pid_file is not None and pid_file.exists():
            db_pid = int(pid_file.read_text().split()[0])
    servers = [ServerProcess(workdir / "data", url, **settings).start() for _ in range(replicas)]
    cleanups[:0] = [server.stop for server in servers]
    balancer = None
    if replicas > 1:
        from tests.support.haproxy import HAProxy

        balancer = HAProxy(workdir / "haproxy", [("127.0.0.1", s.port) for s in servers]).start()
        cleanups.insert(0, balancer.stop)

    def stop() -> None:
        for cleanup in cleanups:
            cleanup()

    server = servers[0]
    return Started(balancer.url if balancer else server.url, server.proc.pid,
                   server.create_token("admin"), server.create_token("user"), url, stop,
                   db_pid=db_pid, pids=[s.proc.pid for s in servers], balancer=balancer)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(pid: Optional[int]) -> float:
    """CPU of a process and its children, living (``/proc``) and reaped (its cutime and
    cstime): PostgreSQL's postmaster and its backends. 0 without a pid."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            child = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if child[1] == str(pid):
            total += (int(child[11]) + int(child[12])) / TICKS
    return total


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class Tally:
    errors: int = 0
    error_kinds: Dict[str, int] = field(default_factory=dict)
    late_polls: int = 0
    polls: int = 0
    reported_runs: List[int] = field(default_factory=list)
    leased_runs: Dict[int, int] = field(default_factory=dict)
    lease_ms: List[float] = field(default_factory=list)

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    @property
    def double_leases(self) -> int:
        return sum(n - 1 for n in self.leased_runs.values() if n > 1)


def capabilities(platform: str) -> dict:
    return {"platform": platform, "labels": [], "arch": "x86_64", "cores": 2,
            "runtimes": [{"name": "null", "version": "bench", "accelerators": ["cpu"]}]}


def result_body() -> dict:
    return {"runtime": {"name": "null", "version": "bench", "accelerator": "cpu", "threads": 1},
            "agent_version": "bench", "init_ms": 1.0, "first_inference_ms": 1.0,
            "latency_ms": {"count": 3, "mean": 1.0, "std": 0.1, "min": 0.9, "p50": 1.0, "p90": 1.1,
                           "p99": 1.1, "max": 1.1, "samples": [0.9, 1.0, 1.1]},
            "model_size_bytes": 100, "peak_rss_bytes": 1000, "metrics": {"sample_count": 3}}


AGENTS_PER_CLIENT = 50  # one httpx pool for 2,000 connections answers late by itself


class Fleet:
    """The agents' clients: httpx's pool scans its connections on every request, so one
    pool holding 2,000 parked polls delays answers by seconds on the client side; the
    agents are spread over pools of ``AGENTS_PER_CLIENT``."""

    def __init__(self, started: Started, clients: List[httpx.AsyncClient], tally: Tally):
        self.s, self.http, self.tally = started, clients[0], tally
        self.clients = clients
        self.enrolled = 0
        self.admin = {"Authorization": f"Bearer {started.admin_token}"}
        self.user = {"Authorization": f"Bearer {started.user_token}"}

    async def enroll(self, count: int, platform: str) -> List[dict]:
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> dict:
            body = {"name": f"{platform}-{i}", "capabilities": capabilities(platform),
                    "protocol_version": PROTOCOL_VERSION}
            async with sem:
                r = await self.http.post(f"{API}/agents/enroll", json=body, headers=self.admin)
            r.raise_for_status()
            data = r.json()
            return {"id": data["device_id"], "http": self.client_for(i), "headers": {
                "Authorization": f"Bearer {data['agent_token']}", PROTOCOL_HEADER: str(PROTOCOL_VERSION)}}

        first, self.enrolled = self.enrolled, self.enrolled + count
        return list(await asyncio.gather(*(one(first + i) for i in range(count))))

    def client_for(self, i: int) -> httpx.AsyncClient:
        return self.clients[(i // AGENTS_PER_CLIENT) % len(self.clients)]

    async def push_models(self, count: int) -> List[int]:
        from edgefarm.shared.formats.tflite_builder import tiny_tflite

        ids = []
        for i in range(count):
            r = await self.http.post(
                f"{API}/models", headers=self.user,
                files={"file": (f"m{i}.tflite", tiny_tflite(seed=1000 + i))},
                data={"meta": json.dumps({"name": f"fleet-{i}", "family": "fleet", "task": "latency"})})
            r.raise_for_status()
            ids.append(r.json()["id"])
        return ids

    async def submit(self, models: List[int], devices: str) -> dict:
        body = {"models": [str(m) for m in models], "devices": devices, "task": "latency",
                "settings": {"runtime": "null"}}
        r = await self.http.post(f"{API}/jobs", json=body, headers=self.user)
        if r.status_code != 201:
            raise RuntimeError(f"submit failed: {r.status_code} {r.text}")
        return r.json()

    async def lease(self, agent: dict, wait: float) -> Optional[dict]:
        t0 = time.perf_counter()
        try:
            r = await agent["http"].post(f"{API}/agents/lease", json={"wait_seconds": wait},
                                     headers=agent["headers"], timeout=wait + 60)
        except httpx.HTTPError as exc:
            self.tally.error(f"lease {type(exc).__name__}")
            return None
        elapsed = time.perf_counter() - t0
        if wait > 0:
            self.tally.polls += 1
            if elapsed > wait + 2:
                self.tally.late_polls += 1
        else:
            self.tally.lease_ms.append(elapsed * 1000)
        if r.status_code == 204:
            return None
        if r.status_code != 200:
            self.tally.error(f"lease {r.status_code}")
            return None
        lease = r.json()
        self.tally.leased_runs[lease["run_id"]] = self.tally.leased_runs.get(lease["run_id"], 0) + 1
        return lease

    async def report(self, agent: dict, lease: dict) -> None:
        body = {"lease_id": lease["lease_id"], "state": "succeeded", "result": result_body()}
        try:
            r = await agent["http"].post(f"{API}/runs/{lease['run_id']}/report", json=body,
                                     headers=agent["headers"])
        except httpx.HTTPError as exc:
            self.tally.error(f"report {type(exc).__name__}")
            return
        if r.status_code == 200:
            self.tally.reported_runs.append(lease["run_id"])
        else:
            self.tally.error(f"report {r.status_code}")


async def busy_round(fleet: Fleet, agents: List[dict], seconds: float) -> float:
    """Every agent leases (no wait) and reports until ``seconds`` pass: cycles/s."""
    done = 0
    end = time.perf_counter() + seconds

    async def loop(agent: dict) -> None:
        nonlocal done
        while time.perf_counter() < end:
            lease = await fleet.lease(agent, 0)
            if lease is None:
                return
            await fleet.report(agent, lease)
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(loop(a) for a in agents))
    return done / (time.perf_counter() - t0)


async def info_round(fleet: Fleet, clients: int, seconds: float) -> float:
    done = 0
    end = time.perf_counter() + seconds

    async def loop(http: httpx.AsyncClient) -> None:
        nonlocal done
        while time.perf_counter() < end:
            r = await http.get(f"{API}/info")
            if r.status_code != 200:
                fleet.tally.error(f"info {r.status_code}")
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(loop(fleet.client_for(i)) for i in range(clients)))
    return done / (time.perf_counter() - t0)


async def busy(fleet: Fleet, models: List[int], count: int, seconds: float) -> Dict[str, float]:
    agents = await fleet.enroll(count, f"busy{count}")
    # enough queued runs for 1,000 cycles/s: one run per (model, device) per job
    jobs = max(1, int(1000 * seconds * 3 / (len(models) * count)) + 1)
    for _ in range(jobs):
        await fleet.submit(models, f"platform=busy{count}")
    cycles, infos, lease_ms = [], [], []
    for _ in range(3):
        infos.append(await info_round(fleet, count, seconds))
        fleet.tally.lease_ms = []
        cycles.append(await busy_round(fleet, agents, seconds))
        lease_ms.extend(fleet.tally.lease_ms)
    lease_ms.sort()
    return {"cycles": statistics.median(cycles), "info": statistics.median(infos),
            "ratio": statistics.median(c / i for c, i in zip(cycles, infos)),
            "p50": lease_ms[len(lease_ms) // 2], "p99": lease_ms[int(len(lease_ms) * 0.99)]}


async def idle(fleet: Fleet, models: List[int], count: int, pre: List[dict], wait: float,
               window: float, probes: int) -> Dict[str, float]:
    """``count`` agents long-polling (``pre`` of them enrolled already): server CPU
    and, when ``probes``, submit -> lease delays for single idle agents."""
    agents = pre + await fleet.enroll(count - len(pre), "idle")
    got: Dict[int, asyncio.Future] = {}
    stop = asyncio.Event()

    async def poll(agent: dict, delay: float) -> None:
        await asyncio.sleep(delay)
        while not stop.is_set():
            lease = await fleet.lease(agent, wait)
            if lease is not None:
                future = got.pop(agent["id"], None)
                if future is not None and not future.done():
                    future.set_result(time.perf_counter())
                await fleet.report(agent, lease)

    tasks = [asyncio.create_task(poll(a, wait * i / len(agents))) for i, a in enumerate(agents)]
    await asyncio.sleep(wait + 1)  # every agent parked at least once
    cpu, db_cpu = [], []
    for _ in range(3):
        c0, d0, t0 = cpu_seconds(fleet.s.pid), tree_cpu_seconds(fleet.s.db_pid), time.perf_counter()
        await asyncio.sleep(window)
        elapsed = time.perf_counter() - t0
        cpu.append(100 * (cpu_seconds(fleet.s.pid) - c0) / elapsed)
        db_cpu.append(100 * (tree_cpu_seconds(fleet.s.db_pid) - d0) / elapsed)
    delays = []
    for i in range(probes):
        agent = agents[(i * 37) % len(agents)]
        future = asyncio.get_running_loop().create_future()
        got[agent["id"]] = future
        t0 = time.perf_counter()
        await fleet.submit(models[:1], f"id={agent['id']}")
        try:
            delays.append((await asyncio.wait_for(future, wait + 30)) - t0)
        except asyncio.TimeoutError:
            delays.append(float("inf"))
        await asyncio.sleep(0.3)
    stop.set()
    await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out = {"cpu": statistics.median(cpu), "db_cpu": statistics.median(db_cpu), "agents": agents}
    if delays:
        out.update(wait_p50=statistics.median(delays) * 1000, wait_max=max(delays) * 1000)
    return out


def lost_results(database_url: str, reported_runs: List[int]) -> int:
    """Reports the server accepted (200) whose run has no result row."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.connect() as conn:
        stored = {row[0] for row in conn.execute(text("SELECT run_id FROM results"))}
    engine.dispose()
    return len(set(reported_runs) - stored)


def print_correctness(started: Started, tally: Tally) -> None:
    """Errors, double leases and lost results of the whole run."""
    lost = lost_results(started.database_url, tally.reported_runs)
    print(f"errors {tally.errors} {tally.error_kinds or ''}, double leases "
          f"{tally.double_leases}, lost results {lost} (of {len(tally.reported_runs)} accepted reports)")


async def measure(db: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="fleet-") as tmp:
        started = start_server(db, Path(tmp))
        tally = Tally()
        # reuse no connection idle for longer than uvicorn keeps it (5 s): else a request
        # races the server closing it and fails with ReadError, a client-side artefact
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None,
                              keepalive_expiry=2.0)
        try:
            clients = [httpx.AsyncClient(base_url=started.url, limits=limits, timeout=60)
                       for _ in range(1 + max(args.idle + args.busy) // AGENTS_PER_CLIENT)]
            async with contextlib.AsyncExitStack() as stack:
                for client in clients:
                    await stack.enter_async_context(client)
                fleet = Fleet(started, clients, tally)
                models = await fleet.push_models(10)
                print(f"\n== {db}: server pid {started.pid}, load average {os.getloadavg()[0]:.2f}")
                for count in args.busy:
                    c0, s0 = own_cpu(), cpu_seconds(started.pid)
                    figures = await busy(fleet, models, count, args.seconds)
                    print(f"busy {count:>5} agents: {figures['cycles']:7.1f} cycles/s, "
                          f"info {figures['info']:7.1f} req/s, ratio {figures['ratio']:.3f}, "
                          f"lease p50 {figures['p50']:.1f} ms p99 {figures['p99']:.1f} ms "
                          f"(client CPU {own_cpu() - c0:.1f} s, server {cpu_seconds(started.pid) - s0:.1f} s)")
                pre: List[dict] = []
                for count in args.idle:
                    probes = args.probes if count == max(args.idle) else 0
                    c0 = own_cpu()
                    t0 = time.perf_counter()
                    figures = await idle(fleet, models, count, pre, args.wait, args.window, probes)
                    pre = figures["agents"]
                    line = (f"idle {count:>5} agents: server CPU {figures['cpu']:5.1f}% of a core "
                            + (f"(PostgreSQL {figures['db_cpu']:.1f}%) " if started.db_pid else "")
                            + f"(client {100 * (own_cpu() - c0) / (time.perf_counter() - t0):.0f}%)")
                    if probes:
                        line += (f", submit -> lease p50 {figures['wait_p50']:.0f} ms "
                                 f"max {figures['wait_max']:.0f} ms ({probes} probes)")
                    print(line)
                print(f"long polls: {tally.polls}, answered later than wait + 2 s: {tally.late_polls}")
                print_correctness(started, tally)
        finally:
            started.stop()


async def measure_replicas(args: argparse.Namespace) -> None:
    """Two replicas on one PostgreSQL behind haproxy: busy cycles/s with the balancer
    sending everything to replica 1 (replica 2 disabled through HAProxy's runtime API)
    and to both, alternating, 3 rounds each (medians); the CPU of the replicas,
    PostgreSQL, haproxy and this client in each phase, to tell a 2-core limit."""
    count = args.busy[0] if args.busy else 8
    with tempfile.TemporaryDirectory(prefix="fleet-") as tmp:
        started = start_server("postgresql", Path(tmp), replicas=2)
        tally = Tally()
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None,
                              keepalive_expiry=2.0)
        try:
            async with httpx.AsyncClient(base_url=started.url, limits=limits, timeout=60) as client:
                fleet = Fleet(started, [client], tally)
                models = await fleet.push_models(10)
                agents = await fleet.enroll(count, "replicas")
                for _ in range(int(600 * args.seconds * 6 / (len(models) * count)) + 1):
                    await fleet.submit(models, "platform=replicas")
                print(f"\n== postgresql, 2 replicas behind haproxy: load average {os.getloadavg()[0]:.2f}")
                groups = {f"replica {i + 1}": (lambda pid=pid: cpu_seconds(pid))
                          for i, pid in enumerate(started.pids)}
                groups["PostgreSQL"] = lambda: tree_cpu_seconds(started.db_pid)
                groups["haproxy"] = lambda: cpu_seconds(started.balancer.proc.pid)
                groups["client"] = own_cpu
                cycles: Dict[int, List[float]] = {1: [], 2: []}
                cpu: Dict[int, Dict[str, float]] = {1: {}, 2: {}}
                for _ in range(3):
                    for replicas in (1, 2):
                        action = "disable" if replicas == 1 else "enable"
                        started.balancer.command(f"{action} server servers/replica-2")
                        await asyncio.sleep(0.5)
                        before = {name: read() for name, read in groups.items()}
                        t0 = time.perf_counter()
                        cycles[replicas].append(await busy_round(fleet, agents, args.seconds))
                        elapsed = time.perf_counter() - t0
                        for name, read in groups.items():
                            share = 100 * (read() - before[name]) / elapsed / 3
                            cpu[replicas][name] = cpu[replicas].get(name, 0.0) + share
                for replicas in (1, 2):
                    shares = ", ".join(f"{name} {share:.0f}%" for name, share in cpu[replicas].items())
                    print(f"{replicas} replica(s), {count} agents: {statistics.median(cycles[replicas]):7.1f} "
                          f"cycles/s (CPU, % of one core: {shares}; total "
                          f"{sum(cpu[replicas].values()):.0f}% of {100 * os.cpu_count()}%)")
                ratio = statistics.median(cycles[2]) / statistics.median(cycles[1])
                print(f"two replicas / one: {ratio:.2f}x")
                print_correctness(started, tally)
        finally:
            started.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--busy", type=int, nargs="*", default=[8, 64])
    parser.add_argument("--idle", type=int, nargs="*", default=[500, 2000])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one busy round")
    parser.add_argument("--window", type=float, default=5.0, help="length of one idle CPU window")
    parser.add_argument("--wait", type=float, default=25.0, help="long-poll wait_seconds")
    parser.add_argument("--probes", type=int, default=10, help="submit -> lease probes")
    parser.add_argument("--replicas", action="store_true",
                        help="only the two-replica measurement (PostgreSQL, haproxy): "
                             "cycles/s of 1 and 2 replicas with the first --busy count of agents")
    parser.add_argument("--reads", type=int, default=100_000,
                        help="results stored for the read times (0: no read times)")
    parser.add_argument("--quick", action="store_true",
                        help="shorter rounds: 2 s busy, 3 s idle windows, 10 s polls, 5 probes")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.window, args.wait, args.probes = 2.0, 3.0, 10.0, 5
    if args.replicas:
        asyncio.run(measure_replicas(args))
        return
    for db in (("sqlite", "postgresql") if args.db == "both" else (args.db,)):
        if args.busy or args.idle:
            asyncio.run(measure(db, args))
    if args.reads:
        measure_reads(args)


def measure_reads(args: argparse.Namespace) -> None:
    """``read_times.py``'s read times with ``args.reads`` results, on each database asked for."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import read_times

    figures = {}
    for name, url in read_times.databases(args.db):
        print(f"\n== {name}: reads with {args.reads} results", flush=True)
        figures[name] = read_times.measure(url, args.reads, 7)
    print(f"p50 of 7 reads with {args.reads} results")
    print(read_times.table({"now": figures}), flush=True)


if __name__ == "__main__":
    main()
