"""``.tflite`` to ``.onnx``, ahead of time, with ``tf2onnx`` (Apache-2.0, maintained
by the ONNX project), so that a TFLite model can be benchmarked on ``onnxruntime``.

tf2onnx imports TensorFlow, so this needs the ``edgefarm[tools-tf]`` extra; without it
``tflite_to_onnx`` raises ToolError with the install hint. The ONNX graph keeps the
TFLite model's tensor names and its NHWC input (tf2onnx folds the layout transposes),
so the agent feeds it the same pre-processed tensor as the ``.tflite`` file. The
result is written with a lineage sidecar naming the ``.tflite`` as its parent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

from edgefarm.shared.formats.tflite_objects import write_atomically

from .common import ToolError
from .lineage import write_sidecar

OPSET = 13
PACKAGES = ("tf2onnx", "tensorflow", "onnx")
MISSING = "converting to ONNX needs tf2onnx and TensorFlow: pip install 'edgefarm[tools-tf]'"


def tflite_to_onnx(source: Any, dest: Any, opset: int = OPSET) -> Dict[str, Any]:
    """Write ``dest`` (ONNX, float as the source) and its sidecar; returns a report."""
    source, dest = Path(source), Path(dest)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from tf2onnx import convert
    except ImportError as exc:
        raise ToolError(f"{MISSING} ({exc})")
    try:
        proto, _ = convert.from_tflite(str(source), opset=opset)
    except Exception as exc:  # tf2onnx raises plain exceptions for unsupported graphs
        raise ToolError(f"tf2onnx could not convert {source.name}: {exc}")
    write_atomically(dest, proto.SerializeToString())
    recipe = {"method": "convert", "from": "tflite", "to": "onnx", "opset": opset}
    sidecar = write_sidecar(dest, source, recipe, {"quantization": "none", "label": "fp32-onnx"}, PACKAGES)
    return {"model": str(dest), "parent": str(source), "size_bytes": dest.stat().st_size,
            "lineage_file": str(sidecar)}
