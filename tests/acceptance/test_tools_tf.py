"""The TensorFlow-backed tools (the ``[tools-tf]`` extra), as CLI subprocesses so
that pytest's own interpreter never imports TensorFlow: ``tools convert`` of
Keras files, and ``tools prune`` with fine-tuning of a Keras MLP trained on
scikit-learn's digits (at least 90% of the weights zero, at most 2 points of
top-1 lost, measured by the agent's benchmark on the test split; the exported
TFLite file smaller, also after gzip). Without TensorFlow the commands say
what to install."""

import gzip
import importlib.util
import json
import subprocess
import sys

import pytest

from tests.support.compression import cli_env, edgefarm, edgefarm_json, write_digits_folder
from tests.support.servers import PROJECT

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf_keras") is None
    or importlib.util.find_spec("tensorflow_model_optimization") is None,
    reason="TensorFlow, tf-keras and tensorflow-model-optimization (the [tools-tf] extra) are not installed",
)


@pytest.fixture(scope="module")
def keras_digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("keras-digits")
    result = subprocess.run([sys.executable, "-m", "tests.support.keras_digits", str(root)], cwd=PROJECT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    write_digits_folder(root / "train", "train")
    write_digits_folder(root / "test", "test")
    accuracy = json.loads(result.stdout.strip().splitlines()[-1])["accuracy"]
    return {"root": root, "keras": root / "digits.keras", "h5": root / "digits.h5", "accuracy": accuracy}


def test_convert_keras_and_h5_to_tflite(keras_digits, tmp_path):
    for source in (keras_digits["keras"], keras_digits["h5"]):
        out = tmp_path / f"{source.suffix[1:]}.tflite"
        report, _ = edgefarm_json("tools", "convert", source, "-o", out)
        assert report["from"] == "keras" and out.stat().st_size == report["size_bytes"]
        facts, _ = edgefarm_json("tools", "inspect", out)
        assert facts["operators"]["FULLY_CONNECTED"] == 2 and facts["quantization"] == "none"
        assert facts["inputs"][0]["shape"] == [1, 8, 8, 1]
        sidecar = json.loads((tmp_path / f"{out.name}.lineage.json").read_text())
        assert sidecar["lineage"]["parent_sha256"] is None and sidecar["lineage"]["recipe"]["from"] == "keras"


def test_pruning_with_fine_tuning_keeps_accuracy_at_90_percent_sparsity(keras_digits, tmp_path):
    root = keras_digits["root"]
    base = tmp_path / "digits.tflite"
    edgefarm_json("tools", "convert", keras_digits["keras"], "-o", base)
    pruned = tmp_path / "digits-pruned.tflite"
    report, result = edgefarm_json(
        "tools", "prune", keras_digits["keras"], "--sparsity", "0.9", "--dataset", root / "train",
        "--layout", "imagefolder", "--epochs", "15", "--parent", base, "-o", pruned,
        "--eval-dataset", root / "test", "--eval-layout", "imagefolder")
    assert report["sparsity"] >= 0.9 and all(layer["sparsity"] >= 0.89 for layer in report["layers"])
    assert {layer["encoding"] for layer in report["layers"]} == {"sparse"}  # what XNNPACK's sparse path reads
    accuracy = report["accuracy"]
    assert accuracy["samples"] == 360 and accuracy["base"] >= 0.95
    assert accuracy["base"] == pytest.approx(keras_digits["accuracy"], abs=0.01)
    assert accuracy["drop_points"] <= 2.0, accuracy
    assert report["recipe"]["retraining"] == "fine-tuning" and report["recipe"]["training_samples"] == 1437
    sidecar = json.loads(pruned.with_name(pruned.name + ".lineage.json").read_text())
    assert sidecar["lineage"]["parent_sha256"] == json.loads(
        base.with_name(base.name + ".lineage.json").read_text())["model_sha256"]
    assert sidecar["variant"]["label"] == "pruned-0.9" and sidecar["variant"]["sparsity"] >= 0.9
    base_bytes, pruned_bytes = base.read_bytes(), pruned.read_bytes()
    assert len(pruned_bytes) < len(base_bytes)
    assert len(gzip.compress(pruned_bytes)) < 0.5 * len(gzip.compress(base_bytes))
    assert "points lost" in result.stderr


def test_without_tensorflow_the_tools_say_what_to_install(keras_digits, tmp_path):
    blocker = tmp_path / "blocked" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('TensorFlow is blocked for this test')\n")
    env = cli_env(PYTHONPATH=str(tmp_path / "blocked"))
    for args in (("tools", "convert", keras_digits["keras"], "-o", tmp_path / "x.tflite"),
                 ("tools", "prune", keras_digits["keras"], "--sparsity", "0.5", "--dataset",
                  keras_digits["root"] / "train", "--layout", "imagefolder")):
        result = edgefarm(*args, env=env)
        assert result.returncode == 2, result.stderr
        assert "TensorFlow is needed for this: pip install 'edgefarm[tools-tf]'" in result.stderr
