"""The OpenCV DNN runtime: ``.tflite`` and ``.onnx`` models through ``cv2.dnn``.

What OpenCV does, found with opencv-python-headless 5.0.0 (and 4.14.0) on the
DeepLabv3 fixture (input ``sub_7`` 1x513x513x3, output ``ResizeBilinear_2``
1x513x513x21 in TFLite):

* It takes NCHW blobs (1x3x513x513); an NHWC blob fails in the first
  convolution. So this runtime's ``layout`` is "nchw" and its ``inputs`` show
  4-D TFLite input shapes transposed from NHWC to NCHW.
* It returns 4-D outputs in NCHW (1x21x513x513). ``get_outputs`` transposes them
  back to the TFLite model's NHWC shapes, so ``outputs`` and ``get_outputs()``
  agree with the TFLite runtime (consumers read classes from the last axis).
* Its TFLite importer pads SAME convolutions with dilation > 1 as if they were
  undilated: from DeepLab's first atrous depthwise convolution
  (``expanded_conv_7``, dilation 2) its output is shifted by one pixel and the
  final argmax agrees with TFLite on only ~64% of pixels. So, unless the option
  ``fix_dilated_padding`` is false, such convolutions are rewritten to an
  explicit PAD + VALID convolution first (``tflite_rewrite``; same arithmetic),
  after which DeepLab agrees with TFLite on every pixel (max |diff| 4e-5). The
  result's runtime description says how many were rewritten. Models without
  dilated convolutions are read as they are.

``cv2.dnn.readNet`` picks the importer by file extension, so this runtime picks
it from the file's content (``edgefarm.shared.formats.detect_format``) instead. OpenCV
does not expose input shapes before a forward pass; for ``.tflite`` they come
from ``edgefarm.shared.formats.read_tflite_info``, for ``.onnx`` from the ``onnx``
package when it is installed (else the shape is unknown: ``()``).

Options: ``backend`` ("opencv", "cuda", ...), ``target`` ("cpu", "opencl",
"cuda", ...), ``engine`` ("auto", "new", "classic"; a non-CPU backend or target
needs "classic", chosen automatically). ``threads`` calls ``cv2.setNumThreads``,
which is process-wide.
"""

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edgefarm.shared.contract.rules import RUNTIME_FORMATS
from edgefarm.shared.formats import (
    FORMAT_ONNX,
    FORMAT_TFLITE,
    ModelFormatError,
    detect_format,
    read_tflite_info,
)

from .base import LoadOptions, ModelLoadError, Runtime, RuntimeUnavailable, TensorInfo

_ACCELERATOR_DEFAULTS = {"gpu": ("cuda", "cuda")}  # accelerator -> (backend, target)


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise RuntimeUnavailable(f"OpenCV is not installed: {exc}") from exc
    if not hasattr(cv2, "dnn"):
        raise RuntimeUnavailable("this OpenCV build has no dnn module")
    return cv2


def _constant(cv2: Any, prefix: str, name: str) -> int:
    value = getattr(cv2.dnn, prefix + str(name).upper(), None)
    if value is None:
        raise RuntimeUnavailable(f"OpenCV {cv2.__version__} has no {prefix}{str(name).upper()}")
    return value


def _nhwc_to_nchw(shape: Sequence[int]) -> tuple:
    shape = tuple(int(d) for d in shape)
    return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else shape


def _quantization(record: Optional[dict]) -> Optional[tuple]:
    if not record or not record.get("scale"):
        return None
    zero_points = record.get("zero_point") or [0]
    return float(record["scale"][0]), int(zero_points[0])


def _onnx_tensor_infos(path: Path) -> tuple:
    """(inputs, outputs) of an ONNX graph via the optional ``onnx`` package, else unknown."""
    try:
        import onnx
        from onnx import helper
    except ImportError:
        return [TensorInfo("", (), "float32")], []
    model = onnx.load(str(path), load_external_data=False)
    constants = {init.name for init in model.graph.initializer}

    def info(value: Any) -> TensorInfo:
        tensor_type = value.type.tensor_type
        shape = tuple(d.dim_value if d.dim_value > 0 else -1 for d in tensor_type.shape.dim)
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).name
        return TensorInfo(value.name, shape, dtype)

    inputs = [info(v) for v in model.graph.input if v.name not in constants]
    return inputs, [info(v) for v in model.graph.output]


def _choose_backend(options: LoadOptions) -> tuple:
    """(backend, target, engine) from the accelerator and the ``backend``/``target``/``engine`` options."""
    if options.accelerator not in ("cpu",) + tuple(_ACCELERATOR_DEFAULTS):
        raise RuntimeUnavailable(f"the opencv runtime has no accelerator {options.accelerator!r}")
    settings = options.options or {}
    backend, target = _ACCELERATOR_DEFAULTS.get(options.accelerator, ("opencv", "cpu"))
    backend, target = settings.get("backend", backend), settings.get("target", target)
    engine = settings.get("engine") or ("auto" if (backend, target) == ("opencv", "cpu") else "classic")
    return backend, target, engine


class OpenCVRuntime(Runtime):
    name = "opencv"
    layout = "nchw"
    formats = RUNTIME_FORMATS["opencv"]

    def __init__(self) -> None:
        self._net: Any = None
        self._format = ""
        self._inputs: List[TensorInfo] = []
        self._outputs: List[TensorInfo] = []
        self._forward_names: List[str] = []
        self._raw: Sequence[np.ndarray] = ()
        self._describe: Dict[str, Any] = {}
        self._tmp: Any = None
        self._rewrites = 0

    @classmethod
    def version(cls) -> Optional[str]:
        return "opencv " + _cv2().__version__

    @classmethod
    def accelerators(cls) -> List[str]:
        cv2 = _cv2()
        found = ["cpu"]
        try:
            if cv2.cuda.getCudaEnabledDeviceCount() > 0:
                found.append("gpu")
        except (AttributeError, cv2.error):
            pass
        return found

    def load(self, model_path: Path, options: LoadOptions) -> None:
        cv2 = _cv2()
        model_path = Path(model_path)
        backend, target, engine = _choose_backend(options)
        try:
            self._format = detect_format(model_path)
        except (ModelFormatError, OSError) as exc:
            raise ModelLoadError(f"cannot load model: {exc}") from exc
        if self._format not in self.formats:
            raise ModelLoadError(f"cannot load model: OpenCV DNN does not read {self._format} files")
        if options.threads:
            cv2.setNumThreads(int(options.threads))
        try:
            self._net = self._read(cv2, self._workaround(model_path, options), engine)
            if (backend, target) != ("opencv", "cpu"):  # the new engine warns on any target
                self._net.setPreferableBackend(_constant(cv2, "DNN_BACKEND_", backend))
                self._net.setPreferableTarget(_constant(cv2, "DNN_TARGET_", target))
            self._forward_names = list(self._net.getUnconnectedOutLayersNames())
            self._inputs, self._outputs = self._tensor_infos(model_path)
        except (RuntimeUnavailable, ModelLoadError):
            raise
        except Exception as exc:  # cv2.error, ModelFormatError, ...
            raise ModelLoadError(f"cannot load model {model_path.name}: {_short_message(exc)}") from exc
        self._describe = {"backend": backend, "target": target, "engine": engine,
                          "threads": cv2.getNumThreads(), "delegate": None,
                          "dilated_convolutions_rewritten": self._rewrites}

    def _workaround(self, model_path: Path, options: LoadOptions) -> Path:
        """The model to hand to OpenCV: rewritten when its importer would mis-pad it."""
        if self._format != FORMAT_TFLITE or not (options.options or {}).get("fix_dilated_padding", True):
            return model_path
        import tempfile

        from .tflite_rewrite import pad_dilated_convolutions

        self._tmp = tempfile.TemporaryDirectory(prefix="edgefarm-opencv-")
        rewritten = Path(self._tmp.name) / "model.tflite"
        self._rewrites = pad_dilated_convolutions(model_path, rewritten)
        return rewritten if self._rewrites else model_path

    def _read(self, cv2: Any, model_path: Path, engine: str) -> Any:
        reader = cv2.dnn.readNetFromTFLite if self._format == FORMAT_TFLITE else cv2.dnn.readNetFromONNX
        if hasattr(cv2.dnn, "ENGINE_AUTO"):  # OpenCV 5 has two engines
            net = reader(str(model_path), _constant(cv2, "ENGINE_", engine))
        else:
            net = reader(str(model_path))
        if net.empty():
            raise ModelLoadError(f"cannot load model {model_path.name}: OpenCV read an empty network")
        return net

    def _tensor_infos(self, model_path: Path) -> tuple:
        """(inputs in NCHW, outputs as the model declares them), outputs in forward order."""
        if self._format == FORMAT_ONNX:
            inputs, declared = _onnx_tensor_infos(model_path)
        else:
            info = read_tflite_info(model_path)
            inputs = [TensorInfo(r["name"], _nhwc_to_nchw(r["shape"]), r["dtype"],
                                 _quantization(r["quantization"])) for r in info["inputs"]]
            declared = [TensorInfo(r["name"], tuple(r["shape"]), r["dtype"],
                                   _quantization(r["quantization"])) for r in info["outputs"]]
        by_name = {t.name: t for t in declared}
        if by_name and set(self._forward_names) <= set(by_name):
            self._forward_names = [t.name for t in declared if t.name in self._forward_names]
        outputs = [by_name.get(name, TensorInfo(name, (), "float32")) for name in self._forward_names]
        return inputs, outputs

    def set_inputs(self, arrays: Sequence[Any]) -> None:
        """NCHW float32 arrays, one per input, in ``inputs`` order."""
        self._check_input_count(arrays)
        for array, info in zip(arrays, self._inputs):
            blob = np.ascontiguousarray(np.asarray(array), dtype=np.float32)
            known = bool(info.shape) and all(d > 0 for d in info.shape)
            if known and tuple(blob.shape) != tuple(info.shape):
                raise ValueError(f"input {info.name!r} expects an NCHW array of shape {list(info.shape)}, "
                                 f"got {list(blob.shape)}")
            self._net.setInput(blob, info.name)

    def invoke(self) -> None:
        self._raw = self._net.forward(self._forward_names)

    def layer_times(self) -> List[tuple]:
        """OpenCV's own per-layer times of the last ``invoke()`` (``Net.getPerfProfile``):
        ``(layer name, OpenCV layer type, ms)`` in the network's layer order."""
        cv2 = _cv2()
        _, timings = self._net.getPerfProfile()
        names = list(self._net.getLayerNames())
        ticks = [float(t) for t in np.asarray(timings).reshape(-1)]
        scale = 1e3 / cv2.getTickFrequency()
        return [(name, str(self._net.getLayer(name).type), tick * scale)
                for name, tick in zip(names, ticks)]

    def get_outputs(self) -> List[np.ndarray]:
        """Outputs in ``outputs`` order, 4-D ones transposed from OpenCV's NCHW to the
        model's declared NHWC shape when that is what it declares."""
        return [_as_declared(np.asarray(raw), info) for raw, info in zip(self._raw, self._outputs)]

    def describe(self) -> Dict[str, Any]:
        return dict(self._describe)

    def close(self) -> None:
        self._net, self._raw = None, ()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _short_message(exc: Exception) -> str:
    """The reason in a cv2.error ("OpenCV(5.0.0) file.cpp:142: error: (-2:...) REASON in function ...")."""
    text = " ".join(str(exc).split())
    match = re.search(r"error: \(-?\d+:[^)]*\) (.*?)(?: in function '[^']*')?$", text)
    return match.group(1) if match else text


def _as_declared(raw: np.ndarray, info: TensorInfo) -> np.ndarray:
    expected = tuple(info.shape)
    if raw.ndim == 4 and tuple(raw.shape) != expected:
        channels_last = raw.transpose(0, 2, 3, 1)
        if tuple(channels_last.shape) == expected:
            return np.ascontiguousarray(channels_last)
    return raw.copy()
