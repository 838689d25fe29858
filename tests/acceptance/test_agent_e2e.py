"""End to end with real processes: a server, real agents, the DeepLab fixture on
a VOC-style dataset built here; the posted figures are checked against an
independent computation in the test."""

import pytest

from tests.support.agents import AgentProcess, wait_job
from tests.support.servers import DEEPLAB
from tests.support.voc import PHOTO, build_voc_folder, independent_miou, tar_folder

pytestmark = pytest.mark.skipif(
    not (DEEPLAB.exists() and PHOTO.exists()),
    reason="DeepLab fixture absent: ../shared/fixtures is beside the checkout in CI",
)


@pytest.fixture
def voc(tmp_path):
    root = tmp_path / "voc"
    build_voc_folder(root, DEEPLAB)
    return root


def run_job(farm, model_id, dataset_id, runtime):
    job = farm.submit(models=[model_id], dataset=dataset_id, devices="all", task="segmentation",
                      settings={"runtime": runtime, "threads": 2, "measured_runs": 20,
                                "min_seconds": 0.5, "warmup_seconds": 0.2})
    final = wait_job(farm, job["id"], timeout=300)
    assert final["state"] == "succeeded", final
    result_id = final["runs"][0]["result_id"]
    return farm.user.get(f"/api/v1/results/{result_id}").json()


def test_deeplab_on_voc_through_the_farm(farm, voc, tmp_path):
    model = farm.push_model(DEEPLAB, family="deeplab", labels=None)
    upload = farm.user.post("/api/v1/datasets", files={"file": ("voc.tar", tar_folder(voc))},
                            data={"name": "voc-mini", "layout": "voc-seg"})
    assert upload.status_code == 201, upload.text
    dataset = upload.json()
    assert dataset["sample_count"] == 3
    agent = AgentProcess(farm, tmp_path / "agent", name="pc-agent").start()
    try:
        tflite = run_job(farm, model["id"], dataset["id"], "tflite")
        opencv = run_job(farm, model["id"], dataset["id"], "opencv")
    finally:
        agent.stop()
    expected = independent_miou(DEEPLAB, voc)
    metrics = tflite["metrics"]
    assert metrics["miou"] == pytest.approx(expected["miou"], abs=1e-6)
    assert metrics["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"], abs=1e-6)
    assert metrics["sample_count"] == 3
    per_class = {int(k): v for k, v in metrics["per_class_iou"].items() if v is not None}
    assert per_class == pytest.approx(expected["per_class"], abs=1e-6)
    assert 0.3 < expected["miou"] < 0.99  # the perturbed masks make it a real measurement
    latency = tflite["latency_ms"]
    assert latency["count"] >= 20 and len(latency["samples"]) == latency["count"]
    assert latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert tflite["model_size_bytes"] == 2789652
    assert tflite["runtime"]["name"] == "tflite" and tflite["runtime"]["version"]
    assert tflite["init_ms"] > 0 and tflite["first_inference_ms"] > 0
    assert tflite["peak_rss_bytes"] > 50 * 1024**2
    assert tflite["end_to_end_ms"]["p50"] >= latency["p50"] * 0.5
    assert tflite["dataset_sha256"] == dataset["sha256"] and tflite["model_sha256"] == model["sha256"]
    assert opencv["runtime"]["name"] == "opencv"
    assert abs(opencv["metrics"]["miou"] - metrics["miou"]) <= 0.02
