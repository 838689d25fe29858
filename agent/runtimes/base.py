"""What every runtime offers the harness: load a model, take inputs, invoke,
give outputs. Timing is not a runtime's business (the harness owns it)."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple


class RuntimeUnavailable(RuntimeError):
    """The runtime's library or tool is not installed on this device."""


class ModelLoadError(RuntimeError):
    """The model could not be loaded (corrupt file, unsupported op, wrong format)."""


@dataclass
class TensorInfo:
    name: str
    shape: Tuple[int, ...]
    dtype: str  # numpy dtype name: float32, uint8, int8, ...
    quantization: Optional[Tuple[float, int]] = None  # (scale, zero_point) when quantized

    def to_dict(self) -> Dict[str, Any]:
        quant = None
        if self.quantization is not None:
            quant = {"scale": [self.quantization[0]], "zero_point": [self.quantization[1]]}
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "quantization": quant}


@dataclass
class LoadOptions:
    accelerator: str = "cpu"
    threads: Optional[int] = None
    options: Dict[str, Any] = field(default_factory=dict)  # runtime-specific (delegate path, ...)


class Runtime:
    """Base class. Subclasses set ``name`` and implement the methods below.

    Life cycle: ``load(path, options)``; then any number of
    ``set_inputs(arrays)`` / ``invoke()`` / ``get_outputs()``; then ``close()``.
    """

    name = "base"
    #: "nhwc" or "nchw": the layout the runtime wants image inputs in.
    layout = "nhwc"
    #: Model formats (shared.enums.ModelFormat values) this runtime reads.
    formats: Sequence[str] = ()

    @classmethod
    def version(cls) -> Optional[str]:
        """Version of the underlying library; raises RuntimeUnavailable when absent."""
        raise NotImplementedError

    @classmethod
    def accelerators(cls) -> List[str]:
        return ["cpu"]

    def load(self, model_path: Path, options: LoadOptions) -> None:
        raise NotImplementedError

    @property
    def inputs(self) -> List[TensorInfo]:
        raise NotImplementedError

    @property
    def outputs(self) -> List[TensorInfo]:
        raise NotImplementedError

    def set_inputs(self, arrays: Sequence[Any]) -> None:
        raise NotImplementedError

    def invoke(self) -> None:
        raise NotImplementedError

    def get_outputs(self) -> List[Any]:
        raise NotImplementedError

    def describe(self) -> Dict[str, Any]:
        """Extra facts for the result (delegate in use, backend, ...)."""
        return {}

    def close(self) -> None:
        pass
