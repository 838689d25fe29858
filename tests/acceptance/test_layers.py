"""Load stages, per-layer time and per-layer drift of real runs (``run_benchmark``, the
run's own code path) on the DeepLab fixture, its ONNX conversion and its dynamic-range and
int8 variants, plus a small ONNX chain with one corrupted layer."""

import mmap
import shutil
import warnings
from pathlib import Path

import pytest

from edgefarm.agent.execute import ReferenceRun, RunSpec, run_benchmark
from edgefarm.shared.contract.schemas import RunSettings
from tests.support.layer_models import conv_chain
from tests.support.servers import DEEPLAB

pytest.importorskip("onnx", reason="the onnx package reads and builds the test graphs (the [dev] extra)")
pytest.importorskip("onnxruntime", reason="ONNX Runtime profiles the ONNX model")

QUICK = {"threads": 2, "warmup_runs": 1, "warmup_seconds": 0.0, "measured_runs": 5, "min_seconds": 0.0,
         "layer_runs": 5, "profile": True}
needs_deeplab = pytest.mark.skipif(not DEEPLAB.exists(), reason=f"the DeepLab fixture is not present at {DEEPLAB}")


@pytest.fixture(scope="module")
def deeplab(tmp_path_factory):
    """The fixture's ONNX conversion and its dynamic-range and int8 variants, made once."""
    pytest.importorskip("tf2onnx", reason="tf2onnx converts the fixture to ONNX (the [tools-tf] extra)")
    pytest.importorskip("ai_edge_quantizer", reason="ai-edge-quantizer makes the variants (the [tools] extra)")
    from edgefarm.tools.onnx_export import tflite_to_onnx
    from edgefarm.tools.quantize import Calibration, quantize_model
    from tests.support.compression import write_calibration_crops

    folder = tmp_path_factory.mktemp("deeplab-layers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TensorFlow's and the quantizer's deprecation notes
        tflite_to_onnx(DEEPLAB, folder / "fp32.onnx")
        quantize_model(DEEPLAB, folder / "dynamic.tflite", "dynamic")
        write_calibration_crops(folder / "calibration")
        quantize_model(DEEPLAB, folder / "int8.tflite", "int8",
                       Calibration(folder / "calibration", "imagefolder", None, 2))
    return {"onnx": folder / "fp32.onnx", "dynamic": folder / "dynamic.tflite", "int8": folder / "int8.tflite"}


def run(model: Path, runtime: str, reference: Path = None, reference_runtime: str = "tflite", **settings):
    ref = ReferenceRun(runtime=reference_runtime, model_path=str(reference), max_samples=2) if reference else None
    return run_benchmark(RunSpec(model_path=str(model), settings=RunSettings(runtime=runtime, **{**QUICK, **settings}),
                                 reference=ref))


def optimized_graph(model: Path, tmp_path: Path) -> dict:
    """(node name -> op type) of the graph ONNX Runtime runs, as it writes it itself."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return {n.name: n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}


def assert_layer_sum_matches_runs(result):
    """The acceptance: the layer sum is within 25% of the end-to-end time measured, in the
    same pass and unprofiled, on the runtime's own code path (``e2e_ms``)."""
    layers = result.layers
    assert layers.not_available is None
    assert layers.runs == QUICK["layer_runs"] and layers.layers
    assert layers.e2e_ms is not None and layers.e2e_ms > 0
    assert abs(layers.total_ms - layers.e2e_ms) <= 0.25 * layers.e2e_ms, (
        f"layers sum to {layers.total_ms:.3f} ms, unprofiled end to end {layers.e2e_ms:.3f} ms, profiled runs "
        f"{layers.run_ms:.3f} ms, headline p50 {result.latency_ms.p50:.3f} ms")
    assert sum(layer.share for layer in layers.layers) == pytest.approx(1.0, abs=1e-6)


# The layer sum against the unprofiled end-to-end time compares two timings taken a run
# apart: beside the other test worker's load they drifted apart by 41% once (89 against
# 63 ms), alone they agree within a few percent (docs/benchmarks.md, layer passes).
@needs_deeplab
@pytest.mark.alone
def test_onnxruntime_layer_times_add_up_and_name_the_graph_it_runs(deeplab, tmp_path):
    result = run(deeplab["onnx"], "onnxruntime")
    layers = result.layers
    assert_layer_sum_matches_runs(result)
    graph = optimized_graph(deeplab["onnx"], tmp_path)
    assert {(layer.name, layer.op_type) for layer in layers.layers} <= set(graph.items())
    assert len(layers.layers) == len(graph)
    assert {layer.unit for layer in layers.layers} == {"CPU"}
    # the headline latency is measured before, and without, the profiler
    assert result.latency_ms.count == QUICK["measured_runs"]


@needs_deeplab
@pytest.mark.alone  # the same comparison of two timings
def test_opencv_layer_times_add_up_and_carry_the_source_graphs_names(deeplab):
    import onnx

    source = {n.name: n.op_type for n in onnx.load(str(deeplab["onnx"])).graph.node}
    result = run(deeplab["onnx"], "opencv")
    layers = result.layers
    assert_layer_sum_matches_runs(result)
    named = [layer for layer in layers.layers if layer.name in source]
    assert len(named) >= 0.85 * len(layers.layers)  # the rest are OpenCV's own layout transforms
    assert all(layer.op_type == source[layer.name] for layer in named)
    assert {"Conv", "Resize"} <= {layer.op_type for layer in named}


@needs_deeplab
@pytest.mark.parametrize("variant", ["dynamic", "int8"])
def test_drift_of_a_variant_names_every_matched_tensor_and_ends_at_agreements_psnr(deeplab, variant):
    from edgefarm.agent.drift import open_dumper

    result = run(deeplab[variant], "tflite", reference=DEEPLAB, layer_runs=1)
    drift = result.drift
    assert drift.not_available is None and drift.sample_count == 1  # the synthetic latency input
    candidate = open_dumper(deeplab[variant]).tensors
    reference_ops = {t.op_type for t in open_dumper(DEEPLAB).tensors}
    named = {t.name for t in drift.tensors}
    assert len(named) == len(drift.tensors)
    # every tensor of an op the reference also has is in the table; the rest are the
    # quantizer's own (QUANTIZE / DEQUANTIZE)
    assert {t.name for t in candidate if t.op_type in reference_ops} == named
    assert {t.op_type for t in candidate if t.name not in named} <= {"QUANTIZE", "DEQUANTIZE"}
    output = next(iter(result.agreement.outputs))
    logits = next(t for t in drift.tensors if t.name == output)
    assert logits.psnr_db == pytest.approx(result.agreement.outputs[output].psnr_db, abs=0.1)
    assert result.layers.not_available.startswith("per-layer time is not available for tflite")


@needs_deeplab
def test_drift_on_the_photo_matches_output_agreement_for_the_same_image(deeplab):
    import numpy as np
    from PIL import Image

    from edgefarm.agent.agreement import compute_agreement
    from edgefarm.agent.clock import load_runtime
    from edgefarm.agent.drift import compute_drift
    from edgefarm.agent.runtimes import LoadOptions, get_runtime_class
    from edgefarm.agent.strategy import strategy_for
    from edgefarm.shared.datasets.preprocess import default_preprocessing
    from tests.support.voc import PHOTO

    image = np.asarray(Image.open(PHOTO).convert("RGB"))
    pre = default_preprocessing("float32")
    drift = compute_drift(deeplab["int8"], DEEPLAB, [image], None, None, pre, samples=1, threads=2)
    tflite = get_runtime_class("tflite")
    candidate, _ = load_runtime(tflite, deeplab["int8"], LoadOptions(threads=2))
    reference, _ = load_runtime(tflite, DEEPLAB, LoadOptions(threads=2))
    agreement = compute_agreement(strategy_for(candidate), strategy_for(reference), "segmentation",
                                  [image], None, pre)
    name, figures = next(iter(agreement["outputs"].items()))
    assert next(t for t in drift.tensors if t.name == name).psnr_db == pytest.approx(figures["psnr_db"], abs=0.1)
    assert [t.position for t in drift.tensors] == sorted(t.position for t in drift.tensors)


@pytest.mark.parametrize("rename", [False, True], ids=["same names", "renamed tensors"])
def test_a_corrupted_layer_is_the_first_whose_drift_drops(tmp_path, rename):
    original = tmp_path / "chain.onnx"
    conv_chain(original)
    corrupted = tmp_path / "corrupted.onnx"
    names = conv_chain(corrupted, corrupt=3, rename=rename)
    result = run(corrupted, "onnxruntime", reference=original, reference_runtime="onnxruntime")
    drift = result.drift
    assert drift.not_available is None
    assert len(drift.tensors) == 2 * 6 + 1 and drift.unmatched == 0
    first = next(t for t in drift.tensors if not t.identical)
    assert first.name == names[3] and first.op_type == "Conv"
    assert first.matched_by == ("position" if rename else "name")
    assert all(t.identical for t in drift.tensors if t.position < first.position)
    assert all(t.psnr_db is not None for t in drift.tensors if t.position >= first.position)
    final = next(t for t in drift.tensors if t.name == "logits")
    assert final.psnr_db == pytest.approx(result.agreement.psnr_db, abs=0.1)


@needs_deeplab
def test_stages_cold_load_then_warm_load_with_plausible_memory(tmp_path):
    model = tmp_path / "deeplab.tflite"  # a copy no other process maps, so its pages can leave the cache
    shutil.copyfile(DEEPLAB, model)
    stages = run(model, "tflite", layer_runs=1).stages
    assert stages.not_available is None and stages.sample_interval_ms > 0
    by_name = {s.name: s for s in stages.stages}
    assert list(by_name) == ["cold_load", "warm_load", "first_inference", "steady_inference"]
    if stages.cache_dropped:
        assert by_name["cold_load"].ms >= by_name["warm_load"].ms
    else:
        assert stages.cache_note.startswith("the page cache could not be dropped")
    for stage in stages.stages:
        assert stage.rss_before_bytes > 0
        assert stage.rss_peak_increase_bytes >= stage.rss_increase_bytes
    assert by_name["cold_load"].rss_increase_bytes > 0
    assert by_name["steady_inference"].runs == 5


def test_a_file_another_process_maps_is_not_said_to_be_dropped(tmp_path):
    from edgefarm.agent.stages import measure_stages

    model = tmp_path / "chain.onnx"
    conv_chain(model)
    with open(model, "rb") as handle, mmap.mmap(handle.fileno(), 0, prot=mmap.PROT_READ) as mapped:
        assert mapped[:4]  # its pages are mapped, and so cached, in this process
        stages = measure_stages(model, "onnxruntime", "cpu", 1, {})
    assert not stages.cache_dropped
    assert stages.cache_note.startswith("the page cache could not be dropped") and "stayed cached" in stages.cache_note
    assert [s.name for s in stages.stages][:2] == ["cold_load", "warm_load"]


def test_profile_off_leaves_the_three_passes_out(tmp_path):
    model = tmp_path / "chain.onnx"
    conv_chain(model)
    result = run(model, "onnxruntime", reference=model, reference_runtime="onnxruntime", profile=False)
    assert result.stages is None and result.layers is None and result.drift is None
    assert result.agreement is not None


def test_no_drift_table_against_the_same_model_file(tmp_path):
    from edgefarm.agent.profiling import SAME_MODEL

    model = tmp_path / "chain.onnx"
    conv_chain(model)
    result = run(model, "onnxruntime", reference=model, reference_runtime="onnxruntime")
    assert result.drift.not_available == SAME_MODEL and result.drift.tensors == []
    assert result.layers.not_available is None and result.stages.not_available is None


@pytest.fixture
def standin_sdk(monkeypatch):
    """The stand-in SNPE SDK (``tests/snpe_standin``, NOT Qualcomm's) on PATH."""
    from tests.support.model_builders import standin_env

    for key, value in standin_env().items():
        monkeypatch.setenv(key, value)


def wide_mlp(path: Path) -> Path:
    """A small float32 TFLite MLP (64 -> 1024 -> 1024 -> 10) heavy enough that its layers,
    not the call overhead, make most of an inference."""
    import numpy as np

    from edgefarm.shared.formats.tflite_builder import build_mlp

    rng = np.random.default_rng(0)
    widths = [64, 1024, 1024, 10]
    layers = [(rng.normal(0, 0.05, (out, width)).astype(np.float32).tolist(), [0.0] * out)
              for width, out in zip(widths, widths[1:])]
    path.write_bytes(build_mlp(layers, input_name="image", input_shape=[1, 8, 8, 1]))
    return path


def opencv_layers(tflite: Path) -> set:
    """(layer name, OpenCV layer type) of the model as OpenCV DNN names them."""
    from edgefarm.agent.runtimes import LoadOptions
    from edgefarm.agent.runtimes.opencv import OpenCVRuntime

    runtime = OpenCVRuntime()
    runtime.load(tflite, LoadOptions(threads=1))
    try:
        import numpy as np

        runtime.set_inputs([np.zeros(runtime.inputs[0].shape, np.float32)])
        runtime.invoke()
        return {(name, kind) for name, kind, _ in runtime.layer_times()}
    finally:
        runtime.close()


def assert_snpe_layers(result, tflite: Path, unit: str):
    layers = result.layers
    assert_layer_sum_matches_runs(result)
    assert layers.source.startswith("snpe-diagview")
    assert {(layer.name, layer.op_type) for layer in layers.layers} == opencv_layers(tflite)
    assert {layer.unit for layer in layers.layers} == {unit}
    assert layers.run_ms is not None
    assert result.latency_ms.count == QUICK["measured_runs"]  # the pass adds no headline runs


@needs_deeplab
@pytest.mark.alone  # the same comparison of two timings
def test_snpe_layer_times_through_diagview_on_the_stand_in(standin_sdk, tmp_path):
    from tests.support.model_builders import standin_dlc

    dlc = standin_dlc(DEEPLAB, tmp_path / "deeplab.dlc")
    assert_snpe_layers(run(dlc, "snpe", accelerator="gpu"), DEEPLAB, "GPU")


@pytest.mark.alone  # the same comparison of two timings
def test_snpe_layer_times_of_a_small_model_on_the_stand_in(standin_sdk, tmp_path):
    from tests.support.model_builders import standin_dlc

    tflite = wide_mlp(tmp_path / "mlp.tflite")
    result = run(standin_dlc(tflite, tmp_path / "mlp.dlc"), "snpe")
    assert_snpe_layers(result, tflite, "CPU")
    assert {"Gemm", "Softmax"} <= {layer.op_type for layer in result.layers.layers}
