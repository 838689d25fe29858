"""Faults with real processes: an agent killed mid-run, a server that goes away
while the result is posted, SIGTERM, a model no runtime can load, a damaged
cache, and a run's child process outliving its agent."""

import hashlib
import signal
import time
from pathlib import Path

import pytest

from edgefarm.agent.pause import PAUSE_VARIABLE
from edgefarm.shared.formats.tflite_builder import broken_tflite, tiny_tflite
from tests.support.agents import AgentProcess, gone, process_state, run_children, wait_for, wait_job
from tests.support.servers import ServerProcess

FAST = {"lease_seconds": 3, "heartbeat_seconds": 1, "poll_wait_seconds": 2,
        "poll_jitter_seconds": 0.2}
SLOW_RUN = {"runtime": "tflite", "threads": 1, "min_seconds": 6, "measured_runs": 10,
            "warmup_seconds": 0.1}


@pytest.fixture
def fast_farm(start_farm):
    return start_farm(**FAST)


def push_tiny(farm, tmp_path, seed=0, name="tiny"):
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(tiny_tflite(seed=seed))
    return farm.push_model(path, name=name)


def run_state(farm, job_id):
    return farm.user.get(f"/api/v1/jobs/{job_id}").json()["runs"][0]


def test_agent_killed_mid_run_is_replaced_and_one_result_stored(fast_farm, tmp_path):
    """SIGKILL leaves no release and no report: the lease expires, the run is
    requeued, and the device's next agent process (as systemd restarts it) finishes it."""
    farm = fast_farm
    model = push_tiny(farm, tmp_path)
    agent = AgentProcess(farm, tmp_path / "agent", name="pc")
    job = farm.submit(models=[model["id"]], devices="all", settings=SLOW_RUN)
    agent.start()
    try:
        wait_for(lambda: run_state(farm, job["id"])["state"] == "running", 60, what="run to start")
        agent.kill()
        run = wait_for(lambda: (r := run_state(farm, job["id"]))["state"] == "queued" and r, 30,
                       what="lease expiry to requeue the run")
        assert run["attempt"] == 1 and "agent_lost" in run["error"]
        agent.start()  # a second agent process on the device
        final = wait_job(farm, job["id"], timeout=120)
    finally:
        agent.stop()
    assert final["state"] == "succeeded" and final["runs"][0]["attempt"] == 2
    results = farm.user.get("/api/v1/results", params={"job": job["id"]}).json()
    assert len(results) == 1


def test_result_posted_while_server_is_down_arrives_after_restart(database_url, tmp_path):
    from tests.support.servers import Farm

    server = ServerProcess(tmp_path / "data", database_url, sweep_interval_seconds=0.2,
                           **{**FAST, "lease_seconds": 30}).start()
    farm = Farm(server)
    agent = None
    try:
        model = push_tiny(farm, tmp_path)
        agent = AgentProcess(farm, tmp_path / "agent", name="pc").start()
        job = farm.submit(models=[model["id"]], devices="all",
                          settings={**SLOW_RUN, "min_seconds": 3})
        wait_for(lambda: run_state(farm, job["id"])["state"] == "running", 60, what="run to start")
        server.stop()  # the agent finishes while the server is away and must keep the result
        wait_for(lambda: "kept for later" in agent.log() or "retrying" in agent.log(), 60,
                 what="the agent to notice the server is down")
        time.sleep(1.0)
        server.start()
        final = wait_job(farm, job["id"], timeout=120)
        assert final["state"] == "succeeded"
        results = farm.user.get("/api/v1/results", params={"job": job["id"]}).json()
        assert len(results) == 1 and results[0]["latency_ms"]["count"] >= 10
    finally:
        if agent:
            agent.stop()
        farm.close()
        server.stop()


def test_sigterm_releases_the_lease(fast_farm, tmp_path):
    farm = fast_farm
    model = push_tiny(farm, tmp_path)
    agent = AgentProcess(farm, tmp_path / "agent", name="pc").start()
    job = farm.submit(models=[model["id"]], devices="all", settings={**SLOW_RUN, "min_seconds": 20})
    wait_for(lambda: run_state(farm, job["id"])["state"] == "running", 60, what="run to start")
    started = time.monotonic()
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0
    assert time.monotonic() - started < 15
    run = run_state(farm, job["id"])
    assert run["state"] == "queued" and run["attempt"] == 0
    assert "released" in run["error"]


def test_broken_model_fails_with_reason_and_agent_keeps_serving(fast_farm, tmp_path):
    farm = fast_farm
    path = tmp_path / "broken.tflite"
    path.write_bytes(broken_tflite())
    broken = farm.push_model(path, name="broken")
    good = push_tiny(farm, tmp_path, seed=3, name="good")
    agent = AgentProcess(farm, tmp_path / "agent", name="pc").start()
    try:
        bad_job = farm.submit(models=[broken["id"]], devices="all", settings={"min_seconds": 0.1})
        final = wait_job(farm, bad_job["id"], timeout=120)
        assert final["state"] == "failed"
        assert "cannot load the model" in final["runs"][0]["error"]
        good_job = farm.submit(models=[good["id"]], devices="all", settings={"min_seconds": 0.1})
        assert wait_job(farm, good_job["id"], timeout=120)["state"] == "succeeded"
        assert agent.proc.poll() is None
    finally:
        agent.stop()


def test_revoked_token_stops_the_agent_with_a_clear_message(fast_farm, tmp_path):
    farm = fast_farm
    agent = AgentProcess(farm, tmp_path / "agent", name="pc").start()
    try:
        wait_for(lambda: "connected as device" in agent.log(), 30, what="agent to connect")
        token = next(t for t in farm.admin.get("/api/v1/tokens").json() if t["device_id"] == agent.device_id)
        assert farm.admin.delete(f"/api/v1/tokens/{token['id']}").status_code == 200
        assert agent.wait(timeout=30) == 2
        assert "refused this agent's token" in agent.log()
    finally:
        agent.stop()


def test_cancel_stops_the_running_benchmark_within_a_heartbeat(fast_farm, tmp_path):
    farm = fast_farm
    model = push_tiny(farm, tmp_path)
    agent = AgentProcess(farm, tmp_path / "agent", name="pc").start()
    try:
        job = farm.submit(models=[model["id"]], devices="all", settings={**SLOW_RUN, "min_seconds": 60})
        wait_for(lambda: run_state(farm, job["id"])["state"] == "running", 60, what="run to start")
        started = time.monotonic()
        farm.user.post(f"/api/v1/jobs/{job['id']}/cancel", json={"reason": "changed my mind"})
        final = wait_job(farm, job["id"], timeout=30)
        assert time.monotonic() - started < 5  # heartbeat every second here
        assert final["state"] == "cancelled" and "changed my mind" in final["runs"][0]["error"]
        follow_up = farm.submit(models=[model["id"]], devices="all", settings={"min_seconds": 0.1})
        assert wait_job(farm, follow_up["id"], timeout=60)["state"] == "succeeded"
    finally:
        agent.stop()


def test_hard_timeout_stops_a_run_that_takes_too_long(fast_farm, tmp_path):
    farm = fast_farm
    model = push_tiny(farm, tmp_path)
    agent = AgentProcess(farm, tmp_path / "agent", name="pc").start()
    try:
        job = farm.submit(models=[model["id"]], devices="all", timeout_seconds=3,
                          settings={**SLOW_RUN, "min_seconds": 60})
        final = wait_job(farm, job["id"], timeout=60)
        assert final["state"] == "failed" and "timeout" in final["runs"][0]["error"]
        assert agent.proc.poll() is None
    finally:
        agent.stop()


def test_sigterm_while_idle_stops_at_once(start_farm, tmp_path):
    farm = start_farm(poll_wait_seconds=25)  # the agent sits in a 25 s long poll
    agent = AgentProcess(farm, tmp_path / "agent", name="pc").start()
    wait_for(lambda: "connected as device" in agent.log(), 30, what="agent to connect")
    time.sleep(1.0)
    started = time.monotonic()
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=20) == 0
    assert time.monotonic() - started < 3


def results_of(farm, job_id):
    return farm.user.get("/api/v1/results", params={"job": job_id}).json()


def test_report_spooled_in_a_short_outage_is_delivered_before_new_work(start_farm, tmp_path):
    """The server is away for less than the lease while a result is posted, and more
    work is queued for the device: the spooled report goes first, while its lease is
    current, so the run is not measured a second time."""
    farm = start_farm(**{**FAST, "lease_seconds": 20})  # the restart itself takes seconds
    first, second = push_tiny(farm, tmp_path, seed=1, name="first"), push_tiny(farm, tmp_path, seed=2, name="second")
    agent = AgentProcess(farm, tmp_path / "agent", name="pc").start()
    try:
        job = farm.submit(models=[first["id"]], devices="all", settings={**SLOW_RUN, "min_seconds": 2})
        wait_for(lambda: run_state(farm, job["id"])["state"] == "running", 60, what="run to start")
        later = farm.submit(models=[second["id"]], devices="all", settings={**SLOW_RUN, "min_seconds": 16})
        farm.server.stop()
        outage = time.monotonic()
        wait_for(lambda: "kept for later" in agent.log(), 30, what="the result to be spooled")
        time.sleep(max(0.0, 6 - (time.monotonic() - outage)))  # 6 s, and the restart (PostgreSQL: migrate)
        farm.server.start()
        final = wait_job(farm, job["id"], timeout=60)
        assert wait_job(farm, later["id"], timeout=90)["state"] == "succeeded"
    finally:
        agent.stop()
    assert final["state"] == "succeeded" and final["runs"][0]["attempt"] == 1
    assert len(results_of(farm, job["id"])) == 1 and len(results_of(farm, later["id"])) == 1
    assert "refused by the server" not in agent.log()
    assert not list((agent.home / "state" / "spool" / "refused").glob("*.json"))


def cached_blob(agent: AgentProcess, sha256: str) -> Path:
    return agent.home / "cache" / "blobs" / sha256[:2] / sha256


@pytest.mark.parametrize("damage", ["overwrite", "truncate"])
def test_damaged_cache_entry_is_downloaded_again(fast_farm, tmp_path, damage):
    """A cached model overwritten in place or truncated is caught before the run:
    downloaded again, and the result names the sha256 of the bytes that ran."""
    farm = fast_farm
    model = push_tiny(farm, tmp_path)
    agent = AgentProcess(farm, tmp_path / "agent", name="pc").start()
    try:
        first = farm.submit(models=[model["id"]], devices="all", settings={"min_seconds": 0.1})
        assert wait_job(farm, first["id"], timeout=60)["state"] == "succeeded"
        blob = cached_blob(agent, model["sha256"])
        data = blob.read_bytes()
        if damage == "overwrite":
            blob.write_bytes(data[:300] + bytes(400) + data[700:])  # same size, other bytes
        else:
            blob.write_bytes(data[: len(data) // 2])
        second = farm.submit(models=[model["id"]], devices="all", settings={"min_seconds": 0.1})
        final = wait_job(farm, second["id"], timeout=60)
    finally:
        agent.stop()
    assert final["state"] == "succeeded", final["runs"][0]["error"]
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == model["sha256"]
    (result,) = results_of(farm, second["id"])
    assert result["extra"]["model_sha256"] == model["sha256"]
    assert "downloading it again" in agent.log()


def test_child_of_a_killed_agent_stops_and_its_folder_goes(fast_farm, tmp_path):
    """SIGKILL outside systemd: nobody stops the run, so the child ends its own group."""
    farm = fast_farm
    model = push_tiny(farm, tmp_path)
    agent = AgentProcess(farm, tmp_path / "agent", name="pc").start()
    job = farm.submit(models=[model["id"]], devices="all", settings={**SLOW_RUN, "min_seconds": 60})
    wait_for(lambda: run_state(farm, job["id"])["state"] == "running", 60, what="run to start")
    (child, spec), = wait_for(lambda: run_children(agent.proc.pid), 10, what="the run's process")
    agent.kill()
    wait_for(lambda: gone(child), 10, what="the orphaned run process to end")
    assert not Path(spec).parent.exists()


def test_agent_start_kills_the_group_a_killed_agent_left(fast_farm, tmp_path):
    """A child that cannot notice (stopped here, at the measurement) is killed, with
    its folder, by the next agent process on the device, which then does the run."""
    farm = fast_farm
    model = push_tiny(farm, tmp_path)
    agent = AgentProcess(farm, tmp_path / "agent", name="pc")
    agent.env[PAUSE_VARIABLE] = "measure"
    agent.start()
    try:
        job = farm.submit(models=[model["id"]], devices="all", settings={"min_seconds": 0.5})
        (child, spec), = wait_for(lambda: run_children(agent.proc.pid), 60, what="the run's process")
        wait_for(lambda: process_state(child) == "T", 30, what="the run to pause at the measurement")
        agent.kill()
        assert process_state(child) == "T" and Path(spec).exists()
        del agent.env[PAUSE_VARIABLE]
        agent.start()
        wait_for(lambda: gone(child), 15, what="the new agent to kill the leftover run")
        wait_for(lambda: not Path(spec).parent.exists(), 5, what="the leftover run folder to go")
        final = wait_job(farm, job["id"], timeout=60)
    finally:
        agent.stop()
    assert final["state"] == "succeeded" and final["runs"][0]["attempt"] == 2
    assert len(results_of(farm, job["id"])) == 1
