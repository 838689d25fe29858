"""Writes small but real TFLite flatbuffers: an optional RESHAPE (an image-shaped
input such as ``[1, 8, 8, 1]`` flattened to ``[1, 64]``), FULLY_CONNECTED layers
with ReLU between them, then SOFTMAX.

The demo's digits classifier (``edgefarm.tools.digits``) and the tests' tiny models are
built with it, so neither needs TensorFlow. Tables and field numbers follow
TensorFlow Lite's ``schema.fbs`` (schema version 3, file identifier ``TFL3``).
Weights may be nested Python lists or numpy arrays (``[out][in]`` per layer).
"""

import math
import struct
from typing import Any, List, Optional, Sequence, Tuple

import flatbuffers

# BuiltinOperator codes
FULLY_CONNECTED, RESHAPE, SOFTMAX = 9, 22, 25
# TensorType
FLOAT32 = 0
# ActivationFunctionType
RELU = 1
# BuiltinOptions union members
FULLY_CONNECTED_OPTIONS, SOFTMAX_OPTIONS, RESHAPE_OPTIONS = 8, 9, 17

Layer = Tuple[Any, Any]  # (weights as [out][in], bias as [out])

__all__ = [
    "FLOAT32", "FULLY_CONNECTED", "FULLY_CONNECTED_OPTIONS", "RELU", "RESHAPE", "RESHAPE_OPTIONS",
    "SOFTMAX", "SOFTMAX_OPTIONS", "Layer", "broken_tflite", "build_mlp", "tiny_tflite",
]


def _int_vector(builder: flatbuffers.Builder, values: Sequence[int]) -> int:
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependInt32(int(value))
    return builder.EndVector()


def _offset_vector(builder: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _buffer(builder: flatbuffers.Builder, data: bytes) -> int:
    data_offset = builder.CreateByteVector(data) if data else None
    builder.StartObject(3)
    if data_offset is not None:
        builder.PrependUOffsetTRelativeSlot(0, data_offset, 0)
    return builder.EndObject()


def _tensor(builder, name: str, shape: Sequence[int], buffer_index: int) -> int:
    name_offset = builder.CreateString(name)
    shape_offset = _int_vector(builder, shape)
    builder.StartObject(8)
    builder.PrependUOffsetTRelativeSlot(0, shape_offset, 0)
    builder.PrependInt8Slot(1, FLOAT32, 0)
    builder.PrependUint32Slot(2, buffer_index, 0)
    builder.PrependUOffsetTRelativeSlot(3, name_offset, 0)
    return builder.EndObject()


def _options(builder, options_type: int, relu: bool, new_shape: Optional[Sequence[int]]) -> int:
    """The operator's builtin options table (built before the operator table)."""
    shape_offset = _int_vector(builder, new_shape) if options_type == RESHAPE_OPTIONS else None
    builder.StartObject(1)
    if options_type == SOFTMAX_OPTIONS:
        builder.PrependFloat32Slot(0, 1.0, 0.0)  # beta
    elif options_type == RESHAPE_OPTIONS:
        builder.PrependUOffsetTRelativeSlot(0, shape_offset, 0)  # new_shape
    elif relu:
        builder.PrependInt8Slot(0, RELU, 0)  # fused_activation_function
    return builder.EndObject()


def _operator(builder, opcode_index: int, inputs, outputs, options_type: int, relu: bool,
              new_shape: Optional[Sequence[int]] = None) -> int:
    in_offset, out_offset = _int_vector(builder, inputs), _int_vector(builder, outputs)
    options = _options(builder, options_type, relu, new_shape)
    builder.StartObject(5)
    builder.PrependUint32Slot(0, opcode_index, 0)
    builder.PrependUOffsetTRelativeSlot(1, in_offset, 0)
    builder.PrependUOffsetTRelativeSlot(2, out_offset, 0)
    builder.PrependUint8Slot(3, options_type, 0)
    builder.PrependUOffsetTRelativeSlot(4, options, 0)
    return builder.EndObject()


def _opcode(builder, code: int) -> int:
    builder.StartObject(4)
    builder.PrependInt8Slot(0, code, 0)  # deprecated_builtin_code (all our codes are < 127)
    builder.PrependInt32Slot(2, 1, 1)  # version
    builder.PrependInt32Slot(3, code, 0)  # builtin_code
    return builder.EndObject()


def _floats(values: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def _flat(weights: Any) -> List[float]:
    return [float(v) for row in weights for v in row]


def _subgraph(builder, tensors: List[int], operators: List[int], output: int) -> int:
    subgraph_name = builder.CreateString("main")
    tensor_vec = _offset_vector(builder, tensors)
    inputs_vec, outputs_vec = _int_vector(builder, [0]), _int_vector(builder, [output])
    op_vec = _offset_vector(builder, operators)
    builder.StartObject(5)
    builder.PrependUOffsetTRelativeSlot(0, tensor_vec, 0)
    builder.PrependUOffsetTRelativeSlot(1, inputs_vec, 0)
    builder.PrependUOffsetTRelativeSlot(2, outputs_vec, 0)
    builder.PrependUOffsetTRelativeSlot(3, op_vec, 0)
    builder.PrependUOffsetTRelativeSlot(4, subgraph_name, 0)
    return builder.EndObject()


def build_mlp(
    layers: Sequence[Layer], softmax: bool = True,
    input_name: str = "input", output_name: str = "probabilities",
    description: Optional[str] = None, declared_input_width: Optional[int] = None,
    input_shape: Optional[Sequence[int]] = None,
) -> bytes:
    """A TFLite model: [RESHAPE], FULLY_CONNECTED layers (ReLU between them), then SOFTMAX.

    Each layer is (weights as [out][in], bias as [out]). With ``input_shape`` (for
    example ``[1, 8, 8, 1]``) the input tensor has that shape and a RESHAPE op
    (``ReshapeOptions.new_shape = [1, width]``) flattens it for the first layer.
    ``declared_input_width`` declares a ``[1, N]`` input that need not match the
    weights (used to write a model that no interpreter can prepare).
    """
    builder = flatbuffers.Builder(4096)
    buffers = [_buffer(builder, b"")]
    tensors, operators = [], []
    width = len(layers[0][0][0])
    opcodes = [FULLY_CONNECTED, SOFTMAX]
    reshape = input_shape is not None and list(input_shape) != [1, width]
    if input_shape is not None and math.prod(input_shape) != width:
        raise ValueError(f"input shape {list(input_shape)} has {math.prod(input_shape)} values; "
                         f"the first layer takes {width}")
    first_shape = list(input_shape) if input_shape is not None else [1, declared_input_width or width]
    tensors.append(_tensor(builder, input_name, first_shape, 0))
    current = 0
    if reshape:
        opcodes.append(RESHAPE)
        tensors.append(_tensor(builder, "flatten", [1, width], 0))
        operators.append(_operator(builder, opcodes.index(RESHAPE), [0], [1], RESHAPE_OPTIONS, False,
                                   new_shape=[1, width]))
        current = 1
    for i, (weights, bias) in enumerate(layers):
        out_width = len(weights)
        last = i == len(layers) - 1
        buffers.append(_buffer(builder, _floats(_flat(weights))))
        tensors.append(_tensor(builder, f"dense{i}/weights", [out_width, width], len(buffers) - 1))
        buffers.append(_buffer(builder, _floats([float(v) for v in bias])))
        tensors.append(_tensor(builder, f"dense{i}/bias", [out_width], len(buffers) - 1))
        name = output_name if last and not softmax else f"dense{i}/out"
        tensors.append(_tensor(builder, name, [1, out_width], 0))
        out_index = len(tensors) - 1
        operators.append(_operator(builder, 0, [current, out_index - 2, out_index - 1], [out_index],
                                   FULLY_CONNECTED_OPTIONS, relu=not last))
        current, width = out_index, out_width
    if softmax:
        tensors.append(_tensor(builder, output_name, [1, width], 0))
        operators.append(_operator(builder, 1, [current], [len(tensors) - 1], SOFTMAX_OPTIONS, False))
        current = len(tensors) - 1
    subgraph = _subgraph(builder, tensors, operators, current)
    opcode_vec = _offset_vector(builder, [_opcode(builder, code) for code in opcodes])
    subgraphs = _offset_vector(builder, [subgraph])
    buffer_vec = _offset_vector(builder, buffers)
    desc = builder.CreateString(description or "edgefarm test model")
    builder.StartObject(5)
    builder.PrependUint32Slot(0, 3, 0)  # schema version
    builder.PrependUOffsetTRelativeSlot(1, opcode_vec, 0)
    builder.PrependUOffsetTRelativeSlot(2, subgraphs, 0)
    builder.PrependUOffsetTRelativeSlot(3, desc, 0)
    builder.PrependUOffsetTRelativeSlot(4, buffer_vec, 0)
    model = builder.EndObject()
    builder.Finish(model, file_identifier=b"TFL3")
    return bytes(builder.Output())


def tiny_tflite(seed: int = 0, inputs: int = 4, outputs: int = 3) -> bytes:
    """A deterministic 2-layer classifier; different seeds give different files."""
    import random

    rng = random.Random(seed)
    hidden = 5
    w1 = [[rng.uniform(-1, 1) for _ in range(inputs)] for _ in range(hidden)]
    w2 = [[rng.uniform(-1, 1) for _ in range(hidden)] for _ in range(outputs)]
    return build_mlp([(w1, [0.1] * hidden), (w2, [0.0] * outputs)])


def broken_tflite() -> bytes:
    """A well-formed flatbuffer that no interpreter can prepare: the input is
    declared 7 wide while the first layer's weights expect 4."""
    import random

    rng = random.Random(1)
    w1 = [[rng.uniform(-1, 1) for _ in range(4)] for _ in range(3)]
    return build_mlp([(w1, [0.0] * 3)], declared_input_width=7, description="broken on purpose")
