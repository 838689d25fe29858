"""Shared helpers of the EdgeFarm stand-in SNPE tools (NOT Qualcomm's SDK).

The stand-in "container" is a ZIP with a ``model`` member holding a ``.tflite``
file and a ``dlc.metadata`` member: ``edgefarm.shared.formats.detect_format`` calls it
"dlc" (real DLCs are ZIPs with those members too, but their ``model`` is
Qualcomm's proprietary graph, which the stand-in refuses). The stand-in runs
the inner model with ai_edge_litert, so its outputs and timings are real.
"""

import os
import sys
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
