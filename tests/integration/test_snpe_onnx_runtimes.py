"""The onnxruntime and snpe runtimes on real models: the digits MLP as ``.onnx`` (built
with onnx.helper) and as a stand-in DLC run by the stand-in SNPE SDK's processes
(``tests/snpe_standin``), plus ``edgefarm.tools.dlc``. Both are compared with TFLite."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgefarm.agent.clock import load_runtime
from edgefarm.agent.runtimes import (
    LoadOptions,
    ModelLoadError,
    RuntimeUnavailable,
    available_runtimes,
    get_runtime_class,
)
from tests.support.model_builders import digits_layers, digits_onnx, digits_tflite, standin_dlc, standin_env

pytest.importorskip("onnx", reason="the onnx package builds the test models (the [dev] extra)")
pytest.importorskip("sklearn", reason="the digits model trains on scikit-learn's digits (the [tools] extra)")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    layers = digits_layers()
    tflite = digits_tflite(layers, folder / "digits.tflite")
    return {"tflite": tflite, "onnx": digits_onnx(layers, folder / "digits.onnx"),
            "dlc": standin_dlc(tflite, folder / "digits.dlc")}


@pytest.fixture
def standin(monkeypatch):
    """The stand-in SDK on PATH for this process; the SDK look-ups are not cached across tests."""
    from edgefarm.agent.runtimes import snpe

    for key, value in standin_env().items():
        monkeypatch.setenv(key, value)
    snpe._version.cache_clear()
    snpe._validated.cache_clear()
    yield monkeypatch
    snpe._version.cache_clear()
    snpe._validated.cache_clear()


def images(count=8, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (count, 8, 8)).astype(np.float32)


def tflite_outputs(path, batch):
    runtime, _ = load_runtime(get_runtime_class("tflite"), path, LoadOptions(threads=1))
    results = []
    for x in batch:
        runtime.set_inputs([x.reshape(1, 8, 8, 1)])
        runtime.invoke()
        results.append(runtime.get_outputs()[0].copy())
    return results


# ---------------------------------------------------------------- onnxruntime


def test_onnxruntime_reports_cpu_and_reads_the_nchw_model(models):
    found = {r["name"]: r for r in available_runtimes()}
    assert found["onnxruntime"]["accelerators"][0] == "cpu"
    assert "azure" not in found["onnxruntime"]["accelerators"]
    runtime, _ = load_runtime(get_runtime_class("onnxruntime"), models["onnx"], LoadOptions(threads=2))
    assert runtime.layout == "nchw"
    assert [(t.name, t.shape, t.dtype) for t in runtime.inputs] == [("image", (1, 1, 8, 8), "float32")]
    assert runtime.describe()["threads"] == 2 and runtime.describe()["providers"] == ["CPUExecutionProvider"]
    expected = tflite_outputs(models["tflite"], images())
    for x, reference in zip(images(), expected):
        runtime.set_inputs([x.reshape(1, 1, 8, 8)])
        runtime.invoke()
        np.testing.assert_allclose(runtime.get_outputs()[0], reference, atol=1e-5)


def test_provider_names_map_to_accelerators():
    from edgefarm.agent.runtimes.onnxruntime import accelerator_name, provider_map

    assert accelerator_name("CUDAExecutionProvider") == "gpu"
    assert accelerator_name("TensorrtExecutionProvider") == "tensorrt"
    assert list(provider_map(["AzureExecutionProvider", "CPUExecutionProvider", "OpenVINOExecutionProvider"])) \
        == ["cpu", "openvino"]


def test_onnxruntime_refuses_other_files_and_missing_accelerators(models, tmp_path):
    cls = get_runtime_class("onnxruntime")
    with pytest.raises(ModelLoadError, match="onnxruntime reads .onnx"):
        load_runtime(cls, models["tflite"], LoadOptions())
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(models["onnx"].read_bytes()[:200])
    with pytest.raises(ModelLoadError, match="cannot load model"):
        load_runtime(cls, broken, LoadOptions())
    with pytest.raises(RuntimeUnavailable, match="no accelerator 'dsp'"):
        load_runtime(cls, models["onnx"], LoadOptions(accelerator="dsp"))


# ---------------------------------------------------------------- snpe (stand-in SDK)


def test_snpe_is_listed_with_the_accelerators_the_validator_reports(standin):
    found = {r["name"]: r for r in available_runtimes()}
    assert found["snpe"]["accelerators"] == ["cpu", "gpu"]
    assert found["snpe"]["version"] == "snpe 2.39.0.250926-edgefarm-standin"
    from edgefarm.agent.runtimes import snpe

    snpe._validated.cache_clear()
    standin.setenv("SNPE_STANDIN_RUNTIMES", "cpu,gpu,dsp")
    assert get_runtime_class("snpe").accelerators() == ["cpu", "gpu", "dsp"]


def test_snpe_is_absent_without_the_sdk(monkeypatch):
    from tests.support.model_builders import without_sdk

    monkeypatch.setenv("PATH", without_sdk()["PATH"])
    monkeypatch.delenv("SNPE_ROOT", raising=False)
    assert "snpe" not in {r["name"] for r in available_runtimes()}


def test_snpe_batch_matches_tflite_and_takes_times_from_the_diag_log(standin, models, tmp_path):
    runtime, _ = load_runtime(get_runtime_class("snpe"), models["dlc"],
                              LoadOptions(accelerator="gpu", options={"work_dir": str(tmp_path),
                                                                      "keep_work_dir": True}))
    assert [(t.name, t.shape) for t in runtime.inputs] == [("image", (1, 8, 8, 1))]
    assert runtime.layout == "nhwc" and runtime.describe()["flags"] == ["--use_gpu"]
    batch = [[x.reshape(1, 8, 8, 1)] for x in images()]
    run = runtime.run_batch(batch)
    for outputs, reference in zip(run.outputs, tflite_outputs(models["tflite"], images())):
        np.testing.assert_allclose(np.asarray(outputs[0]), reference, atol=1e-6)
    (log,) = tmp_path.glob("edgefarm-snpe-*/output/SNPEDiag_0.log")
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    logged = [e["total_inference_us"] / 1000 for e in entries if e["kind"] == "execute"]
    assert run.latencies_ms == logged and len(logged) == 8
    assert run.init_ms == entries[1]["init_us"] / 1000
    assert run.details["latency_source"].startswith("snpe-diagview csv")
    run.close()


def test_snpe_refuses_a_runtime_the_device_lacks(standin, models):
    runtime, _ = load_runtime(get_runtime_class("snpe"), models["dlc"], LoadOptions(accelerator="dsp"))
    with pytest.raises(RuntimeError, match="snpe-net-run exited with code 2.*DSP runtime is not available"):
        runtime.run_batch([[np.zeros((1, 8, 8, 1), np.float32)]])


def test_snpe_refuses_a_real_looking_dlc(standin, tmp_path):
    fake = tmp_path / "real.dlc"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("model", b"\xd5\x0a\x04\x00\x00\x00\x00\x00NETD")
        archive.writestr("dlc.metadata", "converter-command=qairt-converter\n")
    with pytest.raises(ModelLoadError, match="not an EdgeFarm stand-in container"):
        load_runtime(get_runtime_class("snpe"), fake, LoadOptions())


# ---------------------------------------------------------------- edgefarm.tools.dlc


def test_convert_to_dlc_with_calibration_through_the_agent_preprocessing(standin, models, tmp_path):
    from edgefarm.tools.digits import write_imagefolder
    from edgefarm.tools.dlc import calibration_from_dataset, convert_to_dlc

    write_imagefolder(tmp_path / "digits")
    calibration = calibration_from_dataset(models["tflite"], tmp_path / "digits", "imagefolder", limit=5)
    assert len(calibration) == 5 and calibration[0].shape == (1, 8, 8, 1)
    assert calibration[0].min() >= -1.0 and calibration[0].max() <= 1.0
    dest = convert_to_dlc(models["tflite"], tmp_path / "out" / "q.dlc", calibration)
    with zipfile.ZipFile(dest) as archive:
        assert "5 calibration raws checked" in archive.read("dlc.metadata").decode()
    plain = convert_to_dlc(models["tflite"], tmp_path / "plain.dlc")
    from edgefarm.shared.formats import detect_format

    assert detect_format(plain) == "dlc"


def test_convert_to_dlc_without_the_sdk_says_how_to_get_it(models, monkeypatch, tmp_path):
    from edgefarm.tools.dlc import SDKMissing, convert_to_dlc, main
    from tests.support.model_builders import without_sdk

    monkeypatch.setenv("PATH", without_sdk()["PATH"])
    monkeypatch.delenv("SNPE_ROOT", raising=False)
    with pytest.raises(SDKMissing, match="the SNPE SDK is not installed: set SNPE_ROOT or put "
                                         "snpe-tflite-to-dlc on PATH"):
        convert_to_dlc(models["tflite"], tmp_path / "x.dlc")
    with pytest.raises(SDKMissing, match="put snpe-onnx-to-dlc on PATH"):
        convert_to_dlc(models["onnx"], tmp_path / "x.dlc")
    assert main([str(models["tflite"]), str(tmp_path / "x.dlc")]) == 2
    assert not Path(tmp_path / "x.dlc").exists()


# ---------------------------------------------------------------- a whole run, one dataset scan


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    from edgefarm.tools.digits import write_imagefolder

    folder = tmp_path_factory.mktemp("digits") / "dataset"
    write_imagefolder(folder)
    return folder


@pytest.mark.parametrize("runtime", ["tflite", "snpe"])
def test_a_run_walks_its_dataset_once_for_latency_evaluation_and_agreement(
        runtime, standin, models, digits_folder, monkeypatch):
    """One real run with a dataset and a reference (tflite on the same weights): the
    latency input, the evaluation and the output agreement (over more samples than one
    chunk of agreement.BATCH_CHUNK) share one scan."""
    import os

    from edgefarm.agent.execute import ReferenceRun, RunSpec, run_benchmark
    from edgefarm.shared.contract.schemas import RunSettings

    walks = []
    real_walk = os.walk

    def counting_walk(top, *args, **kwargs):
        walks.append(Path(top))
        return real_walk(top, *args, **kwargs)

    monkeypatch.setattr(os, "walk", counting_walk)
    settings = RunSettings(runtime=runtime, threads=1, warmup_runs=1, warmup_seconds=0, measured_runs=3,
                           min_seconds=0, sample_limit=30)
    spec = RunSpec(model_path=str(models["dlc" if runtime == "snpe" else "tflite"]), settings=settings,
                   task="classification", dataset_dir=str(digits_folder), dataset_layout="imagefolder",
                   reference=ReferenceRun(runtime="tflite", model_path=str(models["tflite"]), max_samples=20))
    result = run_benchmark(spec)
    assert [walk for walk in walks if walk == digits_folder] == [digits_folder]
    assert result.metrics.sample_count == 30 and result.metrics.top1 > 0.8
    assert result.extra["inputs"] == "dataset sample"
    agreement = result.agreement
    assert agreement.error is None and agreement.sample_count == 20 and agreement.top1_agreement == 1.0
    assert agreement.reference["runtime"] == "tflite"
    batch = runtime == "snpe"  # its inference runs in a child process, measured there
    assert ("runtime_process_peak_rss_bytes" in result.extra) == batch
    assert ("latency_protocol" in result.extra) == batch


def test_invoke_and_batch_runs_post_the_same_per_sample_record(standin, models, digits_folder):
    """The same weights through tflite (invoke) and the SNPE stand-in (batch): the same sample
    order and the same correct samples; the top-1 bits give back the posted top-1. With
    ``target_ci`` the batch runtime adds batches until the target or ``max_seconds``."""
    from edgefarm.agent.execute import RunSpec, run_benchmark
    from edgefarm.shared.contract.schemas import RunSettings
    from edgefarm.shared.stats import quantile_ci
    from edgefarm.shared.stats.encoding import unpack_flags

    records = {}
    for runtime in ("tflite", "snpe"):
        settings = RunSettings(runtime=runtime, threads=1, warmup_runs=1, warmup_seconds=0, measured_runs=10,
                               min_seconds=0, max_seconds=1.0, sample_limit=30, target_ci=0.05)
        spec = RunSpec(model_path=str(models["dlc" if runtime == "snpe" else "tflite"]), settings=settings,
                       task="classification", dataset_dir=str(digits_folder), dataset_layout="imagefolder",
                       thermal={"enabled": False}, repetition={"cv_reruns": 0})
        result = run_benchmark(spec)
        record = result.metrics.per_sample
        top1 = unpack_flags(record.top1_correct, record.count)
        assert record.count == 30 and sum(top1) / 30 == result.metrics.top1
        achieved = quantile_ci(result.latency_ms.samples, 0.5, 0.95).half_width_ratio()
        assert result.repetition.achieved_ci == pytest.approx(achieved, rel=1e-12)
        assert result.repetition.met == (achieved <= 0.05)
        assert result.repetition.stopped_by == ("target" if result.repetition.met else "max_seconds")
        records[runtime] = record
    assert records["tflite"].order_sha256 == records["snpe"].order_sha256
    assert records["tflite"].top1_correct == records["snpe"].top1_correct
    assert records["tflite"].top5_correct == records["snpe"].top5_correct
