"""Webhooks end to end: a real server (SQLite and PostgreSQL) posts signed
deliveries from its outbox to a real HTTP receiver on loopback; failures are
retried with backoff, a delivery survives a server restart, a device going
offline is announced once per silence."""

import json
import time

import pytest

from edgefarm.shared.contract.signatures import verify
from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.support.receiver import Receiver
from tests.support.servers import sample_result

FAST = {"webhook_interval_seconds": 0.1, "webhook_retry_seconds": 0.3}


def register(farm, url: str, *events: str) -> dict:
    response = farm.admin.post("/api/v1/webhooks", json={"url": url, "events": list(events)})
    assert response.status_code == 201, response.text
    hook = response.json()
    assert hook["secret"].startswith("whsec_")
    return hook


def finish_one_job(farm, tmp_path, result: dict, agent=None) -> dict:
    if agent is None:
        path = tmp_path / "net.tflite"
        path.write_bytes(tiny_tflite(seed=1))
        farm.push_model(path, name="net-a", family="net", task="classification")
        agent = farm.enroll("pc-1")
    job = farm.submit(models=["net-a"], devices=f"id={agent.device_id}")
    lease = agent.lease()
    assert agent.report(lease, result=result).status_code == 200
    return {"agent": agent, "job": job}


def events_of(receiver: Receiver):
    return [json.loads(r.body)["event"] for r in receiver.accepted()]


def test_signed_deliveries_retried_until_accepted_once(start_farm, tmp_path):
    farm = start_farm(**FAST)
    assert farm.user.post("/api/v1/webhooks", json={"url": "http://x", "events": ["job.finished"]}
                          ).status_code == 403
    bad = farm.admin.post("/api/v1/webhooks", json={"url": "not a url", "events": ["job.finished"]})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    with Receiver(statuses=[500, 500]) as receiver:
        hook = register(farm, receiver.url, "job.finished", "regression.found")
        first = finish_one_job(farm, tmp_path, sample_result(p50=10.0))
        receiver.wait_for(lambda r: len(r.accepted()) == 1)
        assert [r.status for r in receiver.received] == [500, 500, 200]
        accepted = receiver.accepted()[0]
        assert verify(hook["secret"], accepted.headers["X-EdgeFarm-Signature"], accepted.body)
        payload = json.loads(accepted.body)
        assert payload["event"] == "job.finished" and payload["data"]["state"] == "succeeded"
        assert payload["data"]["job_id"] == first["job"]["id"] and "succeeded" in payload["text"]
        deliveries = farm.admin.get(f"/api/v1/webhooks/{hook['id']}/deliveries")
        assert deliveries.headers["X-Total-Count"] == "1"
        [delivery] = deliveries.json()
        assert (delivery["state"], delivery["attempts"], delivery["response_code"]) == ("delivered", 3, 200)

        # a regression: its own event, besides the job's
        result_id = farm.user.get("/api/v1/results").json()[0]["id"]
        assert farm.user.post("/api/v1/baselines", json={"result_id": result_id}).status_code == 201
        finish_one_job(farm, tmp_path, sample_result(p50=20.0), agent=first["agent"])
        receiver.wait_for(lambda r: len(r.accepted()) == 3)
        assert sorted(events_of(receiver)[1:]) == ["job.finished", "regression.found"]
        found = next(json.loads(r.body) for r in receiver.accepted()
                     if json.loads(r.body)["event"] == "regression.found")
        assert found["data"]["metric"] == "latency_p50_ms" and found["data"]["rule"] == "threshold"
        assert "regression" in found["text"]
        time.sleep(0.5)
        assert len(receiver.accepted()) == 3  # nothing delivered twice

        # a job cancelled before any run started ends at the cancel
        queued = farm.submit(models=["net-a"], devices=f"id={first['agent'].device_id}")
        assert farm.user.post(f"/api/v1/jobs/{queued['id']}/cancel", json={}).status_code == 200
        receiver.wait_for(lambda r: len(r.accepted()) == 4)
        cancelled = json.loads(receiver.accepted()[3].body)
        assert (cancelled["event"], cancelled["data"]["job_id"], cancelled["data"]["state"]) == (
            "job.finished", queued["id"], "cancelled")


def test_a_delivery_survives_a_server_restart(start_farm, tmp_path):
    farm = start_farm(webhook_interval_seconds=0.1, webhook_retry_seconds=3)
    with Receiver(statuses=[503]) as receiver:
        register(farm, receiver.url, "job.finished")
        finish_one_job(farm, tmp_path, sample_result())
        receiver.wait_for(lambda r: len(r.received) == 1)
        farm.server.stop()  # the retry is due in 3 s: it is the next server's to send
        stopped_at = time.monotonic()
        farm.server.start()
        receiver.wait_for(lambda r: len(r.accepted()) == 1, timeout=30)
        assert receiver.received[0].at < stopped_at < receiver.accepted()[0].at
        assert [r.status for r in receiver.received] == [503, 200]
        assert receiver.received[0].body == receiver.received[1].body
        assert receiver.received[0].headers["X-EdgeFarm-Delivery"] == receiver.received[1].headers[
            "X-EdgeFarm-Delivery"]


def test_lost_run_and_device_offline(start_farm, tmp_path):
    """The lease sweep's events (a run lost, its job ended) and a device going offline,
    announced once per silence."""
    farm = start_farm(offline_after_seconds=1, last_seen_write_seconds=0, lease_seconds=1, **FAST)
    with Receiver() as receiver:
        hook = register(farm, receiver.url, "device.offline", "run.failed", "job.finished")
        path = tmp_path / "net.tflite"
        path.write_bytes(tiny_tflite(seed=1))
        farm.push_model(path, name="net-a", family="net", task="classification")
        agent = farm.enroll("quiet-1")
        job = farm.submit(models=["net-a"], devices=f"id={agent.device_id}", max_attempts=1)
        assert agent.lease() is not None  # then silence: the lease expires, the run is lost

        def count(event):
            return events_of(receiver).count(event)

        receiver.wait_for(lambda r: (count("run.failed"), count("job.finished"), count("device.offline"))
                          == (1, 1, 1), timeout=20)
        payloads = {json.loads(r.body)["event"]: json.loads(r.body) for r in receiver.accepted()}
        assert payloads["run.failed"]["data"]["state"] == "lost"
        assert "agent_lost" in payloads["run.failed"]["data"]["error"]
        assert payloads["job.finished"]["data"] == dict(payloads["job.finished"]["data"], job_id=job["id"],
                                                        state="failed")
        time.sleep(1.5)
        assert count("device.offline") == 1
        response = agent.http.post("/api/v1/agents/heartbeat", json={})
        assert response.status_code == 200, response.text
        receiver.wait_for(lambda r: count("device.offline") == 2, timeout=15)
        offline = [json.loads(r.body) for r in receiver.accepted()
                   if json.loads(r.body)["event"] == "device.offline"]
        assert {p["data"]["device"] for p in offline} == {"quiet-1"}
        assert offline[0]["data"]["last_seen_at"] != offline[1]["data"]["last_seen_at"]
    assert farm.admin.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 200
    assert farm.admin.get("/api/v1/webhooks").json() == []


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                         indirect=True)
def test_two_replicas_send_each_delivery_once(start_farm, tmp_path):
    """Two servers on one PostgreSQL database both read the outbox: every delivery is
    claimed by one of them and accepted once."""
    first, second = start_farm(**FAST), start_farm(**FAST)
    path = tmp_path / "net.tflite"
    path.write_bytes(tiny_tflite(seed=1))
    first.push_model(path, name="net-a", family="net", task="classification")
    agent = first.enroll("pc-1")
    with Receiver() as receiver:
        register(first, receiver.url, "job.finished")
        jobs = [first.submit(models=["net-a"], devices=f"id={agent.device_id}") for _ in range(12)]
        for job in jobs:
            assert second.user.post(f"/api/v1/jobs/{job['id']}/cancel", json={}).status_code == 200
        receiver.wait_for(lambda r: len(r.accepted()) == len(jobs))
        time.sleep(1.0)
        ids = [r.headers["X-EdgeFarm-Delivery"] for r in receiver.received]
        assert len(ids) == len(set(ids)) == len(jobs)
        assert sorted(json.loads(r.body)["data"]["job_id"] for r in receiver.received) == [j["id"] for j in jobs]
