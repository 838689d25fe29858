"""The null runtime: loads any file and does no inference, so that benchmarking
it measures the harness's own overhead (the cost of the timing loop around an
empty ``invoke``) and lets the rest of the pipeline run without a real runtime.

For a TFLite file it presents the model's real input and output tensors (read
with ``edgefarm.shared.formats.read_tflite_info``, NHWC like the TFLite runtime); for any
other file, one float32 input "input" and one float32 output "output" of shape
(1, 1). ``get_outputs`` returns zeros of the output shapes.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edgefarm.shared.contract.rules import RUNTIME_FORMATS
from edgefarm.shared.formats import FORMAT_TFLITE, ModelFormatError, detect_format, read_tflite_info

from .base import LoadOptions, ModelLoadError, Runtime, TensorInfo


def _numpy_dtype(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:  # bfloat16, int4, ...: numpy has no such type
        return np.dtype(np.float32)


def _concrete(shape: Sequence[int]) -> tuple:
    return tuple(int(d) if int(d) > 0 else 1 for d in shape)


def _from_record(record: dict) -> TensorInfo:
    quantization = None
    if record.get("quantization") and record["quantization"].get("scale"):
        zero_points = record["quantization"].get("zero_point") or [0]
        quantization = (float(record["quantization"]["scale"][0]), int(zero_points[0]))
    return TensorInfo(record["name"], tuple(record["shape"]), record["dtype"], quantization)


class NullRuntime(Runtime):
    name = "null"
    layout = "nhwc"
    formats = RUNTIME_FORMATS["null"]

    def __init__(self) -> None:
        self._inputs: List[TensorInfo] = []
        self._outputs: List[TensorInfo] = []
        self._zeros: List[np.ndarray] = []
        self._threads: Optional[int] = None

    @classmethod
    def version(cls) -> Optional[str]:
        from edgefarm.agent import __version__

        return __version__

    def load(self, model_path: Path, options: LoadOptions) -> None:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise ModelLoadError(f"cannot load model: {model_path} is not a file")
        self._inputs = [TensorInfo("input", (1, 1), "float32")]
        self._outputs = [TensorInfo("output", (1, 1), "float32")]
        try:
            if detect_format(model_path) == FORMAT_TFLITE:
                info = read_tflite_info(model_path)
                self._inputs = [_from_record(r) for r in info["inputs"]]
                self._outputs = [_from_record(r) for r in info["outputs"]]
        except ModelFormatError:
            pass  # not a recognised model: keep the (1, 1) placeholders
        self._zeros = [np.zeros(_concrete(t.shape), _numpy_dtype(t.dtype)) for t in self._outputs]
        self._threads = options.threads

    def set_inputs(self, arrays: Sequence[Any]) -> None:
        self._check_input_count(arrays)

    def invoke(self) -> None:
        pass

    def get_outputs(self) -> List[np.ndarray]:
        return [zeros.copy() for zeros in self._zeros]

    def describe(self) -> Dict[str, Any]:
        return {"delegate": None, "threads": self._threads}
