"""``edgefarm sweep`` end to end: the CLI as a subprocess against a real server
and a real agent, from one base model to the family table.

The digits MLP runs everywhere (it is trained here, from scikit-learn's bundled
data). The DeepLab fixture checks the quality of the quantized variants on a
VOC-style dataset: dynamic range within 0.02 mIoU of fp32, int8 within 0.05.
"""

import json

import pytest

pytest.importorskip("ai_edge_quantizer", reason="the [tools] extra (ai-edge-quantizer) is not installed")
pytest.importorskip("sklearn", reason="the digits model needs scikit-learn (the [tools] extra)")

from tests.support.compression import (  # noqa: E402
    build_voc_with_void_boundaries,
    edgefarm,
    sqlite_farm_with_agent,
    write_calibration_crops,
    write_digits_folder,
    write_digits_model,
)
from tests.support.servers import DEEPLAB  # noqa: E402
from tests.support.voc import PHOTO, tar_folder  # noqa: E402

DIGITS_VARIANTS = ["fp32", "fp16", "dynamic", "int8", "pruned-0.5", "pruned-0.75", "pruned-0.9"]
FAST = ("--min-seconds", "0.2", "--runs", "20", "--threads", "2")


def test_sweep_benchmarks_seven_variants_of_the_digits_model_in_one_job(tmp_path):
    model = tmp_path / "digits.tflite"
    write_digits_model(model)
    write_digits_folder(tmp_path / "test", "test")
    write_digits_folder(tmp_path / "train", "train")
    with sqlite_farm_with_agent(tmp_path) as (farm, agent):
        pushed = edgefarm("datasets", "push", tmp_path / "test", "--layout", "imagefolder", "--name",
                          "digits-test", farm=farm)
        assert pushed.returncode == 0, pushed.stderr
        result = edgefarm("sweep", model, "--dataset", "digits-test", "--devices", "all", "--name", "digits",
                          "--calibration", tmp_path / "train", "--layout", "imagefolder", *FAST, farm=farm)
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{agent.log()[-3000:]}"
        models = farm.user.get("/api/v1/models", params={"family": "digits"}).json()
        jobs = farm.user.get("/api/v1/jobs").json()
        compared = farm.user.get("/api/v1/results/compare", params={"family": "digits"}).json()
    out = result.stdout
    assert "family digits on pc-agent" in out and "top-1" in out and "p90 ms" in out and "peak RSS" in out
    for label in DIGITS_VARIANTS:
        assert f" {label} " in out or f" {label} [base]" in out, label
    assert "*" in out and "Pareto front" in result.stderr
    assert len(jobs) == 1 and jobs[0]["state"] == "succeeded" and len(jobs[0]["models"]) == 7
    by_label = {m["variant"]["label"]: m for m in models}
    assert sorted(by_label) == sorted(DIGITS_VARIANTS)
    base = by_label["fp32"]
    assert compared["base_model_id"] == base["id"] and len(compared["cells"]) == 7
    for label, variant in by_label.items():
        if label != "fp32":
            assert variant["parent_id"] == base["id"] and variant["lineage"]["parent_sha256"] == base["sha256"]
    assert by_label["int8"]["lineage"]["calibration_dataset_sha256"]
    assert by_label["pruned-0.9"]["variant"]["sparsity"] == pytest.approx(0.9, abs=0.01)
    cells = {c["model_id"]: c for c in compared["cells"]}
    assert cells[base["id"]]["accuracy"] > 0.9
    assert cells[by_label["dynamic"]["id"]]["accuracy"] >= cells[base["id"]]["accuracy"] - 0.02
    assert cells[by_label["int8"]["id"]]["accuracy"] >= cells[base["id"]]["accuracy"] - 0.05


@pytest.mark.skipif(not (DEEPLAB.exists() and PHOTO.exists()),
                    reason="DeepLab fixture absent: ../shared/fixtures is beside the checkout in CI")
def test_sweep_of_deeplab_keeps_miou_for_dynamic_and_int8(tmp_path):
    voc = tmp_path / "voc"
    build_voc_with_void_boundaries(voc, DEEPLAB)
    write_calibration_crops(tmp_path / "calib")
    with sqlite_farm_with_agent(tmp_path) as (farm, agent):
        upload = farm.user.post("/api/v1/datasets", files={"file": ("voc.tar", tar_folder(voc))},
                                data={"name": "voc-mini", "layout": "voc-seg"})
        assert upload.status_code == 201, upload.text
        result = edgefarm("sweep", DEEPLAB, "--dataset", "voc-mini", "--devices", "all", "--name", "deeplab",
                          "--variants", "fp32,fp16,dynamic,int8", "--calibration", tmp_path / "calib",
                          "--layout", "imagefolder", "--json", *FAST, farm=farm)
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{agent.log()[-3000:]}"
    table = json.loads(result.stdout)
    rows = {row["label"]: row for row in table["devices"][0]["rows"]}
    assert sorted(rows) == ["dynamic", "fp16", "fp32", "int8"] and rows["fp32"]["base"]
    fp32 = rows["fp32"]["accuracy"]
    assert rows["fp32"]["metric"] == "miou" and 0.5 < fp32 < 0.99
    assert abs(rows["fp16"]["accuracy"] - fp32) <= 0.01
    assert abs(rows["dynamic"]["accuracy"] - fp32) <= 0.02, rows["dynamic"]
    assert abs(rows["int8"]["accuracy"] - fp32) <= 0.05, rows["int8"]
    assert rows["dynamic"]["size_change"] <= -0.65 and -0.55 <= rows["fp16"]["size_change"] <= -0.40
    assert all(row["p50_ms"] > 0 and row["peak_rss_bytes"] > 0 for row in rows.values())
    assert any(row["pareto"] for row in rows.values())
    assert rows["fp32"]["latency_verdict"] is None  # the base is not tested against itself
    assert {rows[k]["latency_verdict"] for k in ("fp16", "dynamic", "int8")} <= {
        "faster", "slower", "no significant difference"}
