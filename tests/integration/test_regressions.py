"""The regression watch over HTTP on a real server (SQLite and PostgreSQL):
baselines, the check of each new result (significance with raw samples, the
plain threshold without), per-family thresholds, the regressions list and a
series' history."""

import random

import pytest

from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.support.servers import sample_result


def timed(p50: float, n: int = 40, spread: float = 0.02, seed: int = 0) -> dict:
    """A report whose ``n`` raw times lie within +-spread of ``p50``."""
    rng = random.Random(seed)
    samples = sorted(p50 * (1 + rng.uniform(-spread, spread)) for _ in range(n))
    body = sample_result(p50=p50)
    median = samples[n // 2]
    body["latency_ms"] = {"count": n, "mean": sum(samples) / n, "std": p50 * spread / 2,
                          "min": samples[0], "p50": median, "p90": samples[int(n * 0.9)],
                          "p99": samples[-1], "max": samples[-1], "samples": samples}
    return body


def run_job(farm, agent, model_id: int, result: dict) -> dict:
    job = farm.submit(models=[str(model_id)], devices=f"id={agent.device_id}")
    lease = agent.lease()
    assert lease is not None and lease["job_id"] == job["id"]
    response = agent.report(lease, result=result)
    assert response.status_code == 200, response.text
    return {"job": job["id"], "result": response.json()["result_id"]}


@pytest.fixture
def watched(farm, tmp_path):
    path = tmp_path / "net.tflite"
    path.write_bytes(tiny_tflite(seed=1))
    model = farm.push_model(path, name="net-a", family="net", task="classification")
    agent = farm.enroll("pc-1")
    return farm, agent, model


def regressions(farm, **params):
    response = farm.user.get("/api/v1/regressions", params=params)
    assert response.status_code == 200, response.text
    return response


def test_a_slower_result_regresses_and_a_rerun_does_not(watched):
    farm, agent, model = watched
    first = run_job(farm, agent, model["id"], timed(10.0, seed=1))
    response = farm.user.post("/api/v1/baselines", json={"result_id": first["result"]})
    assert response.status_code == 201, response.text
    baseline = response.json()
    assert baseline["series"] == {"family": "net", "variant": "none", "device_id": agent.device_id,
                                  "runtime": "tflite"}

    rerun = run_job(farm, agent, model["id"], timed(10.1, seed=2))
    slower = run_job(farm, agent, model["id"], timed(13.0, seed=3))
    assert regressions(farm, job=rerun["job"]).json() == []
    found = regressions(farm, job=slower["job"]).json()
    assert [(r["metric"], r["rule"]) for r in found] == [("latency_p50_ms", "significance")]
    assert found[0]["change"] == pytest.approx(30.0, abs=3.0)
    assert found[0]["low"] > 0 and found[0]["threshold"] == 5.0
    assert found[0]["baseline_result_id"] == first["result"]

    # 3 raw times only: the plain threshold decides, and says so; a runtime upgrade
    # stays in the series and is marked on its history
    upgraded = sample_result(p50=12.0)
    upgraded["runtime"]["version"] = "2.4.0"
    few = run_job(farm, agent, model["id"], upgraded)
    plain = regressions(farm, result=few["result"]).json()
    assert [(r["metric"], r["rule"]) for r in plain] == [("latency_p50_ms", "threshold")]
    assert "plain threshold" in plain[0]["detail"]

    listed = regressions(farm, family="net", limit=1)
    assert listed.headers["X-Total-Count"] == "2" and 'rel="next"' in listed.headers["Link"]

    history = farm.user.get("/api/v1/history", params={
        "family": "net", "variant": "none", "device": agent.device_id, "runtime": "tflite"}).json()
    points = history["points"]
    assert [p["result_id"] for p in points] == [first["result"], rerun["result"], slower["result"],
                                                few["result"]]
    assert [p["baseline"] for p in points] == [True, False, False, False]
    assert [p["regressions"] for p in points] == [[], [], ["latency_p50_ms"], ["latency_p50_ms"]]
    assert points[0]["p50_low"] < points[0]["p50_ms"] < points[0]["p50_high"]
    assert points[3]["p50_low"] is None  # too few samples for an interval
    assert [p["changes"] for p in points] == [[], [], [], ["runtime 2.3.0 -> 2.4.0"]]


def test_family_thresholds_accuracy_and_bad_requests(watched):
    farm, agent, model = watched
    check_bad_requests(farm, agent)
    base = dict(timed(10.0, seed=1), metrics={"top1": 0.90, "sample_count": 100})
    first = run_job(farm, agent, model["id"], base)
    assert farm.user.post("/api/v1/baselines", json={"series": {
        "family": "net", "variant": "none", "device_id": agent.device_id, "runtime": "tflite"}}
    ).json()["result_id"] == first["result"]
    assert farm.user.put("/api/v1/thresholds/net", json={"latency_pct": 50}).status_code == 403
    response = farm.admin.put("/api/v1/thresholds/net", json={"latency_pct": 50, "accuracy_pp": 2})
    assert response.status_code == 200 and response.json()["default"] is False
    # 30% slower is within the family's 50%; top-1 down 1 pp is within 2 pp
    within = run_job(farm, agent, model["id"], dict(timed(13.0, seed=2),
                                                    metrics={"top1": 0.89, "sample_count": 100}))
    assert regressions(farm, job=within["job"]).json() == []
    worse = run_job(farm, agent, model["id"], dict(timed(10.0, seed=3),
                                                   metrics={"top1": 0.85, "sample_count": 100}))
    found = regressions(farm, job=worse["job"]).json()
    assert [(r["metric"], r["rule"]) for r in found] == [("accuracy", "threshold")]
    assert found[0]["change"] == pytest.approx(-5.0)

    listed = farm.user.get("/api/v1/baselines", params={"family": "net"})
    assert listed.headers["X-Total-Count"] == "1" and listed.json()[0]["result_id"] == first["result"]
    assert farm.user.delete(f"/api/v1/baselines/{listed.json()[0]['id']}").status_code == 200
    unwatched = run_job(farm, agent, model["id"], dict(timed(30.0, seed=4),
                                                       metrics={"top1": 0.5, "sample_count": 100}))
    assert regressions(farm, job=unwatched["job"]).json() == []


def check_bad_requests(farm, agent):
    """Bad input is a 4xx problem, never a server error."""
    both = farm.user.post("/api/v1/baselines", json={"result_id": 1, "series": {
        "family": "net", "variant": "none", "device_id": agent.device_id, "runtime": "tflite"}})
    assert both.status_code == 422 and both.headers["content-type"].startswith("application/problem+json")
    missing = farm.user.post("/api/v1/baselines", json={"result_id": 999})
    assert missing.status_code == 404
    empty = farm.user.post("/api/v1/baselines", json={"series": {
        "family": "nothing", "variant": "none", "device_id": agent.device_id, "runtime": "tflite"}})
    assert empty.status_code == 404
    bad = farm.user.get("/api/v1/history", params={"family": "net", "variant": "none", "device": 0,
                                                   "runtime": "tflite"})
    assert bad.status_code == 422
    assert farm.admin.put("/api/v1/thresholds/net", json={"latency_pct": -1}).status_code == 422
    assert farm.admin.put("/api/v1/thresholds/" + "n" * 201, json={"latency_pct": 9}).status_code == 422
    assert farm.user.get("/api/v1/thresholds/net").json() == {
        "family": "net", "default": True, "thresholds": {"latency_pct": 5.0, "accuracy_pp": 0.5, "psnr_db": 3.0}}
    page = {"family": "net", "variant": "none", "runtime": "tflite"}
    assert farm.user.get("/history").status_code == 200
    assert farm.user.get("/history/series", params=dict(page, device=999)).status_code == 404
    assert farm.user.get("/history/series", params=dict(page, device=0)).status_code == 422
    assert farm.user.get("/history/series", params=dict(page, device=agent.device_id)).status_code == 200
