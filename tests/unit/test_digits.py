"""The demo's model family (``edgefarm.tools.digits``): training reaches its accuracy, the
written TFLite files run in a real interpreter, and on the imagefolder dataset,
read and pre-processed exactly as the agent does, they score what
``write_variants`` reported; the pruned files hold the recorded sparsity."""

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the digits tools need scikit-learn (the [tools] extra)")
pytest.importorskip("flatbuffers", reason="the TFLite writer needs flatbuffers (the [tools] extra)")

from edgefarm.shared.datasets import list_samples, validate_directory  # noqa: E402
from edgefarm.shared.datasets.preprocess import InputSpec, preprocess_image  # noqa: E402
from edgefarm.shared.datasets.readers import load_image  # noqa: E402
from edgefarm.shared.formats import read_tflite_info, tflite_constant_arrays  # noqa: E402
from edgefarm.tools import digits  # noqa: E402


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    variants = digits.write_variants(root / "models")
    count = digits.write_imagefolder(root / "images")
    return variants, root / "images", count


def interpreter_for(path: str):
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed")
    interpreter = litert.Interpreter(model_path=path, num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def interpreter_accuracy(path: str, image_root) -> float:
    """Top-1 over the imagefolder: samples, decoding and pre-processing from the agent."""
    interpreter = interpreter_for(path)
    detail = interpreter.get_input_details()[0]
    output = interpreter.get_output_details()[0]["index"]
    spec = InputSpec(tuple(detail["shape"]), detail["dtype"], "nhwc", detail["quantization"])
    correct = total = 0
    for sample in list_samples(str(image_root), "imagefolder"):
        interpreter.set_tensor(detail["index"], preprocess_image(load_image(sample.image), spec))
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(output)[0]) == sample.label)
        total += 1
    return correct / total


def test_training_reaches_the_target_accuracy():
    layers, accuracy = digits.train_digits(seed=0)
    assert accuracy >= 0.93
    assert [w.shape for w, _ in layers] == [(32, 64), (10, 32)]


def test_the_split_is_fixed_and_pixels_follow_the_transform():
    x_train, y_train, x_test, y_test = digits.load_split()
    assert (len(x_train), len(x_test)) == (1437, 360)
    assert x_test.dtype == np.uint8 and x_test.shape[1:] == (8, 8)
    assert set(np.unique(x_test)) <= {int(np.floor(v * 255 / 16 + 0.5)) for v in range(17)}
    assert sorted(set(y_test.tolist())) == list(range(10))
    inputs = digits.to_input(np.array([[[0, 255] * 4] * 8], dtype=np.uint8))
    assert inputs.shape == (1, 8, 8, 1) and inputs.min() == -1.0 and inputs.max() == 1.0


def test_imagefolder_holds_the_test_split(written):
    _, image_root, count = written
    summary = validate_directory(image_root, "imagefolder")
    assert count == summary.sample_count == 360
    assert summary.classes == digits.LABELS
    _, _, x_test, y_test = digits.load_split()
    first = list_samples(str(image_root), "imagefolder")[0]
    index = int(first.id.split("/")[-1].split(".")[0])
    assert y_test[index] == first.label
    assert np.array_equal(load_image(first.image)[..., 0], x_test[index])


def test_variants_are_image_models_with_reshape(written):
    variants, _, _ = written
    assert [v["variant"]["label"] for v in variants] == ["fp32", "pruned-0.5", "pruned-0.8"]
    for variant in variants:
        info = read_tflite_info(variant["path"])
        assert info["inputs"] == [{"name": "image", "shape": [1, 8, 8, 1], "dtype": "float32",
                                   "quantization": None}]
        assert info["outputs"][0]["shape"] == [1, 10]
        assert info["operators"] == {"RESHAPE": 1, "FULLY_CONNECTED": 2, "SOFTMAX": 1}
        assert variant["variant"]["quantization"] == "none"


def test_interpreter_accuracy_on_the_imagefolder_equals_the_reported_one(written):
    variants, image_root, _ = written
    for variant in variants:
        measured = interpreter_accuracy(variant["path"], image_root)
        assert measured == variant["accuracy_in_process"], variant["name"]
        assert measured >= 0.9


def test_interpreter_output_matches_numpy(written):
    variants, _, _ = written
    layers, _ = digits.train_digits(seed=0)
    interpreter = interpreter_for(variants[0]["path"])
    _, _, x_test, _ = digits.load_split()
    inputs = digits.to_input(x_test[:20])
    expected = digits.predict(layers, inputs)
    detail = interpreter.get_input_details()[0]
    output = interpreter.get_output_details()[0]["index"]
    for i in range(len(inputs)):
        interpreter.set_tensor(detail["index"], inputs[i:i + 1])
        interpreter.invoke()
        np.testing.assert_allclose(interpreter.get_tensor(output)[0], expected[i], atol=1e-5)


def file_weight_sparsity(path: str) -> float:
    zeros = total = 0
    for name, dtype, _shape, data in tflite_constant_arrays(path):
        if name.endswith("/weights"):
            values = np.frombuffer(bytes(data), dtype=np.dtype(dtype).newbyteorder("<"))
            zeros += int(np.count_nonzero(values == 0))
            total += values.size
    return zeros / total


def test_pruned_files_hold_the_recorded_sparsity(written):
    variants, _, _ = written
    base, *pruned = variants
    assert base["variant"]["sparsity"] is None and file_weight_sparsity(base["path"]) < 0.01
    for variant, target in zip(pruned, digits.PRUNING_LEVELS):
        recorded = variant["variant"]["sparsity"]
        assert file_weight_sparsity(variant["path"]) == pytest.approx(recorded, abs=1e-12)
        assert recorded == pytest.approx(target, abs=0.001)
        assert variant["recipe"]["target_sparsity"] == target


def test_pruning_zeroes_the_smallest_weights_per_layer():
    rng = np.random.default_rng(3)
    layers = [(rng.normal(size=(4, 5)).astype(np.float32), np.ones(4, np.float32)),
              (rng.normal(size=(2, 4)).astype(np.float32), np.ones(2, np.float32))]
    pruned = digits.prune(layers, 0.5)
    for (before, bias_before), (after, bias_after) in zip(layers, pruned):
        kept = after != 0
        assert kept.sum() == before.size // 2
        assert np.abs(before[kept]).min() >= np.abs(before[~kept]).max()
        assert np.array_equal(bias_before, bias_after)
    assert digits.weight_sparsity(pruned) == 0.5
