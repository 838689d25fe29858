"""Model files, judged by their content: which format a file is and what it declares.

* ``detect``: ``detect_format`` ("tflite", "onnx" or "dlc") and ``ModelFormatError``;
* ``tflite``: a hand-written, bounds-checked reader of the TFLite flatbuffer;
* ``onnx``: graph inputs and outputs of an ONNX model, by a small protobuf walk;
* ``tflite_objects``: the whole ``.tflite`` as mutable objects (LiteRT's generated
  schema) and back to bytes, for tools and graph rewrites;
* ``tflite_builder``: small float32 MLPs written as ``.tflite`` from numpy weights.

The names below are stdlib-only; ``tflite_objects`` and ``tflite_builder`` need
flatbuffers (and LiteRT for the schema) and are imported by module path.
"""

from .detect import FORMAT_DLC, FORMAT_ONNX, FORMAT_TFLITE, ModelFormatError, detect_format
from .onnx import read_onnx_info
from .tflite import iter_tflite_tensors, read_tflite_info, tflite_constant_arrays

__all__ = ["FORMAT_DLC", "FORMAT_ONNX", "FORMAT_TFLITE", "ModelFormatError", "detect_format",
           "iter_tflite_tensors", "read_onnx_info", "read_tflite_info", "tflite_constant_arrays"]
