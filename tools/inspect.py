"""``edgefarm tools inspect``: what a ``.tflite`` file holds, read without an
interpreter: operators, tensors and their quantization, parameter count,
weight sparsity per layer and overall, file size, and which kind of
quantization the model as a whole carries.

A *weight* is a constant tensor of at least two dimensions holding floats or
8/16-bit integers (biases, shapes and paddings are not weights). Its sparsity
is the fraction of exact zeros: ``0.0`` for floats, the zero point for
quantized integers. A weight stored in TFLite's sparse encoding (what the
converter writes for pruned models) counts the values it does not store as
zeros.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import numpy as np

from edgefarm.shared.contract.digests import sha256_file
from edgefarm.shared.formats import iter_tflite_tensors, read_tflite_info, tflite_constant_arrays

WEIGHT_DTYPES = ("float32", "float16", "int8", "uint8", "int16")


def quantization_scheme(quantization: Optional[dict]) -> Dict[str, Any]:
    """``{"scheme": "none" | "per-tensor" | "per-channel", "scales": n, ...}``."""
    if not quantization or not quantization.get("scale"):
        return {"scheme": "none", "scales": 0}
    scales, zero_points = quantization["scale"], quantization.get("zero_point") or [0]
    return {"scheme": "per-tensor" if len(scales) == 1 else "per-channel", "scales": len(scales),
            "scale": float(scales[0]), "zero_point": int(zero_points[0])}


def _zero_value(quantization: Optional[dict]) -> int:
    """The stored value meaning 0.0: the zero point when all channels share one."""
    zero_points = (quantization or {}).get("zero_point") or [0]
    return int(zero_points[0]) if len(set(zero_points)) == 1 else 0


def weight_layer(name: str, dtype: str, shape: List[int], data: Any,
                 quantization: Optional[dict]) -> Dict[str, Any]:
    """Sparsity and storage of one weight tensor."""
    values = np.frombuffer(data, dtype=np.dtype(dtype))
    dense = int(np.prod(shape)) if shape else 1
    stored_zeros = int(np.count_nonzero(values == _zero_value(quantization)))
    zeros = dense - values.size + stored_zeros  # values a sparse encoding leaves out are zeros
    return {
        "name": name, "dtype": dtype, "shape": list(shape), "elements": dense, "zeros": zeros,
        "sparsity": zeros / dense if dense else 0.0, "bytes": len(data),
        "encoding": "sparse" if values.size < dense else "dense",
        "quantization": quantization_scheme(quantization),
    }


def weight_layers(path: Any, quantizations: Dict[str, Optional[dict]]) -> List[Dict[str, Any]]:
    layers = []
    for name, dtype, shape, data in tflite_constant_arrays(path):
        if dtype in WEIGHT_DTYPES and len(shape) >= 2:
            layers.append(weight_layer(name, dtype, shape, data, quantizations.get(name)))
    return layers


def tensor_records(path: Any) -> List[Dict[str, Any]]:
    return [{
        "subgraph": t["subgraph"], "index": t["index"], "name": t["name"], "shape": t["shape"],
        "dtype": t["dtype"], "constant": t["is_constant"], "bytes": t["data_size"],
        "quantization": quantization_scheme(t["quantization"]), "_raw": t["quantization"],
    } for t in iter_tflite_tensors(path)]


def model_quantization(inputs: List[dict], operators: Dict[str, int], layers: List[dict]) -> str:
    """The ``edgefarm.shared.contract.enums.Quantization`` value the model's tensors show."""
    weight_types = {layer["dtype"] for layer in layers}
    input_types = {tensor["dtype"] for tensor in inputs}
    if input_types & {"int8", "uint8"}:
        return "int8"
    if "int16" in input_types:
        return "int16x8"
    if "float16" in weight_types:
        return "fp16"
    if weight_types & {"int8", "uint8"}:
        return "weight_only" if operators.get("DEQUANTIZE") else "dynamic"
    return "none"


def summarize_weights(layers: List[dict]) -> Dict[str, Any]:
    elements = sum(layer["elements"] for layer in layers)
    zeros = sum(layer["zeros"] for layer in layers)
    return {"tensors": len(layers), "elements": elements, "zeros": zeros,
            "sparsity": zeros / elements if elements else 0.0,
            "bytes": sum(layer["bytes"] for layer in layers)}


def inspect_model(path: Any) -> Dict[str, Any]:
    """Everything above as one JSON-ready dict (see the module docstring)."""
    info = read_tflite_info(path)
    tensors = tensor_records(path)
    raw: Dict[str, Optional[dict]] = {}
    for tensor in tensors:
        raw.setdefault(tensor["name"], tensor.pop("_raw"))
    layers = weight_layers(path, raw)
    dtypes: Dict[str, int] = {}
    for tensor in tensors:
        dtypes[tensor["dtype"]] = dtypes.get(tensor["dtype"], 0) + 1
    return {
        "file": os.fspath(path), "format": "tflite", "size_bytes": os.path.getsize(path),
        "sha256": sha256_file(path),
        "quantization": model_quantization(info["inputs"], info["operators"], layers),
        "inputs": info["inputs"], "outputs": info["outputs"],
        "operators": dict(sorted(info["operators"].items(), key=lambda kv: (-kv[1], kv[0]))),
        "operator_count": sum(info["operators"].values()), "tensor_count": len(tensors),
        "tensor_dtypes": dtypes, "parameter_count": info["parameter_count"],
        "weights": summarize_weights(layers), "layers": layers, "tensors": tensors,
    }
