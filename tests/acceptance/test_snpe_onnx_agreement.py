"""End to end with real processes (a server on SQLite and on PostgreSQL, real agents):
the snpe runtime driving the stand-in SNPE SDK (``tests/snpe_standin``), the
onnxruntime runtime, and output agreement with a reference, on the digits MLP
(trained here with numpy) and its 360-image test split as an imagefolder dataset."""

import csv
import io
import json
import subprocess
import sys

import pytest

from tests.support.agents import AgentProcess, wait_for, wait_job
from tests.support.model_builders import (
    digits_layers,
    digits_onnx,
    digits_tflite,
    dynamic_range_variant,
    standin_dlc,
    standin_env,
    without_sdk,
)
from tests.support.servers import PROJECT
from tests.support.voc import tar_folder

pytest.importorskip("onnx", reason="the onnx package builds the test models (the [dev] extra)")
pytest.importorskip("sklearn", reason="the digits model trains on scikit-learn's digits (the [tools] extra)")

QUICK = {"threads": 1, "warmup_runs": 1, "warmup_seconds": 0.1, "measured_runs": 20, "min_seconds": 0.2}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from edgefarm.tools.digits import LABELS, accuracy, load_split, to_input, write_imagefolder

    folder = tmp_path_factory.mktemp("digits")
    layers = digits_layers()
    tflite = digits_tflite(layers, folder / "digits-fp32.tflite")
    _, _, x_test, y_test = load_split()
    write_imagefolder(folder / "dataset")
    return {"tflite": tflite, "onnx": digits_onnx(layers, folder / "digits-fp32.onnx"),
            "dynamic": dynamic_range_variant(tflite, folder / "digits-dynamic.tflite"),
            "dlc": standin_dlc(tflite, folder / "digits-fp32.dlc"), "dataset": folder / "dataset",
            "labels": LABELS, "accuracy": accuracy(layers, to_input(x_test), y_test)}


def upload_dataset(farm, assets):
    response = farm.user.post("/api/v1/datasets", files={"file": ("digits.tar", tar_folder(assets["dataset"]))},
                              data={"name": "digits-test", "layout": "imagefolder"})
    assert response.status_code == 201, response.text
    return response.json()


def push(farm, assets, key, name, **meta):
    return farm.push_model(assets[key], name=name, family="digits-mlp", task="classification",
                           labels=assets["labels"], **meta)


def result_of(farm, job, agent, timeout=300):
    final = wait_job(farm, job["id"], timeout=timeout)
    assert final["state"] == "succeeded", (final, agent.log()[-3000:])
    return farm.user.get(f"/api/v1/results/{final['runs'][0]['result_id']}").json()


def diag_logs(folder):
    """{number of inferences: log entries} of every SNPEDiag_0.log the batches left."""
    logs = {}
    for path in folder.glob("edgefarm-snpe-*/output/SNPEDiag_0.log"):
        entries = [json.loads(line) for line in path.read_text().splitlines()]
        logs[sum(e["kind"] == "execute" for e in entries)] = entries
    return logs


def test_snpe_doctor_and_a_gpu_run_timed_by_the_diag_log(farm, assets, tmp_path):
    doctor = subprocess.run([sys.executable, "-m", "edgefarm.agent.cli", "doctor", "--json", "--config",
                             str(tmp_path / "none.toml")], cwd=PROJECT, env=standin_env(),
                            capture_output=True, text=True, timeout=120)
    runtimes = {r["name"]: r for r in json.loads(doctor.stdout)["runtimes"]}
    assert runtimes["snpe"]["accelerators"] == ["cpu", "gpu"]
    assert runtimes["snpe"]["version"] == "snpe 2.39.0.250926-edgefarm-standin"
    model = push(farm, assets, "dlc", "digits-fp32-dlc")
    assert model["format"] == "dlc" and model["inputs"] == []  # the agent reads them on the device
    dataset = upload_dataset(farm, assets)
    agent = AgentProcess(farm, tmp_path / "agent", name="rb5-standin")
    agent.env = standin_env(base=agent.env)
    work = tmp_path / "snpe-work"
    work.mkdir()
    agent.start()
    try:
        job = farm.submit(models=[model["id"]], dataset=dataset["id"], task="classification",
                          settings={**QUICK, "runtime": "snpe", "accelerator": "gpu", "warmup_runs": 2,
                                    "measured_runs": 25,
                                    "options": {"work_dir": str(work), "keep_work_dir": True}})
        result = result_of(farm, job, agent)
    finally:
        agent.stop()
    assert (result["runtime"]["name"], result["runtime"]["accelerator"]) == ("snpe", "gpu")
    logs = diag_logs(work)
    latency = logs[1 + 2 + 25]
    executes = [e["total_inference_us"] / 1000 for e in latency if e["kind"] == "execute"]
    assert result["first_inference_ms"] == executes[0]
    assert result["latency_ms"]["samples"] == executes[3:] and result["latency_ms"]["count"] == 25
    assert result["init_ms"] == latency[1]["init_us"] / 1000
    assert result["extra"]["latency_source"] == "snpe-diagview csv (SNPEDiag_0.log)"
    evaluation = [e["total_inference_us"] / 1000 for e in logs[360] if e["kind"] == "execute"]
    assert result["extra"]["evaluation_inference_ms"]["count"] == 360
    assert result["extra"]["evaluation_inference_ms"]["mean"] == pytest.approx(sum(evaluation) / 360)
    assert result["metrics"]["sample_count"] == 360
    assert result["metrics"]["top1"] == pytest.approx(assets["accuracy"], abs=1e-9)


def test_tflite_and_onnx_agree_across_runtimes_and_a_quantized_variant_less(farm, assets, tmp_path):
    base = push(farm, assets, "tflite", "digits-fp32")
    onnx = push(farm, assets, "onnx", "digits-fp32-onnx")
    assert onnx["format"] == "onnx" and onnx["inputs"][0]["shape"] == [1, 1, 8, 8]
    dynamic = push(farm, assets, "dynamic", "digits-dynamic", variant={"quantization": "dynamic"},
                   lineage={"parent_sha256": base["sha256"], "tool": "ai-edge-quantizer"})
    dataset = upload_dataset(farm, assets)
    agent = AgentProcess(farm, tmp_path / "agent", name="pc-agent").start()
    plans = {"tflite": (base, "tflite", "auto"), "opencv": (base, "opencv", "auto"),
             "onnxruntime": (onnx, "onnxruntime", {"runtime": "tflite", "model": base["id"]}),
             "dynamic": (dynamic, "tflite", "auto")}
    try:
        jobs = {key: farm.submit(models=[model["id"]], dataset=dataset["id"], task="classification",
                                 settings={**QUICK, "runtime": runtime, "reference": reference})
                for key, (model, runtime, reference) in plans.items()}
        results = {key: result_of(farm, job, agent) for key, job in jobs.items()}
    finally:
        agent.stop()
    top1 = {key: results[key]["metrics"]["top1"] for key in ("tflite", "opencv", "onnxruntime")}
    assert max(top1.values()) - min(top1.values()) <= 0.01, top1
    assert top1["tflite"] == pytest.approx(assets["accuracy"], abs=1e-9)
    same = results["tflite"]["agreement"]
    assert same["outputs"]["probabilities"]["identical"] and same["psnr_db"] is None
    for key in ("opencv", "onnxruntime"):
        agreement = results[key]["agreement"]
        assert agreement["error"] is None and agreement["reference"]["model_id"] == base["id"]
        assert agreement["sample_count"] == 100 and agreement["top1_agreement"] == 1.0
        assert agreement["psnr_db"] > 40, agreement
    quantized = results["dynamic"]["agreement"]
    assert quantized["reference"]["model_id"] == base["id"] and quantized["error"] is None
    assert quantized["psnr_db"] < min(results[k]["agreement"]["psnr_db"] for k in ("opencv", "onnxruntime"))
    assert quantized["outputs"]["probabilities"]["max_abs_error"] > \
        results["opencv"]["agreement"]["outputs"]["probabilities"]["max_abs_error"]
    rows = {row["runtime"] + row["model_name"]: row for row in csv.DictReader(io.StringIO(
        farm.user.get("/api/v1/results?format=csv").text))}
    assert float(rows["onnxruntimedigits-fp32-onnx"]["agreement_psnr_db"]) == results["onnxruntime"]["agreement"]["psnr_db"]
    assert float(rows["tflitedigits-dynamic"]["agreement_top1"]) == quantized["top1_agreement"]
    print("top1", top1, "psnr_db", {k: results[k]["agreement"]["psnr_db"] for k in results})


def device_runtimes(farm, device_id):
    device = farm.user.get(f"/api/v1/devices/{device_id}").json()
    return {r["name"]: r["accelerators"] for r in device["capabilities"]["runtimes"]}


def test_snpe_runs_reach_only_devices_with_the_sdk_and_the_accelerator(farm, assets, tmp_path):
    model = push(farm, assets, "dlc", "digits-fp32-dlc")
    body = {"models": [model["id"]], "settings": {**QUICK, "runtime": "snpe", "accelerator": "gpu"}}
    plain = AgentProcess(farm, tmp_path / "plain", name="pc-without-sdk")
    plain.env = without_sdk(plain.env)
    refused = farm.user.post("/api/v1/jobs", json={**body, "require_device": True})
    assert refused.status_code == 422 and "runtime snpe on gpu" in refused.json()["detail"]
    waiting = farm.submit(**body)
    assert waiting["state"] == "waiting" and waiting["runs"] == []
    plain.start()
    try:
        wait_for(lambda: "onnxruntime" in device_runtimes(farm, plain.device_id), 60, what="heartbeat")
        wait_for(lambda: "waiting for work" in plain.log() or "connected" in plain.log(), 30, what="poll")
        job = farm.user.get(f"/api/v1/jobs/{waiting['id']}").json()
        assert job["state"] == "waiting" and job["runs"] == []  # never leased to the device
    finally:
        plain.stop()
    sdk = AgentProcess(farm, tmp_path / "sdk", name="rb5-standin")
    sdk.env = standin_env(base=sdk.env)
    sdk.start()
    try:
        wait_for(lambda: device_runtimes(farm, sdk.device_id).get("snpe") == ["cpu", "gpu"], 60,
                 what="the snpe capability")
        dsp = {**body, "settings": {**body["settings"], "accelerator": "dsp"}}
        refused = farm.user.post("/api/v1/jobs", json={**dsp, "require_device": True})
        assert refused.status_code == 422 and "runtime snpe on dsp" in refused.json()["detail"]
        dsp_job = farm.submit(**dsp)
        done = wait_job(farm, waiting["id"], timeout=120)  # the gpu job found its device
    finally:
        sdk.stop()
    assert done["state"] == "succeeded" and [r["device_id"] for r in done["runs"]] == [sdk.device_id]
    dsp_job = farm.user.get(f"/api/v1/jobs/{dsp_job['id']}").json()
    assert dsp_job["state"] == "waiting" and dsp_job["runs"] == []
