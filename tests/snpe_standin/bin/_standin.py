"""Shared helpers of the EdgeFarm stand-in SNPE tools (NOT Qualcomm's SDK).

The stand-in "container" is a ZIP with a ``model`` member holding a ``.tflite``
file and a ``dlc.metadata`` member: ``edgefarm.shared.formats.detect_format`` calls it
"dlc" (real DLCs are ZIPs with those members too, but their ``model`` is
Qualcomm's proprietary graph, which the stand-in refuses). The stand-in runs
the inner model itself, so its outputs and timings are real: with OpenCV DNN
(``cv2.dnn``, through EdgeFarm's opencv runtime, which also works around its
TFLite importer's padding of dilated convolutions) when that reads the model and
its inputs and outputs are float32, else with ai_edge_litert. One engine for every
profiling level, as a device runs one: OpenCV's ``getPerfProfile`` gives the
per-layer times of ``--profiling_level detailed`` (LiteRT has no per-op profiler,
so with LiteRT the detailed log has no per-layer rows). It always executes on the
host CPU, one thread, whatever runtime (CPU, GPU, DSP, AIP) is asked for.
"""

import os
import sys
import tempfile
import time
import zipfile

VERSION = "2.39.0.250926-edgefarm-standin"
RUNTIMES = ("cpu", "gpu", "dsp", "aip")


def fail(message, code=1):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def available_runtimes():
    """Runtimes this pretend device has: $SNPE_STANDIN_RUNTIMES, default "cpu,gpu"."""
    raw = os.environ.get("SNPE_STANDIN_RUNTIMES", "cpu,gpu")
    return [r.strip().lower() for r in raw.split(",") if r.strip()]


def read_container(path):
    """The inner .tflite bytes of a stand-in container."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read("model")
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        fail(f"cannot read DL container {path}: {exc}")
    if data[4:8] != b"TFL3":
        fail(f"{path}: not an EdgeFarm stand-in container (its 'model' member is not a .tflite "
             "file); a real DLC needs Qualcomm's SDK")
    return data


def write_container(tflite_bytes, dest, metadata):
    with zipfile.ZipFile(dest, "w") as archive:
        archive.writestr("model", tflite_bytes)
        archive.writestr("dlc.metadata", "".join(f"{k}={v}\n" for k, v in metadata.items()))


def interpreter(tflite_bytes):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=tflite_bytes, num_threads=1)
    runner.allocate_tensors()
    return runner


def type_name(dtype):
    import numpy as np

    names = {np.float32: "Float_32", np.uint8: "uFxp_8", np.int8: "Int_8", np.int32: "Int_32"}
    return names.get(np.dtype(dtype).type, "Float_32")


class LiteRTEngine:
    """The inner model on ai_edge_litert: outputs and the wall time of ``invoke``; no layers."""

    name = "litert"

    def __init__(self, tflite_bytes):
        self.runner = interpreter(tflite_bytes)
        self.inputs, self.outputs = self.runner.get_input_details(), self.runner.get_output_details()

    def run(self, arrays):
        for detail, array in zip(self.inputs, arrays):
            self.runner.set_tensor(detail["index"], array)
        begin = time.perf_counter_ns()
        self.runner.invoke()
        total_us = (time.perf_counter_ns() - begin) // 1000
        return [self.runner.get_tensor(d["index"]) for d in self.outputs], total_us, None


class OpenCVEngine:
    """The inner model on OpenCV DNN: outputs, the wall time of its forward pass and, from
    the same pass, OpenCV's per-layer times ``(name, type, us)``."""

    name = "opencv"

    def __init__(self, tflite_bytes):
        from edgefarm.agent.runtimes.base import LoadOptions
        from edgefarm.agent.runtimes.opencv import OpenCVRuntime

        details = interpreter(tflite_bytes)
        self.inputs, self.outputs = details.get_input_details(), details.get_output_details()
        if any(d["dtype"].__name__ != "float32" for d in self.inputs + self.outputs):
            raise ValueError("not a float32 model")
        self._folder = tempfile.TemporaryDirectory(prefix="snpe-standin-")
        path = os.path.join(self._folder.name, "model.tflite")
        with open(path, "wb") as handle:
            handle.write(tflite_bytes)
        self.runtime = OpenCVRuntime()
        self.runtime.load(path, LoadOptions(threads=1))

    def run(self, arrays):
        self.runtime.set_inputs([a.transpose(0, 3, 1, 2) if a.ndim == 4 else a for a in arrays])
        begin = time.perf_counter_ns()
        self.runtime.invoke()
        total_us = (time.perf_counter_ns() - begin) // 1000
        layers = [(name, kind, ms * 1000.0) for name, kind, ms in self.runtime.layer_times()]
        by_name = dict(zip([t.name for t in self.runtime.outputs], self.runtime.get_outputs()))
        return [by_name[d["name"]] for d in self.outputs], total_us, layers


def open_engine(tflite_bytes):
    """OpenCV DNN when it reads the model (float32 in and out), else LiteRT."""
    try:
        return OpenCVEngine(tflite_bytes)
    except Exception:  # OpenCV cannot read it (or it is quantized): LiteRT runs it
        return LiteRTEngine(tflite_bytes)
