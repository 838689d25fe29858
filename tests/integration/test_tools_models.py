"""``edgefarm tools inspect|quantize|prune`` on real models, run as the CLI
(subprocesses): the DeepLab fixture's quantized sizes and an int8 model that
the tflite runtime loads and runs; the digits MLP's inspection and its
post-training pruning with the measured accuracy drop; and a quantized model
pushed to a real server with its lineage."""

import gzip
import json
from pathlib import Path

import pytest

pytest.importorskip("ai_edge_quantizer", reason="the [tools] extra (ai-edge-quantizer) is not installed")
pytest.importorskip("sklearn", reason="the digits model needs scikit-learn (the [tools] extra)")

from tests.support.compression import (  # noqa: E402
    edgefarm,
    edgefarm_json,
    write_calibration_crops,
    write_digits_folder,
    write_digits_model,
)
from tests.support.servers import DEEPLAB, DEEPLAB_SHA256, Farm, ServerProcess  # noqa: E402
from tests.support.voc import PHOTO  # noqa: E402

needs_deeplab = pytest.mark.skipif(
    not (DEEPLAB.exists() and PHOTO.exists()),
    reason="DeepLab fixture absent: ../shared/fixtures is beside the checkout in CI",
)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    accuracy = write_digits_model(root / "digits.tflite")
    write_digits_folder(root / "test", "test")
    write_digits_folder(root / "train", "train")
    return {"root": root, "model": root / "digits.tflite", "accuracy": accuracy}


@needs_deeplab
def test_quantized_deeplab_sizes_and_int8_runs_on_the_tflite_runtime(tmp_path):
    sizes = {}
    for mode in ("dynamic", "fp16"):
        report, _ = edgefarm_json("tools", "quantize", DEEPLAB, "--mode", mode, "-o", tmp_path / f"{mode}.tflite")
        sizes[mode] = report["size_ratio"]
        assert report["size_bytes"] == (tmp_path / f"{mode}.tflite").stat().st_size
    assert sizes["dynamic"] <= 0.35, sizes
    assert 0.45 <= sizes["fp16"] <= 0.60, sizes
    write_calibration_crops(tmp_path / "calib")
    report, _ = edgefarm_json("tools", "quantize", DEEPLAB, "--mode", "int8", "--dataset", tmp_path / "calib",
                              "--layout", "imagefolder", "-o", tmp_path / "int8.tflite")
    assert report["calibration_samples"] == 20 and report["size_ratio"] < 0.40
    sidecar = json.loads((tmp_path / "int8.tflite.lineage.json").read_text())
    assert sidecar["lineage"]["parent_sha256"] == DEEPLAB_SHA256
    assert sidecar["lineage"]["calibration_dataset_sha256"] and "ai-edge-quantizer" in sidecar["lineage"]["tool"]
    assert sidecar["variant"] == {"quantization": "int8", "label": "int8"}
    facts, _ = edgefarm_json("tools", "inspect", tmp_path / "int8.tflite")
    assert facts["quantization"] == "int8" and facts["inputs"][0]["dtype"] == "int8"
    assert {layer["dtype"] for layer in facts["layers"]} == {"int8"}
    agreement = _argmax_agreement(tmp_path / "int8.tflite")
    assert agreement > 0.9, agreement


def _argmax_agreement(quantized: Path) -> float:
    """Load and invoke the int8 model with the agent's tflite runtime on the photo,
    pre-processed by the agent; the share of pixels whose class matches fp32."""
    import numpy as np

    from edgefarm.agent.runtimes import LoadOptions, get_runtime_class
    from edgefarm.shared.datasets.preprocess import InputSpec, dequantize, preprocess_image
    from edgefarm.shared.datasets.readers import load_image

    predictions = []
    for path in (DEEPLAB, quantized):
        runtime = get_runtime_class("tflite")()
        runtime.load(path, LoadOptions(threads=2))
        spec = InputSpec.from_tensor(runtime.inputs[0], runtime.layout)
        runtime.set_inputs([preprocess_image(load_image(str(PHOTO)), spec)])
        runtime.invoke()
        output = dequantize(runtime.get_outputs()[0], runtime.outputs[0].quantization)
        assert output.shape == (1, 513, 513, 21)
        predictions.append(output.argmax(axis=-1))
        runtime.close()
    return float(np.mean(predictions[0] == predictions[1]))


def test_inspect_reports_operators_parameters_sparsity_and_size(digits):
    facts, _ = edgefarm_json("tools", "inspect", digits["model"])
    assert facts["operators"] == {"FULLY_CONNECTED": 2, "RESHAPE": 1, "SOFTMAX": 1}
    assert facts["parameter_count"] == 64 * 32 + 32 + 32 * 10 + 10
    assert facts["size_bytes"] == digits["model"].stat().st_size and facts["quantization"] == "none"
    assert [layer["shape"] for layer in facts["layers"]] == [[32, 64], [10, 32]]
    assert facts["weights"]["sparsity"] == 0.0 and facts["tensor_count"] == len(facts["tensors"])
    text = edgefarm("tools", "inspect", digits["model"], "--tensors")
    assert text.returncode == 0, text.stderr
    for expected in ("FULLY_CONNECTED", "dense0/weights", "0.00% zeros over all weights", "image 1x8x8x1"):
        assert expected in text.stdout


def test_post_training_pruning_reports_sparsity_and_the_measured_accuracy_drop(digits, tmp_path):
    out = tmp_path / "pruned.tflite"
    report, result = edgefarm_json("tools", "prune", digits["model"], "--sparsity", "0.5", "-o", out,
                                   "--eval-dataset", digits["root"] / "test", "--eval-layout", "imagefolder")
    assert [layer["sparsity"] for layer in report["layers"]] == [0.5, 0.5]
    assert report["sparsity"] == 0.5 and report["pruned_layers"] == 2
    assert "measure the accuracy" in report["warning"] and "measure the accuracy" in result.stderr
    accuracy = report["accuracy"]
    assert accuracy["metric"] == "top1" and accuracy["samples"] == 360
    assert accuracy["base"] == pytest.approx(digits["accuracy"], abs=1e-9)  # the agent agrees with numpy
    assert accuracy["drop_points"] == pytest.approx((accuracy["base"] - accuracy["pruned"]) * 100)
    assert 0 <= accuracy["drop_points"] < 30
    facts, _ = edgefarm_json("tools", "inspect", out)
    assert facts["weights"]["sparsity"] == 0.5
    assert len(gzip.compress(out.read_bytes())) < len(gzip.compress(digits["model"].read_bytes()))
    assert json.loads(Path(report["lineage_file"]).read_text())["variant"]["label"] == "pruned-0.5"


def test_tool_errors_are_one_line_and_exit_2(digits, tmp_path):
    cases = [
        (("tools", "quantize", digits["model"], "--mode", "int8"), "needs calibration samples"),
        (("tools", "quantize", digits["model"], "--mode", "int3"), "unknown --mode"),
        (("tools", "inspect", tmp_path / "nothing.tflite"), "no such model file"),
        (("tools", "prune", digits["model"], "--sparsity", "1.5"), "strictly between 0 and 1"),
    ]
    (tmp_path / "text.tflite").write_text("not a model")
    cases.append((("tools", "inspect", tmp_path / "text.tflite"), "not a TFLite model"))
    for args, message in cases:
        result = edgefarm(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_models_push_sends_the_lineage_of_a_quantized_model(digits, tmp_path):
    out = tmp_path / "digits-dynamic.tflite"
    edgefarm_json("tools", "quantize", digits["model"], "--mode", "dynamic-all", "-o", out)
    data = tmp_path / "farm"
    server = ServerProcess(data, f"sqlite:///{data}/edgefarm.db").start()
    farm = Farm(server)
    try:
        base, _ = edgefarm_json("models", "push", digits["model"], "--name", "digits", farm=farm)
        pushed, _ = edgefarm_json("models", "push", out, "--lineage", f"{out}.lineage.json", farm=farm)
        mismatch = edgefarm("models", "push", digits["model"], "--lineage", f"{out}.lineage.json", farm=farm)
    finally:
        farm.close()
        server.stop()
    assert pushed["parent_id"] == base["id"] and pushed["family"] == "digits"
    assert pushed["variant"]["quantization"] == "dynamic" and pushed["variant"]["label"] == "dynamic-all"
    assert pushed["lineage"]["parent_sha256"] == base["sha256"]
    assert pushed["lineage"]["recipe"]["mode"] == "dynamic-all"
    assert mismatch.returncode == 2 and "another file" in mismatch.stderr
