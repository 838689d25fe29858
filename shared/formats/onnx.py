"""What an ONNX model declares: the names, shapes and element types of its graph
inputs and outputs, read with a small protobuf walker (no ``onnx`` package).

This module owns ``read_onnx_info(path)``. It walks ``onnx.proto`` on a read-only
memory map, touching only the fields it needs: ModelProto.graph (7); in
GraphProto, initializer (5, only their names), input (11) and output (12); in
ValueInfoProto, name (1) and type (2); TypeProto.tensor_type (1); in
TypeProto.Tensor, elem_type (1) and shape (2); TensorShapeProto.dim (1); in
Dimension, dim_value (1) or dim_param (2). Weights are skipped by offset, so a
model of gigabytes costs no copy. Graph inputs that are initializers (older IR
versions list weights as inputs) are left out. A symbolic or missing dimension
is reported as -1. Models over 2 GB with external data are read the same way
(the weights live elsewhere).

Pure standard library; runs on Python 3.9 and later.
"""

import mmap
from typing import Dict, Iterator, List, Optional, Tuple

from .detect import ModelFormatError

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 5, 11, 12
_TENSOR_NAME = 8
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR = 1
_TENSOR_ELEM_TYPE, _TENSOR_SHAPE = 1, 2
_SHAPE_DIM = 1
_DIM_VALUE, _DIM_PARAM = 1, 2

# TensorProto.DataType, by value.
_ELEMENT_TYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
    14: "complex64", 15: "complex128", 16: "bfloat16",
}

Span = Tuple[int, int]  # (start, end) of a length-delimited payload


class _Walker:
    """Bounds-checked protobuf field iteration over a byte buffer."""

    def __init__(self, data, label: str):
        self.data, self.label = data, label

    def fail(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.label}: damaged or truncated ONNX file: {what}")

    def varint(self, position: int, end: int) -> Tuple[int, int]:
        value = 0
        for shift in range(0, 70, 7):
            if position >= end:
                raise self.fail("a varint runs past its message")
            byte = self.data[position]
            position += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, position
        raise self.fail("a varint is longer than 10 bytes")

    def fields(self, span: Span) -> Iterator[Tuple[int, int, object]]:
        """(field number, wire type, value): an int for varints, a Span for payloads."""
        position, end = span
        while position < end:
            key, position = self.varint(position, end)
            number, wire_type = key >> 3, key & 7
            if wire_type == _VARINT:
                value, position = self.varint(position, end)
                yield number, wire_type, value
                continue
            if wire_type == _LENGTH_DELIMITED:
                length, position = self.varint(position, end)
            elif wire_type in (_FIXED64, _FIXED32):
                length = 8 if wire_type == _FIXED64 else 4
            else:
                raise self.fail(f"unsupported wire type {wire_type} in field {number}")
            if position + length > end:
                raise self.fail(f"field {number} runs past its message")
            yield number, wire_type, (position, position + length)
            position += length

    def first(self, span: Span, number: int) -> Optional[object]:
        for field, _, value in self.fields(span):
            if field == number:
                return value
        return None

    def text(self, span: Span) -> str:
        return bytes(self.data[span[0]:span[1]]).decode("utf-8", "replace")


def _dimension(walker: _Walker, span: Span) -> int:
    for number, wire_type, value in walker.fields(span):
        if number == _DIM_VALUE and wire_type == _VARINT:
            signed = value - (1 << 64) if value >= 1 << 63 else value
            return int(signed) if signed > 0 else -1
    return -1  # dim_param (symbolic) or unknown


def _value_info(walker: _Walker, span: Span) -> dict:
    name, dtype = "", "unknown"
    shape: List[int] = []
    for number, _, value in walker.fields(span):
        if number == _VALUE_NAME:
            name = walker.text(value)
        elif number == _VALUE_TYPE:
            tensor = walker.first(value, _TYPE_TENSOR)
            if tensor is None:
                continue
            for field, wire_type, item in walker.fields(tensor):
                if field == _TENSOR_ELEM_TYPE and wire_type == _VARINT:
                    dtype = _ELEMENT_TYPES.get(int(item), f"type_{item}")
                elif field == _TENSOR_SHAPE:
                    shape = [_dimension(walker, dim) for number2, _, dim in walker.fields(item)
                             if number2 == _SHAPE_DIM]
    return {"name": name, "shape": shape, "dtype": dtype, "quantization": None}


def _graph_info(walker: _Walker, graph: Span) -> Dict[str, List[dict]]:
    initializers, inputs, outputs = set(), [], []
    for number, wire_type, value in walker.fields(graph):
        if wire_type != _LENGTH_DELIMITED:
            continue
        if number == _GRAPH_INITIALIZER:
            name = walker.first(value, _TENSOR_NAME)
            if name is not None:
                initializers.add(walker.text(name))
        elif number == _GRAPH_INPUT:
            inputs.append(_value_info(walker, value))
        elif number == _GRAPH_OUTPUT:
            outputs.append(_value_info(walker, value))
    return {"inputs": [i for i in inputs if i["name"] not in initializers], "outputs": outputs}


def read_onnx_info(path) -> Dict[str, List[dict]]:
    """``{"inputs": [...], "outputs": [...]}`` of the ONNX model at ``path``, each a
    TENSOR record (name, shape, dtype, quantization None) like ``read_tflite_info``'s.
    Raises ModelFormatError when the file is damaged or has no graph."""
    with open(path, "rb") as stream:
        data = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        walker = _Walker(data, str(path))
        graph = walker.first((0, len(data)), _MODEL_GRAPH)
        if not isinstance(graph, tuple):
            raise ModelFormatError(f"{path}: an ONNX model without a graph")
        return _graph_info(walker, graph)
    finally:
        data.close()
