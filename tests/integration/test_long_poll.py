"""Quiet long polls and cheap claims: a parked poll is woken only for work its device
can take, polls end on time, ``last_seen_at`` is written at most every N seconds, and
the sweep's and the claim's reads are index lookups (EXPLAIN), on SQLite and PostgreSQL."""

import asyncio
import threading
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine

from edgefarm.server.migrate import upgrade
from edgefarm.server.notify import Waker, parse_payload
from edgefarm.server.queue import has_claimable_run, sweep_due_queries
from edgefarm.server.tables import Run


@pytest.fixture
def tiny_model(farm, tmp_path):
    from edgefarm.shared.formats.tflite_builder import tiny_tflite

    path = tmp_path / "tiny.tflite"
    path.write_bytes(tiny_tflite())
    return farm.push_model(path, name="tiny", task="classification")


def test_waker_wakes_only_the_named_devices():
    async def scenario():
        waker = Waker()
        waker.bind(asyncio.get_running_loop())
        one, two, other_one = waker.subscribe(1), waker.subscribe(2), waker.subscribe(1)
        waker.notify([1])
        await asyncio.sleep(0.01)
        assert one.is_set() and other_one.is_set() and not two.is_set()
        waker.notify([])  # nobody
        waker.notify([3])  # a device with no poll
        await asyncio.sleep(0.01)
        assert not two.is_set()
        waker.notify()  # unknown whose work: everyone
        await asyncio.sleep(0.01)
        assert two.is_set()
        for device, event in ((1, one), (1, other_one), (2, two)):
            waker.unsubscribe(device, event)
        assert waker.waiting() == 0

    asyncio.run(scenario())


def test_notify_payload_names_devices_or_everyone():
    assert parse_payload("3,17") == [3, 17]
    assert parse_payload("") is None
    assert parse_payload("garbage") is None


def _poll_in_thread(agent, wait, out):
    def run():
        t0 = time.monotonic()
        lease = agent.lease(wait=wait)
        out[agent.device_id] = (lease, time.monotonic() - t0)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_parked_poll_is_woken_for_its_own_work_only(farm, tiny_model):
    first, second = farm.enroll("pc-1"), farm.enroll("pc-2")
    out = {}
    threads = [_poll_in_thread(first, 15, out), _poll_in_thread(second, 15, out)]
    time.sleep(1.0)  # both parked
    farm.submit(models=[tiny_model["id"]], devices=f"id={first.device_id}")
    threads[0].join(timeout=10)
    lease, took = out[first.device_id]
    assert lease is not None and took < 5, (lease, took)
    assert threads[1].is_alive(), "the other device's poll answered for work it cannot take"
    t_submit = time.monotonic()
    farm.submit(models=[tiny_model["id"]], devices=f"id={second.device_id}")
    threads[1].join(timeout=10)
    lease, _ = out[second.device_id]
    assert lease is not None and time.monotonic() - t_submit < 5


def test_parked_polls_end_on_time(farm):
    agents = [farm.enroll(f"pc-{i}") for i in range(12)]
    out = {}
    threads = [_poll_in_thread(agent, 2, out) for agent in agents]
    for thread in threads:
        thread.join(timeout=30)
    assert len(out) == len(agents)
    for lease, took in out.values():
        assert lease is None
        assert 1.9 <= took <= 4.0, took


def _last_seen(farm, device_id):
    response = farm.admin.get(f"/api/v1/devices/{device_id}")
    assert response.status_code == 200, response.text
    return response.json()["last_seen_at"]


def test_last_seen_at_is_written_at_most_every_interval(start_farm):
    farm = start_farm(last_seen_write_seconds=3600)
    agent = farm.enroll("pc-1")
    enrolled = _last_seen(farm, agent.device_id)
    assert enrolled is not None
    for _ in range(3):
        assert agent.lease(wait=0) is None
        time.sleep(0.05)
    assert _last_seen(farm, agent.device_id) == enrolled  # polls did not write it
    response = agent.http.post("/api/v1/agents/heartbeat", json={})
    assert response.status_code == 200, response.text
    assert _last_seen(farm, agent.device_id) != enrolled  # a device heartbeat does


def _plan(conn, dialect, statement) -> str:
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    if dialect == "sqlite":
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
        return "\n".join(str(row[-1]) for row in rows)
    conn.exec_driver_sql("SET enable_seqscan = off")  # an empty table: would the index serve?
    return "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {compiled}").all())


def test_sweep_and_claim_reads_use_their_indexes(database_url):
    upgrade(database_url)
    engine = create_engine(database_url)
    dialect = engine.dialect.name
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    try:
        with engine.connect() as conn:
            lease_plan, deadline_plan = (_plan(conn, dialect, q) for q in sweep_due_queries(now))
            assert "ix_runs_state_lease_expires_at" in lease_plan, lease_plan
            assert "ix_runs_state_deadline_at" in deadline_plan, deadline_plan
            from sqlalchemy import select

            claim_read = select(Run.id).where(Run.device_id == 1, Run.state == "queued").limit(1)
            plan = _plan(conn, dialect, claim_read)
            # PostgreSQL picks among usable indexes by cost (an empty table has no statistics)
            assert ("ix_runs_claim" in plan) if dialect == "sqlite" else ("Seq Scan" not in plan), plan
        with engine.connect() as conn:  # and the read itself runs
            from sqlalchemy.orm import Session

            assert has_claimable_run(Session(bind=conn), 1) is False
    finally:
        engine.dispose()
