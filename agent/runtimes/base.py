"""What every runtime offers a run: load a model, take inputs, invoke, give outputs.

This module owns ``Runtime`` (the base class, with its tensor lists and input-count
check), ``TensorInfo``, ``LoadOptions``, ``BatchRun`` and the runtime errors.

Timing is not a runtime's business: ``edgefarm.agent.clock`` owns every clock. A
runtime only declares, once, how it is measured (``Runtime.timing``):

* ``"invoke"`` (the default): the harness times each ``invoke()`` call; the run's
  evaluation is the pipelined loop of ``edgefarm.agent.evaluation.evaluate``.
* ``"batch"``: the runtime runs a whole batch in another process (``run_batch``,
  SNPE's ``snpe-net-run``), where only its own per-inference log can say how long
  each inference took; it reports those times in its ``BatchRun``.

``edgefarm.agent.strategy`` reads that attribute once per run and picks the latency
protocol, the evaluation, the outputs for output agreement and the peak RSS to match.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple


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
class BatchRun:
    """What ``Runtime.run_batch`` gives back: per sample its outputs (in ``outputs``
    order), per inference its time in ms as the runtime measured it, and the runtime's
    own init time in ms (None when it does not report one)."""

    outputs: List[List[Any]]
    latencies_ms: List[float]
    init_ms: Optional[float] = None
    details: Dict[str, Any] = field(default_factory=dict)
    cleanup: Optional[Callable[[], None]] = None  # frees files the outputs may map

    def close(self) -> None:
        if self.cleanup is not None:
            self.cleanup()
            self.cleanup = None


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
    #: Model formats (edgefarm.shared.contract.enums.ModelFormat values) this runtime reads.
    formats: Sequence[str] = ()
    #: How the run measures this runtime: "invoke" (the harness times each ``invoke()``)
    #: or "batch" (``run_batch`` in another process, timed by the runtime itself).
    timing = "invoke"

    @classmethod
    def version(cls) -> Optional[str]:
        """Version of the underlying library; raises RuntimeUnavailable when absent."""
        raise NotImplementedError

    @classmethod
    def accelerators(cls) -> List[str]:
        return ["cpu"]

    def load(self, model_path: Path, options: LoadOptions) -> None:
        raise NotImplementedError

    #: Filled by ``load``; subclasses set ``self._inputs`` / ``self._outputs``.
    _inputs: List[TensorInfo] = []
    _outputs: List[TensorInfo] = []

    @property
    def inputs(self) -> List[TensorInfo]:
        return list(self._inputs)

    @property
    def outputs(self) -> List[TensorInfo]:
        return list(self._outputs)

    def _check_input_count(self, arrays: Sequence[Any]) -> None:
        if len(arrays) != len(self._inputs):
            raise ValueError(f"the model takes {len(self._inputs)} inputs, got {len(arrays)}")

    def set_inputs(self, arrays: Sequence[Any]) -> None:
        raise NotImplementedError

    def invoke(self) -> None:
        raise NotImplementedError

    def get_outputs(self) -> List[Any]:
        raise NotImplementedError

    def run_batch(self, batch: Sequence[Sequence[Any]], keep_outputs: bool = True) -> BatchRun:
        """Optional: run every sample of ``batch`` (each a list of input arrays, as
        ``set_inputs`` takes them) in one go, timed by the runtime itself.
        ``keep_outputs=False`` may skip reading outputs back (latency runs)."""
        raise NotImplementedError(f"runtime {self.name} has no batch mode")

    def describe(self) -> Dict[str, Any]:
        """Extra facts for the result (delegate in use, backend, ...)."""
        return {}

    def close(self) -> None:
        pass
