"""Output-agreement references over real HTTP: the server resolves "auto" and model
references at submission, puts the reference model into the lease, refuses a
reference its runtime cannot read, and exports the agreement in the CSV."""

import csv
import io

from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.support.servers import sample_result
from tests.unit.test_formats import tiny_onnx

CAPS = [{"name": "tflite", "version": "t", "accelerators": ["cpu"]},
        {"name": "onnxruntime", "version": "t", "accelerators": ["cpu"]}]


def push(farm, tmp_path, name, content, **meta):
    path = tmp_path / name
    path.write_bytes(content)
    return farm.push_model(path, name=name.split(".")[0], family="net", task="classification", **meta)


def test_auto_reference_is_the_base_of_a_variant_and_rides_in_the_lease(farm, tmp_path):
    base = push(farm, tmp_path, "net-fp32.tflite", tiny_tflite(seed=0))
    variant = push(farm, tmp_path, "net-dyn.tflite", tiny_tflite(seed=1),
                   variant={"quantization": "dynamic"}, lineage={"parent_sha256": base["sha256"]})
    device = farm.enroll("pc", runtimes=CAPS)
    job = farm.submit(models=[variant["id"], base["id"]], settings={"reference": "auto"})
    reference = job["settings"]["reference"]
    assert (reference["runtime"], reference["accelerator"]) == ("tflite", "cpu")
    assert reference["resolved"] == {str(variant["id"]): base["id"], str(base["id"]): base["id"]}
    leases = [device.lease(), device.lease()]
    by_model = {lease["model"]["id"]: lease["reference_model"] for lease in leases}
    assert by_model[variant["id"]]["sha256"] == base["sha256"]
    assert by_model[base["id"]]["id"] == base["id"]
    assert by_model[variant["id"]]["download_url"].endswith(f"/api/v1/models/{base['id']}/file")


def test_explicit_references_and_their_checks(farm, tmp_path):
    tflite = push(farm, tmp_path, "net-fp32.tflite", tiny_tflite(seed=0))
    onnx = push(farm, tmp_path, "net.onnx", tiny_onnx())
    farm.enroll("pc", runtimes=CAPS)
    job = farm.submit(models=[onnx["id"]], settings={
        "runtime": "onnxruntime", "reference": {"runtime": "tflite", "model": tflite["id"], "max_samples": 7}})
    assert job["settings"]["reference"]["resolved"] == {str(onnx["id"]): tflite["id"]}
    assert job["settings"]["reference"]["max_samples"] == 7
    refused = farm.user.post("/api/v1/jobs", json={"models": [onnx["id"]], "settings": {
        "runtime": "onnxruntime", "reference": {"runtime": "tflite"}}})
    assert refused.status_code == 422
    assert "is a onnx file, which runtime tflite cannot read" in refused.json()["detail"]
    missing = farm.user.post("/api/v1/jobs", json={"models": [onnx["id"]], "settings": {
        "reference": {"runtime": "tflite", "model": "no-such-model"}}})
    assert missing.status_code == 404
    auto = farm.submit(models=[onnx["id"]], settings={"runtime": "onnxruntime", "reference": "auto"})
    assert auto["settings"]["reference"]["resolved"] == {}
    assert any("has no tflite reference" in w for w in auto["warnings"])
    plain = farm.submit(models=[tflite["id"]])
    assert plain["settings"]["reference"] is None


def test_agreement_is_kept_in_the_result_and_the_csv(farm, tmp_path):
    model = push(farm, tmp_path, "net-fp32.tflite", tiny_tflite(seed=0))
    device = farm.enroll("pc", runtimes=CAPS)
    farm.submit(models=[model["id"]], settings={"runtime": "tflite", "reference": "auto"})
    lease = device.lease()
    result = sample_result(top1=0.9)
    result["agreement"] = {
        "reference": {"runtime": "tflite", "model_id": model["id"]}, "sample_count": 10,
        "outputs": {"probabilities": {"max_abs_error": 0.01, "mean_abs_error": 0.001, "psnr_db": 48.5}},
        "psnr_db": 48.5, "top1_agreement": 0.9}
    assert device.report(lease, result=result).status_code == 200
    (stored,) = farm.user.get("/api/v1/results").json()
    assert stored["agreement"]["outputs"]["probabilities"]["psnr_db"] == 48.5
    rows = list(csv.DictReader(io.StringIO(farm.user.get("/api/v1/results?format=csv").text)))
    assert rows[0]["agreement_psnr_db"] == "48.5" and rows[0]["agreement_top1"] == "0.9"
