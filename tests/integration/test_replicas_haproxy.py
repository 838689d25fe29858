"""Replicas behind a real load balancer: two ``edgefarm-server serve`` processes on one
PostgreSQL database and one artifact folder, Debian's ``haproxy`` in front of them with the
project's deploy/haproxy.cfg, real agents and submissions through haproxy, and one replica
SIGKILLed mid-job. And the other side of the rule: SQLite is one server process per database."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import httpx
import pytest

from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.support.agents import AgentProcess, wait_for
from tests.support.haproxy import HAProxy, haproxy_binary
from tests.support.servers import PROJECT, Farm, ServerProcess, free_port

INTERVALS = {"heartbeat_seconds": 1, "poll_wait_seconds": 3, "poll_jitter_seconds": 0.3,
             "lease_seconds": 15, "sweep_interval_seconds": 0.5}
RUN = {"runtime": "tflite", "threads": 1, "min_seconds": 1.0, "measured_runs": 5,
       "warmup_seconds": 0.1}

needs_haproxy = pytest.mark.skipif(
    haproxy_binary() is None and not os.environ.get("CI"),
    reason="haproxy is not installed (Debian package haproxy; .ci/run installs it)",
)


def get_json(client: httpx.Client, path: str, **params) -> object:
    """A read through the balancer, retried as the SDK does when the connection drops: a
    request HAProxy had sent to the replica that died is answered by closing the connection."""
    for attempt in range(5):
        try:
            response = client.get(path, params=params)
            response.raise_for_status()
            return response.json()
        except httpx.TransportError:
            if attempt == 4:
                raise
            time.sleep(0.2)


class InfoProbe(threading.Thread):
    """GET /api/v1/info through the balancer every 50 ms: (start time, status or error)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.seen, self.halt = url, [], threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self.halt.is_set():
                started = time.monotonic()
                try:
                    outcome = client.get("/api/v1/info").status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                self.seen.append((started, outcome))
                time.sleep(0.05)


@pytest.mark.postgres
@needs_haproxy
def test_a_replica_killed_mid_job_loses_no_run_and_runs_none_twice(pg_database, tmp_path):
    shared_data = tmp_path / "artifacts"  # one artifact folder for both replicas
    replicas = [ServerProcess(shared_data, pg_database, **INTERVALS).start() for _ in range(2)]
    balancer = HAProxy(tmp_path / "haproxy", [("127.0.0.1", s.port) for s in replicas]).start()
    farm = Farm(SimpleNamespace(url=balancer.url, create_token=replicas[1].create_token))
    agents, probe = [], InfoProbe(balancer.url)
    try:
        models = []
        for seed in range(5):
            path = tmp_path / f"tiny{seed}.tflite"
            path.write_bytes(tiny_tflite(seed=seed))
            models.append(farm.push_model(path, name=f"tiny{seed}")["id"])
        agents = [AgentProcess(farm, tmp_path / f"agent{i}", name=f"pc{i}", labels=["bench"]).start()
                  for i in range(3)]
        # an idle agent: its long polls are in flight, on either replica, when one is killed
        idle = AgentProcess(farm, tmp_path / "idle", name="idle").start()
        job = farm.submit(models=models, devices="label=bench", settings=RUN)
        total = len(models) * len(agents)
        agents.append(idle)

        def states():
            return [r["state"] for r in get_json(farm.user, f"/api/v1/jobs/{job['id']}")["runs"]]

        wait_for(lambda: states().count("succeeded") >= 2, 90, what="the first runs to succeed")
        probe.start()
        # for a few seconds only replica-1 takes requests, so the idle agent's long poll
        # is held there when it is killed (HAProxy's runtime API, as an operator would)
        balancer.command("disable server servers/replica-2")
        time.sleep(INTERVALS["poll_wait_seconds"] + 1)
        balancer.command("enable server servers/replica-2")
        killed_at = time.monotonic()
        replicas[0].proc.send_signal(signal.SIGKILL)
        replicas[0].proc.wait(timeout=10)
        unfinished_at_kill = total - states().count("succeeded")
        assert unfinished_at_kill >= 3, "the job must still have work when the replica dies"

        final = wait_for(lambda: (j := get_json(farm.user, f"/api/v1/jobs/{job['id']}"))["state"]
                         in ("succeeded", "failed", "cancelled") and j, 90, 0.3, "the job to finish")
        finished_after = time.monotonic() - killed_at
        time.sleep(0.5)
        probe.halt.set()
        probe.join(timeout=10)

        assert final["state"] == "succeeded", final
        runs = final["runs"]
        assert len(runs) == total
        assert [r["state"] for r in runs] == ["succeeded"] * total  # no run lost
        assert all(r["attempt"] == 1 for r in runs), [(r["id"], r["attempt"], r["error"]) for r in runs]
        results = get_json(farm.user, "/api/v1/results", job=job["id"])
        assert sorted(r["run_id"] for r in results) == sorted(r["id"] for r in runs)  # one each
        assert {r["result_id"] for r in runs} == {r["id"] for r in results}

        # the balancer took the dead replica out and kept answering through the other one
        after = [outcome for started, outcome in probe.seen if started > killed_at]
        assert len(after) > 20
        assert after.count(200) >= len(after) - 1, after  # at most one request in flight at the kill
        assert after[-10:] == [200] * 10
        log = balancer.log()
        assert "replica-1 is DOWN" in log
        assert replicas[1].proc.poll() is None
        assert all(agent.proc.poll() is None for agent in agents)  # the idle one too
        # both replicas served; every report after the kill went through the survivor
        assert re.search(r"servers/replica-1 \S+ 20[01] .*\"POST /api/v1/", log)
        reports = re.findall(r"servers/replica-2 \S+ 200 .*\"POST /api/v1/runs/\d+/report", log)
        assert len(reports) >= unfinished_at_kill
        # the idle agent's long poll held by the killed replica was cut; the agent retried
        cut = [line for line in idle.log().splitlines() if "cannot reach the server" in line]
        assert cut, idle.log()[-2000:]
        print(f"{unfinished_at_kill} of {total} runs unfinished at the kill, job done "
              f"{finished_after:.1f} s later; {len(after)} probes after the kill, "
              f"{len(after) - after.count(200)} not 200: {[o for o in after if o != 200]}; "
              f"idle agent: {cut}")
    finally:
        probe.halt.set()
        for agent in agents:
            agent.stop()
        farm.close()
        balancer.stop()
        for server in replicas:
            server.stop()


@pytest.mark.postgres
def test_sweeps_of_several_replicas_at_once_requeue_each_expired_lease_once(pg_database, tmp_path):
    """What every replica's sweeper does, four times at the same instant on one database:
    the expired leases are requeued once in all (the counts add up to the number of runs),
    and once the attempts are spent each run is marked lost once."""
    from edgefarm.server.db import Database
    from edgefarm.server.queue import requeue_expired_leases

    # the server's own sweeper stays asleep: only the four sweeps below run
    server = ServerProcess(tmp_path / "data", pg_database, lease_seconds=1,
                           sweep_interval_seconds=3600).start()
    farm = Farm(server)
    try:
        path = tmp_path / "tiny.tflite"
        path.write_bytes(tiny_tflite())
        model = farm.push_model(path, name="tiny")
        devices = [farm.enroll(f"pc{i}") for i in range(8)]
        job = farm.submit(models=[model["id"]], devices="all", max_attempts=2)

        def sweep_at_once(replicas: int = 4) -> dict:
            barrier, counts = threading.Barrier(replicas), []

            def sweep():
                db = Database(pg_database)
                try:
                    barrier.wait(timeout=30)
                    with db.write() as session:
                        counts.append(requeue_expired_leases(session))
                finally:
                    db.dispose()

            threads = [threading.Thread(target=sweep) for _ in range(replicas)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert len(counts) == replicas
            return {key: sum(c[key] for c in counts) for key in counts[0]}

        for attempt, outcome in ((1, "requeued"), (2, "lost")):
            leases = [device.lease() for device in devices]
            assert all(lease is not None for lease in leases)
            time.sleep(1.5)  # every lease expires
            totals = sweep_at_once()
            assert totals[outcome] == len(devices), totals
            assert sum(totals.values()) == len(devices), totals
            runs = farm.user.get(f"/api/v1/jobs/{job['id']}").json()["runs"]
            assert {r["state"] for r in runs} == {"queued" if outcome == "requeued" else "lost"}
            assert {r["attempt"] for r in runs} == {attempt}
    finally:
        farm.close()
        server.stop()


def _serve(env: dict, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgefarm.server.cli", "serve", "--port", str(port),
                             "--log-level", "warning"], cwd=PROJECT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sqlite_refuses_a_second_server_process_on_the_same_database(tmp_path):
    data = tmp_path / "data"
    first = ServerProcess(data, f"sqlite:///{data}/edgefarm.db").start()
    try:
        second = _serve(first.env, free_port())
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2, err
        assert "already served by another edgefarm-server process" in err
        assert "PostgreSQL" in err
        assert httpx.get(f"{first.url}/api/v1/info", timeout=5).status_code == 200  # untouched
        # the lock dies with its process, even by SIGKILL: the next server starts
        first.kill()
        first.start()
    finally:
        first.stop()
    # a different SQLite database is a different farm: no conflict
    other = ServerProcess(tmp_path / "other", f"sqlite:///{tmp_path}/other/edgefarm.db").start()
    other.stop()
