"""The TFLite runtime: a ``.tflite`` model on the LiteRT / TFLite Python interpreter.

The interpreter comes from the first of these that imports (lazily, so that a
device without any of them can still run the agent):

1. ``ai_edge_litert.interpreter`` (the current LiteRT wheel: x86-64 and aarch64),
2. ``tflite_runtime.interpreter`` (the only wheel for 32-bit Arm; numpy < 2),
3. ``tensorflow.lite`` (full TensorFlow).

These builds apply XNNPACK as the default CPU delegate (op resolver ``AUTO``),
which is what benchmark_model uses too; ``options["xnnpack"] = False`` asks for
the plain builtin kernels instead. An external delegate (a GPU or NPU library
such as ``libQnnTFLiteDelegate.so``) is loaded from ``options["delegate"]``
with ``options["delegate_options"]``.
"""

from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from edgefarm.shared.contract.rules import RUNTIME_FORMATS

from .base import LoadOptions, ModelLoadError, Runtime, RuntimeUnavailable, TensorInfo


class _Backend(NamedTuple):
    """The interpreter module found: its Interpreter, load_delegate and where it came from."""

    interpreter_cls: Any
    load_delegate: Any
    op_resolver_type: Any  # OpResolverType enum, None when the build has none
    distribution: str


# (import path, distributions that may provide it), in order of preference.
_CANDIDATES = (
    ("ai_edge_litert.interpreter", ("ai-edge-litert", "ai-edge-litert-nightly")),
    ("tflite_runtime.interpreter", ("tflite-runtime", "tflite-runtime-nightly")),
    ("tensorflow.lite", ("tensorflow", "tensorflow-cpu", "tensorflow-aarch64", "tf-nightly")),
)


def _distribution_version(names: Sequence[str]) -> Optional[str]:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _find_backend() -> _Backend:
    """The first interpreter module that imports; RuntimeUnavailable when none does."""
    import importlib

    problems = []
    for module_name, distributions in _CANDIDATES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            problems.append(f"{module_name}: {exc}")
            continue
        if module_name == "tensorflow.lite":
            load_delegate = module.experimental.load_delegate
            resolver = getattr(module.experimental, "OpResolverType", None)
        else:
            load_delegate = module.load_delegate
            resolver = getattr(module, "OpResolverType", None)
        version = _distribution_version(distributions) or "unknown"
        label = f"{distributions[0]} {version}"
        return _Backend(module.Interpreter, load_delegate, resolver, label)
    raise RuntimeUnavailable("no TFLite interpreter is installed (" + "; ".join(problems) + ")")


def _tensor_info(detail: Dict[str, Any]) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    quantization = (float(scale), int(zero_point)) if scale else None
    return TensorInfo(
        name=str(detail["name"]),
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=np.dtype(detail["dtype"]).name,
        quantization=quantization,
    )


def _prepared_input(array: Any, info: TensorInfo) -> np.ndarray:
    """``array`` as the input's dtype; ValueError on a wrong shape or an unsafe cast."""
    value = np.asarray(array)
    if tuple(value.shape) != tuple(info.shape):
        raise ValueError(
            f"input {info.name!r} expects shape {list(info.shape)}, got {list(value.shape)}"
        )
    expected = np.dtype(info.dtype)
    if value.dtype != expected:
        if not np.can_cast(value.dtype, expected, casting="same_kind"):
            raise ValueError(f"input {info.name!r} expects {info.dtype} data, got {value.dtype.name}")
        value = value.astype(expected)
    return np.ascontiguousarray(value)


class TFLiteRuntime(Runtime):
    name = "tflite"
    layout = "nhwc"
    formats = RUNTIME_FORMATS["tflite"]

    def __init__(self) -> None:
        self._interpreter: Any = None
        self._inputs: List[TensorInfo] = []
        self._outputs: List[TensorInfo] = []
        self._input_indices: List[int] = []
        self._output_indices: List[int] = []
        self._describe: Dict[str, Any] = {}

    @classmethod
    def version(cls) -> Optional[str]:
        """E.g. "ai-edge-litert 2.3.0": the distribution that provides the interpreter."""
        return _find_backend().distribution

    @classmethod
    def accelerators(cls, options: Optional[Dict[str, Any]] = None) -> List[str]:
        """"cpu", plus ``options["accelerator"]`` (default "gpu") when an external
        delegate library is configured in ``options["delegate"]``."""
        found = ["cpu"]
        if options and options.get("delegate"):
            extra = str(options.get("accelerator") or "gpu")
            if extra not in found:
                found.append(extra)
        return found

    def load(self, model_path: Path, options: LoadOptions) -> None:
        backend = _find_backend()
        settings = dict(options.options or {})
        delegate_path = settings.get("delegate")
        if options.accelerator != "cpu" and not delegate_path:
            raise RuntimeUnavailable(
                f"accelerator {options.accelerator!r} needs an external delegate: set the runtime "
                "option 'delegate' to the path of its library"
            )
        try:
            self._interpreter = self._new_interpreter(backend, Path(model_path), options.threads, settings)
            self._interpreter.allocate_tensors()
        except (RuntimeUnavailable, ModelLoadError):
            raise
        except Exception as exc:  # the interpreter raises ValueError, RuntimeError, OSError...
            raise ModelLoadError(f"cannot load model {Path(model_path).name}: {exc}") from exc
        input_details = self._interpreter.get_input_details()
        output_details = self._interpreter.get_output_details()
        self._inputs = [_tensor_info(d) for d in input_details]
        self._outputs = [_tensor_info(d) for d in output_details]
        self._input_indices = [int(d["index"]) for d in input_details]
        self._output_indices = [int(d["index"]) for d in output_details]
        default = "xnnpack" if settings.get("xnnpack", True) else "none"
        self._describe = {"delegate": str(delegate_path) if delegate_path else default,
                          "threads": options.threads, "interpreter": backend.distribution}

    @staticmethod
    def _new_interpreter(backend: _Backend, model_path: Path, threads: Optional[int],
                         settings: Dict[str, Any]) -> Any:
        if not model_path.is_file():
            raise ModelLoadError(f"cannot load model: {model_path} is not a file")
        kwargs: Dict[str, Any] = {"model_path": str(model_path), "num_threads": threads}
        if settings.get("delegate"):
            delegate = backend.load_delegate(str(settings["delegate"]), settings.get("delegate_options"))
            kwargs["experimental_delegates"] = [delegate]
        if not settings.get("xnnpack", True):
            if backend.op_resolver_type is None:
                raise RuntimeUnavailable(f"{backend.distribution} cannot turn XNNPACK off")
            kwargs["experimental_op_resolver_type"] = (
                backend.op_resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            )
        return backend.interpreter_cls(**kwargs)

    def set_inputs(self, arrays: Sequence[Any]) -> None:
        self._check_input_count(arrays)
        for array, info, index in zip(arrays, self._inputs, self._input_indices):
            self._interpreter.set_tensor(index, _prepared_input(array, info))

    def invoke(self) -> None:
        self._interpreter.invoke()

    def get_outputs(self) -> List[np.ndarray]:
        # get_tensor returns a copy, safe to keep across invocations.
        return [self._interpreter.get_tensor(index) for index in self._output_indices]

    def describe(self) -> Dict[str, Any]:
        return dict(self._describe)

    def close(self) -> None:
        self._interpreter = None
