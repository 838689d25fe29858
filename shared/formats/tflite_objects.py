"""The whole ``.tflite`` file as mutable Python objects and back: the flatbuffers
object API (``ModelT`` and friends) that LiteRT generates from TensorFlow's
``schema.fbs``, for the tools that rewrite models (quantize, prune) and the
agent's graph rewrites.

This module owns the one lookup of that generated schema (``schema_module``):
LiteRT (``ai_edge_litert``), else ``tflite_runtime``, else TensorFlow.
"""

import os
from pathlib import Path
from typing import Any, Optional, Tuple

from .detect import ModelFormatError

_SCHEMA_MODULES = ("ai_edge_litert.schema_py_generated", "tflite_runtime.schema_py_generated",
                   "tensorflow.lite.python.schema_py_generated")


class SchemaUnavailable(ImportError):
    """No installed package ships LiteRT's generated TFLite schema."""


def find_schema_module() -> Optional[Any]:
    """LiteRT's generated TFLite schema module, or None when no package ships it."""
    for name in _SCHEMA_MODULES:
        try:
            return __import__(name, fromlist=["ModelT"])
        except ImportError:
            continue
    return None


def schema_module() -> Any:
    """The generated schema module; raises SchemaUnavailable when none is installed."""
    module = find_schema_module()
    if module is None:
        raise SchemaUnavailable("rewriting .tflite files needs LiteRT: pip install 'edgefarm[tools]' "
                                "(or tflite-runtime, or tensorflow)")
    return module


def read_model_object(path: Any) -> Tuple[Any, Any]:
    """``(schema module, ModelT)`` of the ``.tflite`` file: the whole model as
    mutable Python objects (buffers as numpy uint8 arrays). Buffers stored after
    the flatbuffer (``offset > 1``, as ai-edge-quantizer writes them) are read
    in, so that ``model_object_bytes`` writes a self-contained file."""
    import numpy as np

    schema = schema_module()
    data = Path(path).read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFormatError(f"{path} is not a TFLite model (no TFL3 identifier)")
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    for buffer in model.buffers or []:
        if buffer.offset > 1:
            if buffer.offset + buffer.size > len(data):
                raise ModelFormatError(f"{path}: a buffer lies outside the file (truncated?)")
            chunk = data[buffer.offset:buffer.offset + buffer.size]
            buffer.data = np.frombuffer(chunk, dtype=np.uint8)
            buffer.offset, buffer.size = 0, 0
    return schema, model


def model_object_bytes(model: Any) -> bytes:
    """The ``ModelT`` serialised as a ``.tflite`` file."""
    import flatbuffers

    builder = flatbuffers.Builder(1024 * 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_atomically(path: Any, data: bytes) -> None:
    """Write ``data`` beside ``path`` and rename it into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)
