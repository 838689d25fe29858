"""Leases over real HTTP against a real server: concurrent claims, expiry and
requeue, lost runs, late and duplicate reports, release, cancellation."""

import threading
import time
from collections import Counter

import pytest

from tests.support.servers import sample_result


@pytest.fixture
def null_model(farm, tmp_path):
    """A tiny real TFLite file is not needed for queue tests: any TFLite flatbuffer works."""
    from edgefarm.shared.formats.tflite_builder import tiny_tflite

    path = tmp_path / "tiny.tflite"
    path.write_bytes(tiny_tflite())
    return farm.push_model(path, name="tiny", task="classification")


def test_concurrent_leases_claim_each_run_exactly_once(start_farm, tmp_path):
    farm = start_farm()
    from edgefarm.shared.formats.tflite_builder import tiny_tflite

    agent = farm.enroll("pc-1")
    model_ids = []
    for i in range(25):
        path = tmp_path / f"m{i}.tflite"
        path.write_bytes(tiny_tflite(seed=i))
        model_ids.append(str(farm.push_model(path, name=f"m{i}")["id"]))
    for _ in range(4):
        farm.submit(models=model_ids, devices=f"id={agent.device_id}")
    leased, errors = [], []

    def worker():
        try:
            while True:
                lease = agent.lease(wait=0)
                if lease is None:
                    return
                leased.append(lease["run_id"])
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    counts = Counter(leased)
    assert len(counts) == 100
    assert set(counts.values()) == {1}
    jobs = farm.user.get("/api/v1/jobs").json()  # summaries: run counts per state
    states = sum((Counter(job["counts"]) for job in jobs), Counter())
    assert states == {"leased": 100}


def test_expired_lease_is_requeued_then_lost_and_late_report_refused(start_farm, tmp_path):
    farm = start_farm(lease_seconds=1)
    from edgefarm.shared.formats.tflite_builder import tiny_tflite

    path = tmp_path / "m.tflite"
    path.write_bytes(tiny_tflite())
    model = farm.push_model(path, name="m")
    agent = farm.enroll("pc-1")
    job = farm.submit(models=[model["id"]], devices="all", max_attempts=2)
    first = agent.lease()
    assert first["attempt"] == 1
    time.sleep(1.6)  # no heartbeat: the lease expires, the sweeper requeues
    second = agent.lease(wait=5)
    assert second is not None and second["run_id"] == first["run_id"]
    assert second["attempt"] == 2 and second["lease_id"] != first["lease_id"]
    late = agent.report(first)
    assert late.status_code == 409
    assert late.headers["content-type"].startswith("application/problem+json")
    assert "lease" in late.json()["detail"]
    time.sleep(1.6)
    run = _wait_state(farm, first["run_id"], "lost")
    assert run["attempt"] == 2 and "agent_lost" in run["error"]
    assert farm.user.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "failed"
    assert farm.user.get("/api/v1/results").json() == []


def _wait_state(farm, run_id, state, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = farm.user.get(f"/api/v1/runs/{run_id}").json()
        if run["state"] == state:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} is {run['state']}, not {state}")


def test_report_flow(farm, null_model):
    agent = farm.enroll("pc-1")
    farm.submit(models=[null_model["id"]], devices="all")
    lease = agent.lease()
    beat = agent.heartbeat(lease, state="running", progress={"phase": "latency", "done": 1})
    assert beat.status_code == 200 and beat.json()["cancel"] is False
    run = farm.user.get(f"/api/v1/runs/{lease['run_id']}").json()
    assert run["state"] == "running" and run["progress"]["phase"] == "latency"
    result = sample_result(p50=12.5, top1=0.75)
    first = agent.report(lease, result=result)
    assert first.status_code == 200 and first.json()["duplicate"] is False
    again = agent.report(lease, result=result)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["result_id"] == first.json()["result_id"]
    different = agent.report(lease, result=sample_result(p50=99.0, top1=0.1))
    assert different.status_code == 409
    results = farm.user.get("/api/v1/results").json()
    assert len(results) == 1
    assert results[0]["latency_ms"]["p50"] == 12.5 and results[0]["metrics"]["top1"] == 0.75
    assert results[0]["model_sha256"] == null_model["sha256"]
    assert results[0]["device_snapshot"]["platform"] == "pc"


def test_agent_cannot_touch_another_devices_run(farm, null_model):
    owner, other = farm.enroll("a"), farm.enroll("b")
    farm.submit(models=[null_model["id"]], devices=f"id={owner.device_id}")
    assert other.lease() is None
    lease = owner.lease()
    stolen = other.heartbeat(lease)
    assert stolen.status_code == 404
    assert other.report(lease).status_code == 404
    assert owner.heartbeat(lease).status_code == 200


def test_release_requeues_without_using_an_attempt(farm, null_model):
    agent = farm.enroll("pc")
    farm.submit(models=[null_model["id"]], devices="all")
    lease = agent.lease()
    response = agent.http.post(f"/api/v1/runs/{lease['run_id']}/release",
                               json={"lease_id": lease["lease_id"], "reason": "SIGTERM"})
    assert response.status_code == 200 and response.json()["state"] == "queued"
    again = agent.lease()
    assert again["run_id"] == lease["run_id"] and again["attempt"] == 1


def test_cancel_reaches_running_agent_through_heartbeat(farm, null_model):
    agent = farm.enroll("pc")
    job = farm.submit(models=[null_model["id"]], devices="all")
    lease = agent.lease()
    cancel = farm.user.post(f"/api/v1/jobs/{job['id']}/cancel", json={"reason": "wrong model"})
    assert cancel.status_code == 200
    beat = agent.heartbeat(lease).json()
    assert beat["cancel"] is True and "wrong model" in beat["cancel_reason"]
    done = agent.report(lease, state="failed", error="cancelled by server").json()
    assert done["state"] == "cancelled"
    final = farm.user.get(f"/api/v1/jobs/{job['id']}").json()
    assert final["state"] == "cancelled" and final["cancel_reason"] == "wrong model"


def test_long_poll_answers_as_soon_as_work_appears(farm, null_model):
    agent = farm.enroll("pc")
    got = {}

    def poll():
        started = time.monotonic()
        got["lease"] = agent.lease(wait=20)
        got["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(1.0)
    farm.submit(models=[null_model["id"]], devices="all")
    thread.join(timeout=30)
    assert got["lease"] is not None
    assert 0.9 < got["elapsed"] < 5.0


def test_long_poll_times_out_with_204(farm):
    agent = farm.enroll("pc")
    started = time.monotonic()
    assert agent.lease(wait=1.0) is None
    assert 0.9 < time.monotonic() - started < 4.0


def test_hard_timeout_fails_a_run_that_keeps_heartbeating(farm, null_model):
    agent = farm.enroll("pc")
    job = farm.submit(models=[null_model["id"]], devices="all", timeout_seconds=1)
    lease = agent.lease()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if agent.heartbeat(lease).status_code == 409:
            break
        time.sleep(0.2)
    run = _wait_state(farm, lease["run_id"], "failed")
    assert "timeout" in run["error"]
    assert agent.report(lease).status_code == 409
    assert farm.user.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "failed"


def test_replicas_wake_each_others_long_polls(database_url, tmp_path, farm, null_model):
    """Two server processes on one PostgreSQL database: a job submitted through one
    answers a long poll held by the other at once (LISTEN/NOTIFY)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("replicas share a PostgreSQL database; SQLite is the single-process default")
    from tests.support.servers import Farm, ServerProcess

    other = Farm(ServerProcess(tmp_path / "replica", database_url, sweep_interval_seconds=0.2).start())
    try:
        agent = farm.enroll("pc")
        agent_on_other = type(agent).__new__(type(agent))
        agent_on_other.device_id = agent.device_id
        agent_on_other.http = other.client(agent.token, **{"X-EdgeFarm-Protocol": "1"})
        got = {}

        def poll():
            started = time.monotonic()
            got["lease"] = agent_on_other.lease(wait=20)
            got["elapsed"] = time.monotonic() - started

        thread = threading.Thread(target=poll)
        thread.start()
        time.sleep(1.0)
        farm.submit(models=[null_model["id"]], devices="all")  # through the first replica
        thread.join(timeout=30)
        assert got["lease"] is not None
        assert got["elapsed"] < 4.0  # well before the 5 s periodic re-check
    finally:
        other.close()
        other.server.stop()


def test_a_claim_sets_the_hard_deadline_and_marks_the_job_running(farm, null_model, database_url):
    """On PostgreSQL the claim is one statement (the deadline and the job's state in a
    data-modifying CTE), on SQLite three: the rows end up the same."""
    from sqlalchemy import create_engine, select

    from edgefarm.server.tables import Job, Run

    agent = farm.enroll("pc")
    job = farm.submit(models=[null_model["id"]], devices="all", timeout_seconds=3600)
    assert farm.user.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "queued"
    lease = agent.lease()
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            run = connection.execute(select(Run.__table__).where(Run.id == lease["run_id"])).one()
            state = connection.execute(select(Job.state).where(Job.id == job["id"])).scalar_one()
    finally:
        engine.dispose()
    assert run.state == "leased" and run.attempt == 1 and run.device_id == agent.device_id
    assert (run.deadline_at - run.leased_at).total_seconds() == 3600
    assert state == "running"
