"""The real runtimes (tflite, opencv, null) on real models: a tiny TFLite MLP written by
``edgefarm.shared.formats.tflite_builder`` and, when ``../shared/fixtures`` is present, the DeepLabv3 model
on its demo photo. Runtimes whose library is missing are skipped with the reason."""

import importlib.metadata
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from edgefarm.agent import __version__ as agent_version
from edgefarm.agent.clock import Protocol, benchmark, load_runtime
from edgefarm.agent.runtimes import (
    LoadOptions,
    ModelLoadError,
    RuntimeUnavailable,
    available_runtimes,
    get_runtime_class,
)
from edgefarm.agent.synthetic import synthetic_inputs
from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.unit.test_formats import tiny_onnx

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
DEEPLAB = FIXTURES / "deeplabv3_mnv2_dm05_pascal_fp32.tflite"
PHOTO = FIXTURES / "deeplab_demo_person_horse.jpg"
BACKGROUND, HORSE, PERSON = 0, 13, 15



def runtime_class(name: str):
    try:
        cls = get_runtime_class(name)
        cls.version()
    except RuntimeUnavailable as exc:
        pytest.skip(f"runtime {name} is not available here: {exc}")
    return cls


def loaded(name: str, path: Path, threads: int = 2):
    runtime, _ = load_runtime(runtime_class(name), path, LoadOptions(threads=threads))
    return runtime


def run(runtime, arrays):
    runtime.set_inputs(arrays)
    runtime.invoke()
    return runtime.get_outputs()


def fixture(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"fixture {path.name} absent: ../shared/fixtures is beside the checkout in CI")
    return path


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    path = tmp_path / "tiny.tflite"
    path.write_bytes(tiny_tflite())
    return path


# ---------------------------------------------------------------- the tiny MLP


@pytest.mark.parametrize("name", ["tflite", "opencv", "null"])
def test_tiny_model_loads_and_gives_outputs_of_the_declared_shape(name, tiny_model):
    runtime = loaded(name, tiny_model)
    assert [(t.name, t.shape, t.dtype) for t in runtime.inputs] == [("input", (1, 4), "float32")]
    assert [(t.name, t.shape, t.dtype) for t in runtime.outputs] == [("probabilities", (1, 3), "float32")]
    (probabilities,) = run(runtime, [np.array([[0.5, -0.2, 0.3, 0.9]], np.float32)])
    assert probabilities.shape == (1, 3)
    if name == "null":
        assert not probabilities.any()
    else:
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)  # softmax output
        assert (probabilities > 0).all()
    runtime.close()


def test_tflite_and_opencv_agree_on_the_tiny_model(tiny_model):
    tflite, opencv = loaded("tflite", tiny_model), loaded("opencv", tiny_model)
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = rng.uniform(-2, 2, size=(1, 4)).astype(np.float32)
        np.testing.assert_allclose(run(opencv, [x])[0], run(tflite, [x])[0], atol=1e-5)


def test_outputs_change_with_the_input_and_survive_the_next_invoke(tiny_model):
    runtime = loaded("tflite", tiny_model)
    first = run(runtime, [np.array([[1, 0, 0, 0]], np.float32)])[0]
    second = run(runtime, [np.array([[0, 0, 0, 5]], np.float32)])[0]
    assert not np.allclose(first, second)
    assert np.allclose(first, run(runtime, [np.array([[1, 0, 0, 0]], np.float32)])[0])


@pytest.mark.parametrize("name", ["tflite", "opencv"])
def test_wrong_input_shape_or_count_is_a_clear_value_error(name, tiny_model):
    runtime = loaded(name, tiny_model)
    with pytest.raises(ValueError, match=r"input 'input' expects .*\[1, 4\].*got \[1, 5\]"):
        runtime.set_inputs([np.zeros((1, 5), np.float32)])
    with pytest.raises(ValueError, match="takes 1 inputs, got 2"):
        runtime.set_inputs([np.zeros((1, 4), np.float32)] * 2)


def test_tflite_casts_float64_but_refuses_complex_data(tiny_model):
    runtime = loaded("tflite", tiny_model)
    run(runtime, [np.zeros((1, 4), np.float64)])  # same kind: cast to float32
    with pytest.raises(ValueError, match="expects float32 data, got complex128"):
        runtime.set_inputs([np.zeros((1, 4), np.complex128)])


def test_describe_reports_delegate_and_threads(tiny_model):
    assert loaded("tflite", tiny_model, threads=2).describe()["delegate"] == "xnnpack"
    assert loaded("tflite", tiny_model, threads=2).describe()["threads"] == 2
    described = loaded("opencv", tiny_model, threads=1).describe()
    assert (described["backend"], described["target"], described["threads"]) == ("opencv", "cpu", 1)


def test_harness_benchmarks_a_real_runtime(tiny_model):
    runtime = loaded("tflite", tiny_model)
    result = benchmark(runtime, synthetic_inputs(runtime.inputs),
                       Protocol(warmup_seconds=0.05, min_seconds=0.1, max_runs=5000))
    assert result.stats["count"] >= 50
    assert 0 < result.stats["p50"] < 50.0


def test_opencv_reads_onnx_by_content_not_extension(tmp_path):
    path = tmp_path / "identity.bin"
    path.write_bytes(tiny_onnx())
    runtime = loaded("opencv", path)
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(run(runtime, [x])[0].ravel(), x)
    assert [t.name for t in runtime.outputs] == ["y"]


def test_null_runtime_loads_any_file(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(100))
    runtime = loaded("null", path)
    assert [(t.name, t.shape) for t in runtime.inputs] == [("input", (1, 1))]
    assert run(runtime, [np.zeros((1, 1), np.float32)])[0].shape == (1, 1)


# ---------------------------------------------------------------- broken models


def corrupt_models(tmp_path: Path):
    tiny = tiny_tflite()
    cases = {"random.tflite": os.urandom(4096), "truncated-tiny.tflite": tiny[: len(tiny) // 2]}
    if DEEPLAB.is_file():
        data = DEEPLAB.read_bytes()
        cases["truncated-deeplab.tflite"] = data[: len(data) // 2]
    paths = []
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        paths.append(tmp_path / name)
    return paths


@pytest.mark.parametrize("name", ["tflite", "opencv"])
def test_corrupt_or_truncated_models_raise_model_load_error(name, tmp_path):
    cls = runtime_class(name)
    paths = corrupt_models(tmp_path)
    for path in paths:
        with pytest.raises(ModelLoadError, match="cannot load model"):
            load_runtime(cls, path, LoadOptions())
    with pytest.raises(ModelLoadError):
        load_runtime(cls, tmp_path / "missing.tflite", LoadOptions())


def test_truncated_fixture_is_among_the_corrupt_models(tmp_path):
    fixture(DEEPLAB)
    assert any(p.name == "truncated-deeplab.tflite" for p in corrupt_models(tmp_path))


# ---------------------------------------------------------------- DeepLab on the demo photo


@pytest.fixture(scope="module")
def deeplab_maps():
    """Argmax class maps (513x513) of the DeepLab fixture on the demo photo, per runtime."""
    from PIL import Image

    fixture(DEEPLAB)
    fixture(PHOTO)
    image = Image.open(PHOTO).convert("RGB").resize((513, 513), Image.BILINEAR)
    nhwc = (np.asarray(image, np.float32) / 127.5 - 1.0)[None]
    maps = {}
    for name in ("tflite", "opencv"):
        try:
            runtime = get_runtime_class(name)()
            runtime.load(DEEPLAB, LoadOptions(threads=2))
        except RuntimeUnavailable:
            continue
        blob = nhwc if runtime.layout == "nhwc" else np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
        assert tuple(runtime.inputs[0].shape) == blob.shape
        (logits,) = run(runtime, [blob])
        assert logits.shape == tuple(runtime.outputs[0].shape) == (1, 513, 513, 21)  # NHWC for both
        maps[name] = logits[0].argmax(axis=-1)
    return maps


@pytest.mark.parametrize("name", ["tflite", "opencv"])
def test_deeplab_finds_the_people_and_the_horse(name, deeplab_maps):
    if name not in deeplab_maps:
        pytest.skip(f"runtime {name} is not available here")
    shares = np.bincount(deeplab_maps[name].ravel(), minlength=21) / deeplab_maps[name].size
    assert shares[BACKGROUND] + shares[HORSE] + shares[PERSON] > 0.95
    assert shares[PERSON] > 0.2 and shares[HORSE] > 0.2


def test_deeplab_tflite_and_opencv_agree(deeplab_maps):
    """With the dilated-convolution rewrite (on by default) OpenCV agrees with TFLite."""
    if set(deeplab_maps) != {"tflite", "opencv"}:
        pytest.skip("needs both tflite and opencv")
    agreement = float((deeplab_maps["tflite"] == deeplab_maps["opencv"]).mean())
    assert agreement >= 0.98


def test_dilated_padding_rewrite_keeps_the_arithmetic(tmp_path):
    """The rewritten graph gives the TFLite interpreter bit-identical logits."""
    from edgefarm.agent.runtimes.tflite_rewrite import pad_dilated_convolutions

    fixture(DEEPLAB)
    rewritten = tmp_path / "rewritten.tflite"
    assert pad_dilated_convolutions(DEEPLAB, rewritten) == 10
    x = np.random.default_rng(0).uniform(-1, 1, (1, 513, 513, 3)).astype(np.float32)
    original, changed = loaded("tflite", DEEPLAB), loaded("tflite", rewritten)
    np.testing.assert_array_equal(run(original, [x])[0], run(changed, [x])[0])
    assert pad_dilated_convolutions(tmp_path / "rewritten.tflite", tmp_path / "again.tflite") == 0
    opencv = loaded("opencv", DEEPLAB)
    assert opencv.describe()["dilated_convolutions_rewritten"] == 10


# ---------------------------------------------------------------- the registry


def _importable(*modules: str) -> bool:
    return any(importlib.util.find_spec(module) is not None for module in modules)


def test_available_runtimes_lists_the_installed_ones_with_versions():
    found = {r["name"]: r for r in available_runtimes()}
    assert found["null"]["version"] == agent_version
    if _importable("cv2"):
        import cv2

        assert found["opencv"]["version"] == "opencv " + cv2.__version__
    if _importable("ai_edge_litert"):
        assert found["tflite"]["version"] == "ai-edge-litert " + importlib.metadata.version("ai-edge-litert")
    elif _importable("tflite_runtime", "tensorflow"):
        assert found["tflite"]["version"].split()[0] in ("tflite-runtime", "tensorflow")
    for runtime in found.values():
        assert runtime["version"] and runtime["accelerators"][0] == "cpu"
    assert [r["name"] for r in available_runtimes(enabled=["null"])] == ["null"]
