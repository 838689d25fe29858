"""``edgefarm tools quantize``: post-training quantization of a ``.tflite``
model with Google's ``ai-edge-quantizer`` (no TensorFlow needed).

``MODES`` is the registry of what can be asked for, keyed by the name given
on the command line; each mode names its ai-edge-quantizer recipe, the
``edgefarm.shared.contract.enums.Quantization`` value the result carries, and whether it needs
calibration samples. Calibration samples come from a real dataset through the
agent's readers and pre-processing (``edgefarm.tools.common.dataset_inputs``), never
from random data. ai-edge-quantizer runs calibration through a model
signature; a model without one (older converters wrote none) is given a
``serving_default`` signature over its inputs and outputs first, which does
not change what it computes.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edgefarm.shared.formats.tflite_objects import model_object_bytes, write_atomically

from .common import ToolError, dataset_inputs, read_model_object
from .lineage import write_sidecar

SIGNATURE_KEY = "serving_default"
#: Operators whose constant weights fp16 casting stores as float16.
FP16_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONV_2D_TRANSPOSE", "EMBEDDING_LOOKUP")
PACKAGES = ("ai-edge-quantizer", "ai-edge-litert")


@dataclass(frozen=True)
class QuantMode:
    recipe: str  # name of the ai_edge_quantizer.recipe function, or "fp16"
    quantization: str  # edgefarm.shared.contract.enums.Quantization value of the result
    calibrated: bool
    about: str


MODES: Dict[str, QuantMode] = {
    "dynamic": QuantMode("dynamic_legacy_wi8_afp32", "dynamic", False,
                         "int8 weights (per channel) in layers of 1024+ weights, as the TFLite "
                         "converter's dynamic range quantization; activations quantized at run time"),
    "dynamic-all": QuantMode("dynamic_wi8_afp32", "dynamic", False,
                             "int8 weights in every layer, activations quantized at run time"),
    "fp16": QuantMode("fp16", "fp16", False, "float16 weights, float32 compute"),
    "int8": QuantMode("static_wi8_ai8", "int8", True,
                      "int8 weights and activations (full integer; the ops producing the outputs "
                      "stay float), needs calibration data"),
    "int16x8": QuantMode("static_wi8_ai16", "int16x8", True,
                         "int8 weights, int16 activations, needs calibration data"),
    "weight-only-int8": QuantMode("weight_only_wi8_afp32", "weight_only", False,
                                  "int8 weights dequantized to float before each op"),
    "weight-only-int4": QuantMode("weight_only_wi4_afp32", "weight_only", False,
                                  "int4 weights dequantized to float before each op"),
    "dynamic-int4": QuantMode("dynamic_wi4_afp32", "dynamic", False,
                              "int4 weights, float activations quantized at run time"),
}


@dataclass
class Calibration:
    """Where calibration samples come from: a dataset folder or archive."""

    path: Path
    layout: str
    split: Optional[str] = None
    samples: int = 100
    preprocessing: Any = None  # a contract Preprocessing; None: the agent's default


def _quantizer_modules() -> Any:
    try:
        from ai_edge_quantizer import qtyping, quantizer, recipe
    except ImportError as exc:
        raise ToolError(f"quantizing needs ai-edge-quantizer: pip install 'edgefarm[tools]' ({exc})")
    return quantizer, recipe, qtyping


def _fp16_config(qt: Any, quantizer: Any, qtyping: Any) -> None:
    config = qtyping.OpQuantizationConfig(
        weight_tensor_config=qtyping.TensorQuantizationConfig(
            num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
        compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True,
    )
    for op in FP16_OPS:
        qt.update_quantization_recipe(regex=".*", operation_name=getattr(qtyping.TFLOperationName, op),
                                      op_config=config,
                                      algorithm_key=quantizer.AlgorithmName.FLOAT_CASTING)


def with_signature(source: Path, dest: Path) -> Path:
    """``source`` when it has a signature, else a copy at ``dest`` given one."""
    schema, model = read_model_object(source)
    if model.signatureDefs:
        return source
    graph = model.subgraphs[0]

    def tensor_map(index: int) -> Any:
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = graph.tensors[index].name, int(index)
        return entry

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = SIGNATURE_KEY.encode(), 0
    signature.inputs = [tensor_map(i) for i in graph.inputs]
    signature.outputs = [tensor_map(i) for i in graph.outputs]
    model.signatureDefs = [signature]
    write_atomically(dest, model_object_bytes(model))
    return dest


def _output_ops(model_path: Path) -> List[Tuple[str, str]]:
    """``(operator name, output tensor name)`` of the ops producing graph outputs."""
    schema, model = read_model_object(model_path)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    found = []
    for op in graph.operators:
        for index in op.outputs:
            if index in graph.outputs:
                code = model.operatorCodes[op.opcodeIndex]
                kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
                found.append((kind, graph.tensors[index].name.decode()))
    return found


def _float_output_ops(qt: Any, model_path: Path, quantizer: Any, qtyping: Any) -> None:
    """The ops that produce the model's outputs compute in float (after a
    DEQUANTIZE), as with the TFLite converter's float output interface: an argmax
    over int8 logits would tie wherever two classes round to the same step."""
    known = {op.value for op in qtyping.TFLOperationName}
    for kind, tensor in _output_ops(model_path):
        if kind in known:
            qt.update_quantization_recipe(regex=f"(^|;){re.escape(tensor)};",  # an op's scope: "out1;out2;"
                                          operation_name=qtyping.TFLOperationName(kind),
                                          algorithm_key=quantizer.AlgorithmName.NO_QUANTIZE)


def _drop_output_quantize(path: Path) -> None:
    """Remove a QUANTIZE that only turns a float graph output back into integers."""
    schema, model = read_model_object(path)
    graph, changed = model.subgraphs[0], {}
    kept = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        is_quantize = max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.QUANTIZE
        if is_quantize and op.outputs[0] in graph.outputs and graph.tensors[op.inputs[0]].type == 0:
            changed[int(op.outputs[0])] = int(op.inputs[0])
            continue
        kept.append(op)
    if not changed:
        return
    graph.operators = kept
    graph.outputs = [changed.get(int(i), int(i)) for i in graph.outputs]
    for signature in model.signatureDefs or []:
        for entry in signature.outputs or []:
            entry.tensorIndex = changed.get(int(entry.tensorIndex), int(entry.tensorIndex))
    write_atomically(path, model_object_bytes(model))


def calibration_data(model_path: Path, calibration: Calibration) -> Dict[str, List[dict]]:
    """``{signature: [{input name: tensor}, ...]}`` from the dataset's samples."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from edgefarm.shared.datasets.preprocess import InputSpec

    from .common import dataset_folder

    interpreter = Interpreter(model_path=str(model_path))
    signature = interpreter.get_signature_list()
    key = next(iter(signature))
    runner = interpreter.get_signature_runner(key)
    details = runner.get_input_details()
    if len(details) != 1:
        raise ToolError(f"calibration feeds one image input; the model has {len(details)} inputs")
    name, detail = next(iter(details.items()))
    shape = [1] + [int(d) for d in detail["shape"][1:]]
    with dataset_folder(calibration.path, calibration.layout) as root:
        spec = InputSpec(tuple(shape), np.dtype(detail["dtype"]).name, "nhwc")
        inputs = dataset_inputs(root, calibration.layout, calibration.split, calibration.samples, spec,
                                calibration.preprocessing)
    return {key: [{name: tensor} for tensor in inputs.tensors]}


def quantize_model(source: Any, dest: Any, mode: str,
                   calibration: Optional[Calibration] = None) -> Dict[str, Any]:
    """Write the quantized model to ``dest`` and its lineage sidecar; returns a
    report (sizes, recipe, calibration sample count, sidecar path)."""
    if mode not in MODES:
        raise ToolError(f"unknown quantization mode {mode!r}; known: {', '.join(MODES)}")
    spec, source, dest = MODES[mode], Path(source), Path(dest)
    if spec.calibrated and calibration is None:
        raise ToolError(f"mode {mode} needs calibration samples: give --dataset PATH and --layout")
    quantizer, recipe, qtyping = _quantizer_modules()
    with tempfile.TemporaryDirectory(prefix="edgefarm-quantize-") as tmp:
        model_path = with_signature(source, Path(tmp) / "signed.tflite") if spec.calibrated else source
        qt = quantizer.Quantizer(str(model_path))
        if spec.recipe == "fp16":
            _fp16_config(qt, quantizer, qtyping)
        else:
            qt.load_quantization_recipe(getattr(recipe, spec.recipe)())
        if spec.calibrated:
            _float_output_ops(qt, model_path, quantizer, qtyping)
        data = calibration_data(model_path, calibration) if spec.calibrated else None
        result = _run(qt, data)
        write_atomically(dest, bytes(result.quantized_model))
        if spec.calibrated:
            _drop_output_quantize(dest)
    return _report(source, dest, mode, spec, qt.get_quantization_recipe(), calibration, data)


def _run(qt: Any, data: Optional[Dict[str, List[dict]]]) -> Any:
    try:
        with warnings.catch_warnings():  # calibration keeps every tensor, on purpose
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
            calibrated = qt.calibrate(data, num_threads=2) if data is not None else None
            return qt.quantize(calibrated, enable_progress_bar=False, enable_progress_report=False)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ToolError(f"ai-edge-quantizer failed: {exc}")


def _report(source: Path, dest: Path, mode: str, spec: QuantMode, aeq_recipe: Any,
            calibration: Optional[Calibration], data: Optional[dict]) -> Dict[str, Any]:
    samples = sum(len(v) for v in data.values()) if data else 0
    recipe_record: Dict[str, Any] = {"method": "post-training quantization", "mode": mode,
                                     "ai_edge_quantizer_recipe": aeq_recipe}
    if calibration is not None and spec.calibrated:
        recipe_record["calibration"] = {"layout": calibration.layout, "split": calibration.split,
                                        "samples": samples}
    variant = {"quantization": spec.quantization, "label": mode}
    sidecar = write_sidecar(dest, source, recipe_record, variant, PACKAGES,
                            calibration.path if calibration is not None and spec.calibrated else None)
    size, base = dest.stat().st_size, source.stat().st_size
    return {"model": str(dest), "parent": str(source), "mode": mode, "quantization": spec.quantization,
            "size_bytes": size, "parent_size_bytes": base, "size_ratio": size / base,
            "calibration_samples": samples, "lineage_file": str(sidecar)}


def mode_help() -> str:
    return "; ".join(f"{name}: {mode.about}" for name, mode in MODES.items())
