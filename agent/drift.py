"""Per-layer numerical drift: how far each intermediate tensor of a run's model is from
the same tensor of its reference model (the reference output agreement uses), on the
same inputs, on the device.

Every intermediate tensor is kept by a dumper per model format (``DUMPERS``):

* ``.tflite``: LiteRT's interpreter with ``experimental_preserve_all_tensors`` and the
  kernels the run uses (XNNPACK unless the option ``xnnpack`` is false: with all tensors
  preserved XNNPACK takes each op on its own, so every op output is kept and the final
  outputs are the run's, bit for bit); every op's outputs in graph order, with the op's
  builtin name as op type.
* ``.onnx``: ONNX Runtime with every node output added to the graph's outputs and graph
  optimisation off, so each tensor keeps its name; nodes in graph (topological) order.

Values are dequantized (per tensor or per channel) to float. Tensors are matched in two
steps (``match_tensors``): first by name; then, for those a quantizer renamed or added, by
position: in graph order, the next unmatched reference tensor produced by the same op
type with as many elements, never before the reference tensor of the previous match.
Tensors left unmatched are counted (quantize/dequantize ops of an int8 model, for
instance). Per matched tensor: ``max_abs_error`` and ``psnr_db`` with output agreement's
own statistics (``edgefarm.agent.agreement.OutputStats``: peak ``max|reference|`` over
every compared value, MSE over all), so the final output's PSNR is output agreement's
figure for the same inputs. The inputs are the first ``samples`` of output agreement's
inputs (dataset images pre-processed per model, or the synthetic latency input).
"""

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgefarm.shared.contract.schemas import MAX_LAYER_ROWS, Drift, TensorDrift
from edgefarm.shared.formats import FORMAT_ONNX, FORMAT_TFLITE, detect_format

from .agreement import AgreementError, OutputStats, _image_inputs, align, convert_input
from .layers import NAME_CHARS

MATCHING = ("by name; else by position: in graph order, the next unmatched reference tensor made "
            "by the same op type with as many elements, after the previous match")


@dataclass
class TensorEntry:
    """One op output of a model: its name, the producing op's type and name, its order."""

    name: str
    op_type: str
    layer: Optional[str]
    position: int
    size: int


def _dequantized(value: np.ndarray, params: Dict[str, Any]) -> np.ndarray:
    scales = np.asarray(params.get("scales", []), np.float64)
    if value.dtype.kind not in "iu" or scales.size == 0:
        return value.astype(np.float64)
    zero_points = np.asarray(params.get("zero_points", [0] * scales.size), np.float64)
    if scales.size == 1:
        return (value.astype(np.float64) - zero_points[0]) * scales[0]
    shape = [1] * value.ndim
    shape[int(params.get("quantized_dimension", 0))] = scales.size
    return (value.astype(np.float64) - zero_points.reshape(shape)) * scales.reshape(shape)


class TFLiteDumper:
    """Every op output of a ``.tflite`` model after one invoke (LiteRT, builtin kernels)."""

    layout = "nhwc"

    def __init__(self, path: Path, threads: Optional[int], options: Optional[Dict[str, Any]] = None):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from .runtimes.tflite import _tensor_info

        xnnpack = (options or {}).get("xnnpack", True)
        resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        with warnings.catch_warnings():  # LiteRT warns that this is for debugging: it is
            warnings.simplefilter("ignore")
            self._interpreter = Interpreter(
                model_path=str(path), num_threads=threads, experimental_preserve_all_tensors=True,
                experimental_op_resolver_type=resolver)
        self._interpreter.allocate_tensors()
        details = self._interpreter.get_tensor_details()
        self._details = {int(d["index"]): d for d in details}
        self.inputs = [_tensor_info(d) for d in self._interpreter.get_input_details()]
        self._input_indices = [int(d["index"]) for d in self._interpreter.get_input_details()]
        self._by_name: Dict[str, int] = {}
        self.tensors: List[TensorEntry] = []
        for position, op in enumerate(self._interpreter._get_ops_details()):
            if op["op_name"] == "DELEGATE":  # a delegate's node: its outputs are its ops' own
                continue
            for index in op["outputs"]:
                detail = self._details.get(int(index))
                if detail is None or detail["name"] in self._by_name:
                    continue
                self._by_name[detail["name"]] = int(index)
                self.tensors.append(TensorEntry(detail["name"], str(op["op_name"]), None, position,
                                                int(np.prod(detail["shape"]))))

    def run(self, arrays: Sequence[np.ndarray]) -> None:
        for array, index in zip(arrays, self._input_indices):
            self._interpreter.set_tensor(index, np.ascontiguousarray(array))
        self._interpreter.invoke()

    def value(self, name: str) -> np.ndarray:
        index = self._by_name[name]
        params = self._details[index]["quantization_parameters"]
        return _dequantized(self._interpreter.get_tensor(index), params)


class ONNXDumper:
    """Every node output of an ``.onnx`` model after one run (ONNX Runtime, no graph optimisation)."""

    def __init__(self, path: Path, threads: Optional[int], options: Optional[Dict[str, Any]] = None):
        import onnx
        import onnxruntime as ort

        from .runtimes.onnxruntime import _tensor_info, layout_of

        model = onnx.load(str(path))
        declared = {o.name for o in model.graph.output}
        shapes = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
        self.tensors = []
        seen = set()
        for position, node in enumerate(model.graph.node):
            for name in node.output:
                if not name or name in seen:
                    continue
                seen.add(name)
                info = shapes.get(name)
                dims = [d.dim_value for d in info.type.tensor_type.shape.dim] if info is not None else []
                size = int(np.prod(dims)) if dims and all(d > 0 for d in dims) else -1
                self.tensors.append(TensorEntry(name, node.op_type, node.name or None, position, size))
                if name not in declared:
                    model.graph.output.append(onnx.ValueInfoProto(name=name))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
        self._session = ort.InferenceSession(model.SerializeToString(), options,
                                             providers=["CPUExecutionProvider"])
        self.inputs = [_tensor_info(node) for node in self._session.get_inputs()]
        self.layout = layout_of(self.inputs)
        self._names = [o.name for o in self._session.get_outputs()]
        self._values: Dict[str, np.ndarray] = {}

    def run(self, arrays: Sequence[np.ndarray]) -> None:
        feed = {info.name: np.asarray(a).astype(info.dtype) for info, a in zip(self.inputs, arrays)}
        self._values = dict(zip(self._names, self._session.run(self._names, feed)))

    def value(self, name: str) -> np.ndarray:
        return np.asarray(self._values[name]).astype(np.float64)


#: A dumper by model format.
DUMPERS = {FORMAT_TFLITE: TFLiteDumper, FORMAT_ONNX: ONNXDumper}


def open_dumper(path: Path, threads: Optional[int] = None, options: Optional[Dict[str, Any]] = None) -> Any:
    """The dumper of the model's format; ``options`` are the run's runtime options."""
    fmt = detect_format(Path(path))
    if fmt not in DUMPERS:
        raise AgreementError(f"per-layer drift reads .tflite and .onnx models, not {fmt}")
    return DUMPERS[fmt](Path(path), threads, options)


def _kind(op_type: str) -> str:
    return op_type.replace("_", "").lower()


def match_tensors(candidate: Sequence[TensorEntry], reference: Sequence[TensorEntry]
                  ) -> List[Tuple[TensorEntry, TensorEntry, str]]:
    """(candidate, reference, "name" | "position") pairs in the candidate's graph order."""
    by_name = {t.name: t for t in reference}
    taken = {t.name for t in candidate if t.name in by_name}
    order = {t.name: i for i, t in enumerate(reference)}
    pairs, after = [], 0
    for tensor in candidate:
        if tensor.name in taken:
            match, how = by_name[tensor.name], "name"
        else:
            match = next((r for r in reference[after:] if r.name not in taken
                          and _kind(r.op_type) == _kind(tensor.op_type)
                          and (r.size == tensor.size or -1 in (r.size, tensor.size))), None)
            how = "position"
            if match is None:
                continue
            taken.add(match.name)
        pairs.append((tensor, match, how))
        after = max(after, order[match.name] + 1)
    return pairs


def _inputs(dumper: Any, images: Optional[Sequence[np.ndarray]], synthetic: Optional[Sequence[Any]],
            synthetic_infos: Optional[Sequence[Any]], pre: Any, samples: int) -> List[List[np.ndarray]]:
    if images:
        return _image_inputs(dumper, list(images)[:samples], pre)
    if synthetic is not None and synthetic_infos is not None:
        return [[convert_input(a, s, t) for a, s, t in zip(synthetic, synthetic_infos, dumper.inputs)]]
    raise AgreementError("no inputs to compare")


def compute_drift(model_path: Path, reference_path: Path, images: Optional[Sequence[np.ndarray]],
                  synthetic: Optional[Sequence[Any]], synthetic_infos: Optional[Sequence[Any]], pre: Any,
                  samples: int, threads: Optional[int] = None, options: Optional[Dict[str, Any]] = None,
                  reference_options: Optional[Dict[str, Any]] = None) -> Drift:
    """The drift table of ``model_path`` against ``reference_path`` on the first ``samples``
    ``images`` (decoded; pre-processed per model), else the ``synthetic`` input list (as
    described by ``synthetic_infos``); ``options`` are each side's runtime options."""
    candidate = open_dumper(model_path, threads, options)
    reference = open_dumper(reference_path, threads, reference_options)
    pairs = match_tensors(candidate.tensors, reference.tensors)
    stats = [OutputStats(c.name, r.name) for c, r, _ in pairs]
    candidate_inputs = _inputs(candidate, images, synthetic, synthetic_infos, pre, samples)
    reference_inputs = _inputs(reference, images, synthetic, synthetic_infos, pre, samples)
    comparable = [True] * len(pairs)
    for ours, theirs in zip(candidate_inputs, reference_inputs):
        candidate.run(ours)
        reference.run(theirs)
        for i, (c, r, _) in enumerate(pairs):
            if not comparable[i]:
                continue
            expected = reference.value(r.name)
            try:
                stats[i].add(align(candidate.value(c.name), expected), expected)
            except AgreementError:
                comparable[i] = False
    rows = []
    for (c, r, how), stat, ok in zip(pairs, stats, comparable):
        if not ok:
            continue
        summary = stat.summary()
        rows.append(TensorDrift(name=c.name[:NAME_CHARS], reference_name=r.name[:NAME_CHARS],
                                op_type=c.op_type[:100], layer=c.layer[:NAME_CHARS] if c.layer else None,
                                position=c.position, matched_by=how, psnr_db=summary["psnr_db"],
                                max_abs_error=summary["max_abs_error"], identical=summary["identical"]))
    matched = {r.name for (_, r, _), ok in zip(pairs, comparable) if ok}
    return Drift(sample_count=len(candidate_inputs), matching=MATCHING, tensors=rows[:MAX_LAYER_ROWS],
                 unmatched=len(candidate.tensors) - len(rows),
                 reference_unmatched=sum(1 for t in reference.tensors if t.name not in matched))
