"""Results over real HTTP: filters, CSV export, the family comparison with
deltas and the Pareto front, device status, drain and disable."""

import csv
import io

import pytest

from tests.support.servers import populate_family


@pytest.fixture
def family(farm, tmp_path):
    """A base model and two variants of family 'net', each run on two devices."""
    return populate_family(farm, tmp_path)


def test_filters(farm, family):
    everything = farm.user.get("/api/v1/results").json()
    assert len(everything) == 6
    by_platform = farm.user.get("/api/v1/results", params={"platform": "rpi3"}).json()
    assert {r["device_name"] for r in by_platform} == {"pi-1"} and len(by_platform) == 3
    by_variant = farm.user.get("/api/v1/results", params={"variant": "int8"}).json()
    assert {r["model_name"] for r in by_variant} == {"net-int8"}
    by_model = farm.user.get("/api/v1/results", params={"model": "net-pruned", "device": "pc-1"}).json()
    assert len(by_model) == 1 and by_model[0]["latency_ms"]["p50"] == 12.0
    assert farm.user.get("/api/v1/results", params={"family": "other"}).json() == []
    assert farm.user.get("/api/v1/results", params={"runtime": "tflite", "task": "latency"}).json()
    assert farm.user.get("/api/v1/results", params={"task": "segmentation"}).json() == []


def test_csv_export(farm, family):
    response = farm.user.get("/api/v1/results", params={"format": "csv", "platform": "pc"})
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 3
    int8 = next(r for r in rows if r["model_name"] == "net-int8")
    assert float(int8["latency_p50_ms"]) == 5.0 and float(int8["top1"]) == 0.88
    assert int8["quantization"] == "int8" and int8["platform"] == "pc"
    assert len(int8["model_sha256"]) == 64 and int8["permalink"].endswith(f"/results/{int8['id']}")


def test_compare_family(farm, family):
    body = farm.user.get("/api/v1/results/compare", params={"family": "net"}).json()
    assert body["base_model_id"] == family["models"][0]["id"]
    cells = {(c["model_id"], c["device_id"]): c for c in body["cells"]}
    ids = [m["id"] for m in family["models"]]
    pc, pi = family["pc"].device_id, family["pi"].device_id
    int8_pc = cells[(ids[1], pc)]
    assert int8_pc["latency_ratio"] == pytest.approx(0.5)
    assert int8_pc["delta_accuracy"] == pytest.approx(-0.02)
    # pc: pruned (12 ms, .85) looks dominated by fp32 (10 ms, .90), but three latency samples
    # each cannot tell 12 from 10 ms and no per-sample correctness was kept: no significant
    # difference, so nothing is dominated (tests/integration/test_significance.py has the data)
    assert [cells[(i, pc)]["pareto"] for i in ids] == [True, True, True]
    pruned = cells[(ids[2], pc)]
    assert pruned["latency_shift"]["verdict"] == "no significant difference"
    assert pruned["latency_shift"]["low"] is None and pruned["latency_shift"]["estimate"] == 2.0
    assert pruned["accuracy_shift"] == {**pruned["accuracy_shift"], "verdict": "not testable"}
    assert "per-sample" in pruned["accuracy_shift"]["reason"]
    assert pruned["p50_interval"]["estimate"] == 12.0 and pruned["p50_interval"]["low"] is None
    assert cells[(ids[0], pc)]["latency_shift"] is None  # the base is not compared with itself
    # rpi3: every variant trades accuracy for latency, all three on the front
    assert [cells[(i, pi)]["pareto"] for i in ids] == [True, True, True]
    assert cells[(ids[0], pc)]["delta_accuracy"] == 0


def test_result_permalink_and_provenance(farm, family):
    first = farm.user.get("/api/v1/results").json()[0]
    one = farm.user.get(f"/api/v1/results/{first['id']}").json()
    intervals = one.pop("intervals")
    assert first.pop("intervals") is None  # lists leave them out
    assert one == first
    assert intervals["latency_samples"] == 3 and intervals["latency_p50"]["estimate"] == 10.0
    assert intervals["top1"]["method"] == "Wilson score" and intervals["top1"]["estimate"] == 0.9
    assert one["runtime"]["name"] == "tflite" and one["runtime"]["version"] == "2.3.0"
    assert one["agent_version"] == "0.1.0" and one["device_snapshot"]["arch"] == "x86_64"
    assert one["latency_ms"]["samples"] == [9.0, 10.0, 11.0] or one["latency_ms"]["samples"]
    assert farm.user.get("/api/v1/results/99999").status_code == 404


def test_device_status_drain_and_disable(farm, family):
    devices = {d["name"]: d for d in farm.user.get("/api/v1/devices").json()}
    assert devices["pc-1"]["status"] == "online"
    assert devices["pi-1"]["platform"] == "rpi3" and devices["pi-1"]["labels"] == []
    assert devices["pi-1"]["capabilities"]["labels"] == ["lab2"]
    pc = family["pc"]
    assert farm.user.patch(f"/api/v1/devices/{pc.device_id}", json={"draining": True}).status_code == 403
    drained = farm.admin.patch(f"/api/v1/devices/{pc.device_id}", json={"draining": True}).json()
    assert drained["draining"] is True and drained["status"] == "draining"
    farm.submit(models=[str(family["models"][0]["id"])], devices=f"id={pc.device_id}")
    assert pc.lease() is None  # drained: takes no new run
    farm.admin.patch(f"/api/v1/devices/{pc.device_id}", json={"draining": False})
    lease = pc.lease()
    assert lease is not None
    assert farm.user.get(f"/api/v1/devices/{pc.device_id}").json()["status"] == "busy"
    disabled = farm.admin.patch(f"/api/v1/devices/{pc.device_id}", json={"enabled": False}).json()
    assert disabled["status"] == "disabled"
    response = farm.user.post("/api/v1/jobs", json={"models": [str(family["models"][0]["id"])],
                                                     "devices": f"id={pc.device_id}", "require_device": True})
    assert response.status_code == 422


def test_label_selector(farm, family):
    job = farm.submit(models=[str(family["models"][0]["id"])], devices="label=lab2")
    assert [r["device_id"] for r in job["runs"]] == [family["pi"].device_id]
