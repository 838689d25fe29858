"""What a TFLite model declares, read by hand from its flatbuffer (TensorFlow's
``schema.fbs``, file identifier ``TFL3``) on a read-only memory map of the file.

This module owns ``read_tflite_info(path)``, ``iter_tflite_tensors(path)`` and
``tflite_constant_arrays(path)``. Reading checks every offset against the file
size, so a damaged or truncated file raises ``ModelFormatError``, never
IndexError. Buffers stored outside the flatbuffer (models over 2 GB:
``Buffer.offset > 1``, counted from the start of the file) are supported.

Pure standard library; runs on Python 3.9 and later.
"""

import mmap
import os
import struct
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple

from .detect import ModelFormatError, tflite_header_problem

# ---------------------------------------------------------------------------
# Flatbuffer wire format
# ---------------------------------------------------------------------------

_I8, _U16, _I32, _U32, _I64, _U64, _F32 = (
    struct.Struct(fmt) for fmt in ("<b", "<H", "<i", "<I", "<q", "<Q", "<f")
)


class _FlatBufferReader:
    """Bounds-checked reads of flatbuffer tables, vectors and strings from a byte buffer.

    Tables are addressed by their position in the buffer and fields by their slot (the
    0-based declaration order in the schema). Every read is checked against the buffer
    size, so a damaged or truncated file raises ModelFormatError, never IndexError.
    """

    def __init__(self, data, label: str):
        self.data = data
        self.size = len(data)
        self.label = label

    def need(self, position: int, length: int) -> None:
        if position < 0 or position + length > self.size:
            raise ModelFormatError(
                f"{self.label}: damaged or truncated TFLite file: {length} bytes at offset "
                f"{position} lie outside the {self.size}-byte file"
            )

    def read(self, kind: struct.Struct, position: int):
        self.need(position, kind.size)
        return kind.unpack_from(self.data, position)[0]

    def root(self) -> int:
        return self.read(_U32, 0)

    def field(self, table: int, slot: int) -> Optional[int]:
        """Position of a field's value in ``table``, or None when the field is absent."""
        vtable = table - self.read(_I32, table)
        entry = 4 + 2 * slot
        if entry + 2 > self.read(_U16, vtable):
            return None
        offset = self.read(_U16, vtable + entry)
        return table + offset if offset else None

    def scalar(self, table: int, slot: int, kind: struct.Struct, default=0):
        position = self.field(table, slot)
        return default if position is None else self.read(kind, position)

    def _follow(self, position: int) -> int:
        return position + self.read(_U32, position)

    def table(self, table: int, slot: int) -> Optional[int]:
        position = self.field(table, slot)
        return None if position is None else self._follow(position)

    def vector(self, table: int, slot: int, element_size: int) -> Tuple[int, int]:
        """(position of the first element, element count) of a vector; (0, 0) if absent."""
        position = self.field(table, slot)
        if position is None:
            return 0, 0
        start = self._follow(position)
        count = self.read(_U32, start)
        self.need(start + 4, count * element_size)
        return start + 4, count

    def scalars(self, table: int, slot: int, kind: struct.Struct) -> list:
        start, count = self.vector(table, slot, kind.size)
        return list(struct.unpack_from(f"<{count}{kind.format[-1]}", self.data, start))

    def tables(self, table: int, slot: int) -> List[int]:
        start, count = self.vector(table, slot, 4)
        return [self._follow(start + 4 * i) for i in range(count)]

    def string(self, table: int, slot: int) -> Optional[str]:
        position = self.field(table, slot)
        if position is None:
            return None
        start = self._follow(position)
        length = self.read(_U32, start)
        self.need(start + 4, length)
        return bytes(self.data[start + 4:start + 4 + length]).decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# TFLite schema (tensorflow/compiler/mlir/lite/schema/schema.fbs)
# ---------------------------------------------------------------------------

# Field slots, in declaration order, of the tables read here.
_MODEL_VERSION, _MODEL_OPERATOR_CODES, _MODEL_SUBGRAPHS, _MODEL_DESCRIPTION, _MODEL_BUFFERS = (
    range(5)
)
_OPCODE_DEPRECATED_BUILTIN, _OPCODE_CUSTOM_CODE, _OPCODE_VERSION, _OPCODE_BUILTIN = range(4)
_SUBGRAPH_TENSORS, _SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS, _SUBGRAPH_OPERATORS = range(4)
_TENSOR_SHAPE, _TENSOR_TYPE, _TENSOR_BUFFER, _TENSOR_NAME, _TENSOR_QUANTIZATION = range(5)
_QUANTIZATION_SCALE, _QUANTIZATION_ZERO_POINT = 2, 3
_OPERATOR_OPCODE_INDEX = 0
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = range(3)

_CUSTOM_OPERATOR = 32

# TensorType enum, by value.
_TENSOR_TYPES = (
    "float32", "float16", "int32", "uint8", "int64", "string", "bool", "int16", "complex64",
    "int8", "float64", "complex128", "uint64", "resource", "variant", "uint32", "uint16",
    "int4", "bfloat16", "int2", "uint4", "float8_e4m3fn", "float8_e5m2",
)

# BuiltinOperator enum, by value (codes 0..209).
_BUILTIN_OPERATORS = (
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE",
    "DEQUANTIZE", "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP",
    "L2_NORMALIZATION", "L2_POOL_2D", "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC", "LSH_PROJECTION",
    "LSTM", "MAX_POOL_2D", "MUL", "RELU", "RELU_N1_TO_1", "RELU6", "RESHAPE", "RESIZE_BILINEAR",
    "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH", "CONCAT_EMBEDDINGS", "SKIP_GRAM", "CALL",
    "CUSTOM", "EMBEDDING_LOOKUP_SPARSE", "PAD", "UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER",
    "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "TRANSPOSE", "MEAN", "SUB", "DIV", "SQUEEZE",
    "UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE", "BIDIRECTIONAL_SEQUENCE_RNN", "EXP",
    "TOPK_V2", "SPLIT", "LOG_SOFTMAX", "DELEGATE", "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU",
    "MAXIMUM", "ARG_MAX", "MINIMUM", "LESS", "NEG", "PADV2", "GREATER", "GREATER_EQUAL",
    "LESS_EQUAL", "SELECT", "SLICE", "SIN", "TRANSPOSE_CONV", "SPARSE_TO_DENSE", "TILE",
    "EXPAND_DIMS", "EQUAL", "NOT_EQUAL", "LOG", "SUM", "SQRT", "RSQRT", "SHAPE", "POW", "ARG_MIN",
    "FAKE_QUANT", "REDUCE_PROD", "REDUCE_MAX", "PACK", "LOGICAL_OR", "ONE_HOT", "LOGICAL_AND",
    "LOGICAL_NOT", "UNPACK", "REDUCE_MIN", "FLOOR_DIV", "REDUCE_ANY", "SQUARE", "ZEROS_LIKE",
    "FILL", "FLOOR_MOD", "RANGE", "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU", "SQUARED_DIFFERENCE",
    "MIRROR_PAD", "ABS", "SPLIT_V", "UNIQUE", "CEIL", "REVERSE_V2", "ADD_N", "GATHER_ND", "COS",
    "WHERE", "RANK", "ELU", "REVERSE_SEQUENCE", "MATRIX_DIAG", "QUANTIZE", "MATRIX_SET_DIAG",
    "ROUND", "HARD_SWISH", "IF", "WHILE", "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5",
    "SCATTER_ND", "SELECT_V2", "DENSIFY", "SEGMENT_SUM", "BATCH_MATMUL",
    "PLACEHOLDER_FOR_GREATER_OP_CODES", "CUMSUM", "CALL_ONCE", "BROADCAST_TO", "RFFT2D", "CONV_3D",
    "IMAG", "REAL", "COMPLEX_ABS", "HASHTABLE", "HASHTABLE_FIND", "HASHTABLE_IMPORT",
    "HASHTABLE_SIZE", "REDUCE_ALL", "CONV_3D_TRANSPOSE", "VAR_HANDLE", "READ_VARIABLE",
    "ASSIGN_VARIABLE", "BROADCAST_ARGS", "RANDOM_STANDARD_NORMAL", "BUCKETIZE", "RANDOM_UNIFORM",
    "MULTINOMIAL", "GELU", "DYNAMIC_UPDATE_SLICE", "RELU_0_TO_1", "UNSORTED_SEGMENT_PROD",
    "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_SUM", "ATAN2", "UNSORTED_SEGMENT_MIN", "SIGN",
    "BITCAST", "BITWISE_XOR", "RIGHT_SHIFT", "STABLEHLO_LOGISTIC", "STABLEHLO_ADD",
    "STABLEHLO_DIVIDE", "STABLEHLO_MULTIPLY", "STABLEHLO_MAXIMUM", "STABLEHLO_RESHAPE",
    "STABLEHLO_CLAMP", "STABLEHLO_CONCATENATE", "STABLEHLO_BROADCAST_IN_DIM",
    "STABLEHLO_CONVOLUTION", "STABLEHLO_SLICE", "STABLEHLO_CUSTOM_CALL", "STABLEHLO_REDUCE",
    "STABLEHLO_ABS", "STABLEHLO_AND", "STABLEHLO_COSINE", "STABLEHLO_EXPONENTIAL",
    "STABLEHLO_FLOOR", "STABLEHLO_LOG", "STABLEHLO_MINIMUM", "STABLEHLO_NEGATE", "STABLEHLO_OR",
    "STABLEHLO_POWER", "STABLEHLO_REMAINDER", "STABLEHLO_RSQRT", "STABLEHLO_SELECT",
    "STABLEHLO_SUBTRACT", "STABLEHLO_TANH", "STABLEHLO_SCATTER", "STABLEHLO_COMPARE",
    "STABLEHLO_CONVERT", "STABLEHLO_DYNAMIC_SLICE", "STABLEHLO_DYNAMIC_UPDATE_SLICE",
    "STABLEHLO_PAD", "STABLEHLO_IOTA", "STABLEHLO_DOT_GENERAL", "STABLEHLO_REDUCE_WINDOW",
    "STABLEHLO_SORT", "STABLEHLO_WHILE", "STABLEHLO_GATHER", "STABLEHLO_TRANSPOSE", "DILATE",
    "STABLEHLO_RNG_BIT_GENERATOR", "REDUCE_WINDOW", "STABLEHLO_COMPOSITE", "STABLEHLO_SHIFT_LEFT",
    "STABLEHLO_CBRT", "STABLEHLO_CASE",
)


def _builtin_name(code: int) -> str:
    if 0 <= code < len(_BUILTIN_OPERATORS):
        return _BUILTIN_OPERATORS[code]
    return f"BUILTIN_{code}"


def _dtype_name(code: int) -> str:
    return _TENSOR_TYPES[code] if 0 <= code < len(_TENSOR_TYPES) else f"type_{code}"


def _element_count(shape: List[int]) -> int:
    count = 1
    for dimension in shape:
        count *= max(dimension, 0)
    return count


class _TFLiteModel:
    """The parts of a TFLite ``Model`` table this module reports, read on demand."""

    def __init__(self, reader: _FlatBufferReader):
        self.reader = reader
        self.root = reader.root()
        self.subgraphs = reader.tables(self.root, _MODEL_SUBGRAPHS)
        self.buffers = reader.tables(self.root, _MODEL_BUFFERS)
        if not self.subgraphs:
            raise ModelFormatError(f"{reader.label}: TFLite model without any subgraph")

    def tensors(self, subgraph: int) -> List[int]:
        return self.reader.tables(subgraph, _SUBGRAPH_TENSORS)

    def tensor_indices(self, subgraph: int, slot: int) -> List[int]:
        return self.reader.scalars(subgraph, slot, _I32)

    def pick(self, items: list, index: int, what: str):
        if not 0 <= index < len(items):
            raise ModelFormatError(
                f"{self.reader.label}: damaged TFLite file: {what} index {index} is out of "
                f"range (the model has {len(items)})"
            )
        return items[index]

    def shape(self, tensor: int) -> List[int]:
        return self.reader.scalars(tensor, _TENSOR_SHAPE, _I32)

    def describe(self, tensor: int) -> dict:
        """The TENSOR record: name, shape, dtype and quantization."""
        return {
            "name": self.reader.string(tensor, _TENSOR_NAME) or "",
            "shape": self.shape(tensor),
            "dtype": _dtype_name(self.reader.scalar(tensor, _TENSOR_TYPE, _I8)),
            "quantization": self.quantization(tensor),
        }

    def quantization(self, tensor: int) -> Optional[dict]:
        """Scales and zero points, or None when the tensor has no scale."""
        parameters = self.reader.table(tensor, _TENSOR_QUANTIZATION)
        if parameters is None:
            return None
        scale = self.reader.scalars(parameters, _QUANTIZATION_SCALE, _F32)
        if not scale:
            return None
        zero_point = self.reader.scalars(parameters, _QUANTIZATION_ZERO_POINT, _I64)
        return {"scale": scale, "zero_point": zero_point}

    def buffer_index(self, tensor: int) -> int:
        return self.reader.scalar(tensor, _TENSOR_BUFFER, _U32)

    def buffer_span(self, index: int) -> Tuple[int, int]:
        """(file offset, byte size) of buffer ``index``'s data; size 0 when it has none."""
        if index == 0 and not self.buffers:
            return 0, 0  # buffer 0 is the schema's always-empty sentinel, even when omitted
        buffer = self.pick(self.buffers, index, "buffer")
        offset = self.reader.scalar(buffer, _BUFFER_OFFSET, _U64)
        if offset > 1:
            size = self.reader.scalar(buffer, _BUFFER_SIZE, _U64)
            self.reader.need(offset, size)
            return offset, size
        return self.reader.vector(buffer, _BUFFER_DATA, 1)

    def operator_names(self) -> List[str]:
        """Name of each operator code: the builtin name, or the custom code of custom ops."""
        names = []
        for code in self.reader.tables(self.root, _MODEL_OPERATOR_CODES):
            builtin = max(
                self.reader.scalar(code, _OPCODE_DEPRECATED_BUILTIN, _I8),
                self.reader.scalar(code, _OPCODE_BUILTIN, _I32),
            )
            custom = self.reader.string(code, _OPCODE_CUSTOM_CODE)
            is_custom = builtin == _CUSTOM_OPERATOR and bool(custom)
            names.append(custom if is_custom else _builtin_name(builtin))
        return names

    def operator_histogram(self, subgraph: int) -> Dict[str, int]:
        names = self.operator_names()
        histogram: Dict[str, int] = {}
        for operator in self.reader.tables(subgraph, _SUBGRAPH_OPERATORS):
            index = self.reader.scalar(operator, _OPERATOR_OPCODE_INDEX, _U32)
            name = self.pick(names, index, "operator code")
            histogram[name] = histogram.get(name, 0) + 1
        return histogram

    def constant_tensors(self) -> Iterator[Tuple[int, Tuple[int, int]]]:
        """(tensor, data span) for the first tensor naming each buffer that holds data."""
        seen = set()
        for subgraph in self.subgraphs:
            for tensor in self.tensors(subgraph):
                index = self.buffer_index(tensor)
                if index in seen:
                    continue
                seen.add(index)
                span = self.buffer_span(index)
                if span[1] > 0:
                    yield tensor, span


@contextmanager
def _open_tflite(path) -> Iterator[_TFLiteModel]:
    data = _map_tflite_file(path)
    try:
        yield _TFLiteModel(_FlatBufferReader(data, str(path)))
    finally:
        data.close()


def _map_tflite_file(path) -> mmap.mmap:
    """A read-only memory map of a file that starts with a valid TFLite header."""
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        problem = tflite_header_problem(stream.read(8), size)
        if problem is not None:
            raise ModelFormatError(f"{path}: not a TFLite model: {problem}")
        return mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)


# ---------------------------------------------------------------------------
# Public TFLite readers
# ---------------------------------------------------------------------------


def read_tflite_info(path) -> dict:
    """Inputs, outputs, operator histogram and sizes of the TFLite model at ``path``.

    ``inputs``, ``outputs``, ``operators`` and ``tensor_count`` describe subgraph 0, the
    main graph. ``parameter_count`` is the number of elements of the constant tensors
    (tensors whose buffer holds data) of the whole model, each buffer counted once.
    Raises ModelFormatError when the file is not a TFLite model or is damaged.
    """
    with _open_tflite(path) as model:
        main = model.subgraphs[0]
        tensors = model.tensors(main)

        def described(slot: int) -> List[dict]:
            indices = model.tensor_indices(main, slot)
            return [model.describe(model.pick(tensors, i, "tensor")) for i in indices]

        return {
            "inputs": described(_SUBGRAPH_INPUTS),
            "outputs": described(_SUBGRAPH_OUTPUTS),
            "operators": model.operator_histogram(main),
            "tensor_count": len(tensors),
            "parameter_count": sum(
                _element_count(model.shape(tensor)) for tensor, _ in model.constant_tensors()
            ),
            "version": model.reader.scalar(model.root, _MODEL_VERSION, _U32),
            "description": model.reader.string(model.root, _MODEL_DESCRIPTION),
        }


def iter_tflite_tensors(path) -> Iterator[dict]:
    """Every tensor of every subgraph of the TFLite model at ``path``.

    Each item is a TENSOR record (name, shape, dtype, quantization) plus ``subgraph`` and
    ``index`` (its position), ``buffer`` (its buffer index), ``is_constant`` (its buffer
    holds data), ``data_offset`` (file offset of that data, None without data) and
    ``data_size`` (its byte size, 0 without data). The file stays mapped while the
    iterator is alive.
    """
    with _open_tflite(path) as model:
        for subgraph_index, subgraph in enumerate(model.subgraphs):
            for index, tensor in enumerate(model.tensors(subgraph)):
                buffer = model.buffer_index(tensor)
                offset, size = model.buffer_span(buffer)
                record = model.describe(tensor)
                record.update(
                    subgraph=subgraph_index, index=index, buffer=buffer, is_constant=size > 0,
                    data_offset=offset if size > 0 else None, data_size=size,
                )
                yield record


def tflite_constant_arrays(path) -> List[Tuple[str, str, List[int], memoryview]]:
    """(name, dtype, shape, raw little-endian data) of each constant tensor of the model.

    One entry per buffer holding data (the first tensor naming it), across all subgraphs.
    The data are read-only, zero-copy views into a read-only memory map of the file; the
    map is released when the last view is dropped (``bytes(view)`` makes a copy).
    """
    data = _map_tflite_file(path)
    model = _TFLiteModel(_FlatBufferReader(data, str(path)))
    whole = memoryview(data)
    arrays = []
    for tensor, (offset, size) in model.constant_tensors():
        record = model.describe(tensor)
        view = whole[offset:offset + size]
        arrays.append((record["name"], record["dtype"], record["shape"], view))
    return arrays
