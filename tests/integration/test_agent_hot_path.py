"""The agent's hot path (lease and report) reads its token in the request's own session,
once per request: a revoked agent token is refused at its next request, on SQLite and
PostgreSQL; the refusals keep their order (no token, another protocol, then the token);
the answers are the contract's; what a lease says of a job and a model is read once per
process and forgotten when a model is deleted (SQLite gives a deleted model's id to the
next one). Also the waker's count of wakes, which makes a poll that looked for work
before it subscribed look again."""

import asyncio

import pytest

pytest.importorskip("fastapi")

from edgefarm.server.db import Memo  # noqa: E402
from edgefarm.server.notify import Waker  # noqa: E402
from edgefarm.shared.contract import PROTOCOL_HEADER  # noqa: E402
from edgefarm.shared.contract.schemas import Lease, RunReportResponse  # noqa: E402
from edgefarm.shared.formats.tflite_builder import tiny_tflite  # noqa: E402
from tests.support.servers import sample_result  # noqa: E402


def push(farm, tmp_path, seed: int, name: str) -> dict:
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(tiny_tflite(seed=seed))
    return farm.push_model(path, name=name, task="classification")


def test_memo_computes_once_per_key_and_starts_afresh_when_full():
    calls = []
    memo = Memo(size=2)

    def make(value):
        return lambda: calls.append(value) or value

    assert memo.get("a", make(1)) == 1 and memo.get("a", make(9)) == 1
    assert memo.get("b", make(2)) == 2 and calls == [1, 2]
    assert memo.get("c", make(3)) == 3  # full: the old keys are dropped
    assert memo.get("a", make(4)) == 4 and calls == [1, 2, 3, 4]
    memo.clear()
    assert memo.get("c", make(5)) == 5


def test_waker_counts_its_wakes():
    async def scenario():
        waker = Waker()
        waker.bind(asyncio.get_running_loop())
        before = waker.wakes
        waker.notify([7])  # nobody subscribed: still a wake a poll may have missed
        await asyncio.sleep(0.01)
        assert waker.wakes == before + 1
        waker.notify([])  # names no device: no wake
        await asyncio.sleep(0.01)
        assert waker.wakes == before + 1

    asyncio.run(scenario())


def test_lease_and_report_answer_the_contract_and_a_revoked_token_at_once(farm, tmp_path):
    model = push(farm, tmp_path, 1, "hot")
    agent = farm.enroll("hot-1")
    farm.submit(models=[model["id"]], devices=f"id={agent.device_id}")
    response = agent.http.post("/api/v1/agents/lease", json={"wait_seconds": 0})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    lease = Lease.model_validate_json(response.content)
    assert lease.model.sha256 == model["sha256"] and lease.dataset is None
    body = {"lease_id": lease.lease_id, "state": "succeeded", "result": sample_result()}
    report = agent.http.post(f"/api/v1/runs/{lease.run_id}/report", json=body)
    assert report.status_code == 200
    answer = RunReportResponse.model_validate_json(report.content)
    assert answer.run_id == lease.run_id and answer.result_id and not answer.duplicate

    farm.submit(models=[model["id"]], devices=f"id={agent.device_id}")
    second = agent.lease()  # its last poll got work: the next one claims at once
    waiting = farm.submit(models=[model["id"]], devices=f"id={agent.device_id}")
    token_id = next(t["id"] for t in farm.admin.get("/api/v1/tokens").json()
                    if t["role"] == "agent" and t["device_id"] == agent.device_id)
    # the token's id with another secret (on PostgreSQL, checked by the claim's own statement)
    with farm.client(f"ef_{token_id}_not-its-secret") as forged:
        assert forged.post("/api/v1/agents/lease", json={"wait_seconds": 0}).status_code == 401
        assert forged.post(f"/api/v1/runs/{second['run_id']}/report", json={
            "lease_id": second["lease_id"], "state": "failed", "error": "forged"}).status_code == 401
    assert farm.admin.delete(f"/api/v1/tokens/{token_id}").status_code == 200
    refused = agent.http.post("/api/v1/agents/lease", json={"wait_seconds": 0})
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/problem+json")
    late = agent.report(second)
    assert late.status_code == 401
    run = farm.user.get(f"/api/v1/runs/{second['run_id']}").json()
    assert run["state"] == "leased"  # the refused reports changed nothing
    job = farm.user.get(f"/api/v1/jobs/{waiting['id']}").json()
    assert [r["state"] for r in job["runs"]] == ["queued"]  # the refused polls claimed nothing


def test_refusals_come_before_the_body_and_in_order(farm):
    agent = farm.enroll("order-1")
    lease_url = "/api/v1/agents/lease"
    with farm.client() as anonymous:
        missing = anonymous.post(lease_url, content=b"{not json")
        assert missing.status_code == 401  # the body is not read without a token
        assert anonymous.post("/api/v1/runs/1/report", content=b"[").status_code == 401
    with farm.client(agent.token, **{PROTOCOL_HEADER: "999"}) as old:
        assert old.post(lease_url, json={"wait_seconds": 0}).status_code == 426
    with farm.client("ef_1_not-a-secret") as forged:
        assert forged.post(lease_url, json={"wait_seconds": 0}).status_code == 401
    user = farm.user.post(lease_url, json={"wait_seconds": 0})
    assert user.status_code == 403
    assert agent.http.post(lease_url, json={"wait_seconds": -1}).status_code == 422


def test_a_deleted_model_is_not_leased_under_its_id_again(farm, tmp_path):
    agent = farm.enroll("reuse-1")
    first = push(farm, tmp_path, 11, "first")
    farm.submit(models=[first["id"]], devices=f"id={agent.device_id}")
    lease = agent.lease()
    assert lease["model"]["sha256"] == first["sha256"]
    assert agent.report(lease, state="failed", error="no result: deletable").status_code == 200
    assert farm.user.delete(f"/api/v1/models/{first['id']}").status_code == 200
    second = push(farm, tmp_path, 12, "second")  # on SQLite, often the same id
    farm.submit(models=[second["id"]], devices=f"id={agent.device_id}")
    again = agent.lease()
    assert again["model"]["id"] == second["id"]
    assert again["model"]["sha256"] == second["sha256"] != first["sha256"]


def test_idle_polls_defer_last_seen_to_one_write_for_all(database_url, tmp_path):
    """A poll that finds no work writes nothing: due ``last_seen_at`` writes wait for
    ``write_seen_devices``, one transaction for every device seen meanwhile, and a
    device is deferred at most once per ``last_seen_write_seconds``."""
    from edgefarm.server.app import build_context
    from edgefarm.server.config import Settings
    from edgefarm.server.db import Throttle
    from edgefarm.server.migrate import upgrade
    from edgefarm.server.services import leases
    from edgefarm.server.tables import Device

    upgrade(database_url)
    ctx = build_context(Settings(data_dir=tmp_path / "data", database_url=database_url))
    now = [1000.0]
    ctx.last_seen = Throttle(15.0, clock=lambda: now[0])
    try:
        with ctx.db.write() as session:
            devices = [Device(name=f"d{i}", platform="pc") for i in range(3)]
            session.add_all(devices)
        ids = [device.id for device in devices]

        def seen():
            with ctx.db.read() as session:
                return [session.get(Device, i).last_seen_at for i in ids]

        for device_id in ids[:2] + ids[:1]:
            assert leases.claim(ctx, device_id, "http://farm") is None
        assert seen() == [None, None, None]  # nothing written by the polls
        assert leases.write_seen_devices(ctx) == 2
        first = seen()
        assert first[0] is not None and first[1] is not None and first[2] is None
        assert leases.write_seen_devices(ctx) == 0
        now[0] += 10  # within the interval: not due again
        assert leases.claim(ctx, ids[0], "http://farm") is None
        assert leases.write_seen_devices(ctx) == 0
        now[0] += 6
        assert leases.claim(ctx, ids[0], "http://farm") is None
        assert leases.write_seen_devices(ctx) == 1
        assert seen()[0] > first[0]
    finally:
        ctx.db.dispose()
