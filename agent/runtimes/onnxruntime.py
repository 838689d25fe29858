"""The ONNX Runtime runtime: an ``.onnx`` model in an ``onnxruntime.InferenceSession``.

Accelerators are the execution providers the installed build offers
(``onnxruntime.get_available_providers()``), named without their
"ExecutionProvider" suffix and lowercased, except "CPUExecutionProvider" ->
"cpu" and "CUDAExecutionProvider" -> "gpu"; so the CPU wheel reports ["cpu"]
and onnxruntime-gpu ["cpu", "gpu", "tensorrt"]. "AzureExecutionProvider"
(remote endpoints, shipped in the CPU wheel) is not an accelerator and is left
out. A session for an accelerator lists its provider first and the CPU provider
after it, as ONNX Runtime expects, so nodes the provider lacks fall back to the
CPU; ``describe()`` reports the providers the session actually uses.

Threads: ``threads`` sets ``SessionOptions.intra_op_num_threads``; inter-op
parallelism is 1 (sequential execution), which is what single-stream latency
wants. Option ``graph_optimization`` ("disable", "basic", "extended", "all";
default "all") sets the graph optimisation level.

Layout: ONNX image models are usually NCHW. ``layout`` is "nchw" when the first
input is 4-D with 1 or 3 at axis 1 (channels first), else "nhwc"; inputs and
outputs are presented as the model declares them (symbolic dimensions as -1).
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edgefarm.shared.contract.rules import RUNTIME_FORMATS
from edgefarm.shared.formats import FORMAT_ONNX, ModelFormatError, detect_format

from .base import LoadOptions, ModelLoadError, Runtime, RuntimeUnavailable, TensorInfo

_NAMED = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "gpu"}
_NOT_ACCELERATORS = ("AzureExecutionProvider",)
_SUFFIX = "ExecutionProvider"
_ELEMENT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(uint16)": "uint16",
    "tensor(int16)": "int16", "tensor(int32)": "int32", "tensor(int64)": "int64",
    "tensor(uint32)": "uint32", "tensor(uint64)": "uint64", "tensor(bool)": "bool",
}


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeUnavailable(f"onnxruntime is not installed: {exc}") from exc
    return onnxruntime


def accelerator_name(provider: str) -> str:
    """"CPUExecutionProvider" -> "cpu", "CUDAExecutionProvider" -> "gpu", others lowercased."""
    if provider in _NAMED:
        return _NAMED[provider]
    base = provider[:-len(_SUFFIX)] if provider.endswith(_SUFFIX) else provider
    return base.lower()


def provider_map(providers: Sequence[str]) -> Dict[str, str]:
    """accelerator name -> provider, for the providers that count as accelerators."""
    found = {"cpu": "CPUExecutionProvider"}
    for provider in providers:
        if provider not in _NOT_ACCELERATORS:
            found.setdefault(accelerator_name(provider), provider)
    return found


def _tensor_info(node: Any) -> TensorInfo:
    shape = tuple(int(d) if isinstance(d, int) and d > 0 else -1 for d in (node.shape or ()))
    return TensorInfo(str(node.name), shape, _ELEMENT_TYPES.get(str(node.type), "float32"))


def layout_of(inputs: Sequence[TensorInfo]) -> str:
    """"nchw" when the first input is 4-D with 1 or 3 channels at axis 1, else "nhwc"."""
    if inputs and len(inputs[0].shape) == 4 and inputs[0].shape[1] in (1, 3):
        return "nchw"
    return "nhwc"


def _fits(shape: Sequence[int], declared: Sequence[int]) -> bool:
    return len(shape) == len(declared) and all(d < 0 or d == s for s, d in zip(shape, declared))


class ONNXRuntime(Runtime):
    name = "onnxruntime"
    layout = "nchw"
    formats = RUNTIME_FORMATS["onnxruntime"]

    def __init__(self) -> None:
        self._session: Any = None
        self._inputs: List[TensorInfo] = []
        self._outputs: List[TensorInfo] = []
        self._feed: Dict[str, np.ndarray] = {}
        self._result: List[np.ndarray] = []
        self._describe: Dict[str, Any] = {}
        self._model_path: Optional[Path] = None
        self._load_options = LoadOptions()

    @classmethod
    def version(cls) -> Optional[str]:
        return "onnxruntime " + _ort().__version__

    @classmethod
    def accelerators(cls) -> List[str]:
        return list(provider_map(_ort().get_available_providers()))

    def load(self, model_path: Path, options: LoadOptions) -> None:
        ort = _ort()
        model_path = Path(model_path)
        providers = self._providers(ort, options.accelerator)
        try:
            if detect_format(model_path) != FORMAT_ONNX:
                raise ModelLoadError(f"cannot load model {model_path.name}: onnxruntime reads .onnx files")
            self._session = ort.InferenceSession(str(model_path), self._session_options(ort, options),
                                                 providers=providers)
        except ModelLoadError:
            raise
        except (ModelFormatError, OSError) as exc:
            raise ModelLoadError(f"cannot load model: {exc}") from exc
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / ...
            raise ModelLoadError(f"cannot load model {model_path.name}: {exc}") from exc
        self._model_path, self._load_options = model_path, options
        self._inputs = [_tensor_info(node) for node in self._session.get_inputs()]
        self._outputs = [_tensor_info(node) for node in self._session.get_outputs()]
        self.layout = layout_of(self._inputs)
        self._describe = {"threads": options.threads, "delegate": None,
                          "providers": list(self._session.get_providers())}

    @staticmethod
    def _providers(ort: Any, accelerator: str) -> List[str]:
        available = provider_map(ort.get_available_providers())
        if accelerator not in available:
            raise RuntimeUnavailable(f"this onnxruntime build has no accelerator {accelerator!r} "
                                     f"(it has: {', '.join(available)})")
        chosen = available[accelerator]
        return [chosen] if chosen == "CPUExecutionProvider" else [chosen, "CPUExecutionProvider"]

    @staticmethod
    def _session_options(ort: Any, options: LoadOptions) -> Any:
        session_options = ort.SessionOptions()
        if options.threads:
            session_options.intra_op_num_threads = int(options.threads)
        session_options.inter_op_num_threads = 1
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        level = str((options.options or {}).get("graph_optimization", "all")).lower()
        levels = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                  "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
        if level not in levels:
            raise RuntimeUnavailable(f"unknown graph_optimization {level!r}; known: {', '.join(levels)}")
        session_options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, levels[level])
        return session_options

    def profiling_session(self, prefix: str, optimized_path: Optional[str] = None) -> Any:
        """A second session of the loaded model with the same options and providers and
        ONNX Runtime's profiler on (its JSON trace file starts with ``prefix``), for the
        per-layer pass; ``optimized_path`` also writes the graph as optimized, that is as it
        runs. Its ``run`` takes this runtime's current feed."""
        ort = _ort()
        options = self._session_options(ort, self._load_options)
        options.enable_profiling = True
        options.profile_file_prefix = prefix
        if optimized_path:
            options.optimized_model_filepath = optimized_path
        return ort.InferenceSession(str(self._model_path), options, providers=self._session.get_providers())

    @property
    def feed(self) -> Dict[str, np.ndarray]:
        """The inputs the last ``set_inputs`` gave, by input name."""
        return dict(self._feed)

    def set_inputs(self, arrays: Sequence[Any]) -> None:
        self._check_input_count(arrays)
        feed = {}
        for array, info in zip(arrays, self._inputs):
            value = np.asarray(array)
            if not _fits(value.shape, info.shape):
                raise ValueError(f"input {info.name!r} expects shape {list(info.shape)}, "
                                 f"got {list(value.shape)}")
            expected = np.dtype(info.dtype)
            if value.dtype != expected:
                if not np.can_cast(value.dtype, expected, casting="same_kind"):
                    raise ValueError(f"input {info.name!r} expects {info.dtype} data, "
                                     f"got {value.dtype.name}")
                value = value.astype(expected)
            feed[info.name] = np.ascontiguousarray(value)
        self._feed = feed

    def invoke(self) -> None:
        self._result = self._session.run(None, self._feed)

    def get_outputs(self) -> List[np.ndarray]:
        return [np.asarray(value) for value in self._result]

    def describe(self) -> Dict[str, Any]:
        return dict(self._describe)

    def close(self) -> None:
        self._session, self._feed, self._result = None, {}, []
