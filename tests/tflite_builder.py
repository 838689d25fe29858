"""Writes small but real TFLite flatbuffers (fully connected layers) for tests,
so queue and agent tests do not depend on the DeepLab fixture."""

import struct
from typing import List, Optional, Sequence, Tuple

import flatbuffers

FULLY_CONNECTED, SOFTMAX = 9, 25
FLOAT32 = 0
RELU = 1  # ActivationFunctionType
FULLY_CONNECTED_OPTIONS, SOFTMAX_OPTIONS = 8, 9


def _int_vector(builder: flatbuffers.Builder, values: Sequence[int]) -> int:
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependInt32(value)
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


def _operator(builder, opcode_index: int, inputs, outputs, options_type: int, relu: bool) -> int:
    in_offset, out_offset = _int_vector(builder, inputs), _int_vector(builder, outputs)
    builder.StartObject(1)
    if options_type == SOFTMAX_OPTIONS:
        builder.PrependFloat32Slot(0, 1.0, 0.0)  # beta
    elif relu:
        builder.PrependInt8Slot(0, RELU, 0)
    options = builder.EndObject()
    builder.StartObject(5)
    builder.PrependUint32Slot(0, opcode_index, 0)
    builder.PrependUOffsetTRelativeSlot(1, in_offset, 0)
    builder.PrependUOffsetTRelativeSlot(2, out_offset, 0)
    builder.PrependUint8Slot(3, options_type, 0)
    builder.PrependUOffsetTRelativeSlot(4, options, 0)
    return builder.EndObject()


def _opcode(builder, code: int) -> int:
    builder.StartObject(4)
    builder.PrependInt8Slot(0, code, 0)
    builder.PrependInt32Slot(2, 1, 1)
    builder.PrependInt32Slot(3, code, 0)
    return builder.EndObject()


def _floats(values: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def build_mlp(
    layers: List[Tuple[List[List[float]], List[float]]], softmax: bool = True,
    input_name: str = "input", output_name: str = "probabilities",
    description: Optional[str] = None, declared_input_width: Optional[int] = None,
) -> bytes:
    """A TFLite model: FULLY_CONNECTED layers (ReLU between them), then SOFTMAX.

    Each layer is (weights as [out][in], bias as [out]).
    """
    builder = flatbuffers.Builder(4096)
    buffers = [_buffer(builder, b"")]
    tensors, operators = [], []
    width = len(layers[0][0][0])
    tensors.append(_tensor(builder, input_name, [1, declared_input_width or width], 0))
    current = 0
    for i, (weights, bias) in enumerate(layers):
        out_width = len(weights)
        last = i == len(layers) - 1
        buffers.append(_buffer(builder, _floats([v for row in weights for v in row])))
        tensors.append(_tensor(builder, f"dense{i}/weights", [out_width, width], len(buffers) - 1))
        buffers.append(_buffer(builder, _floats(bias)))
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
    subgraph_name = builder.CreateString("main")
    tensor_vec = _offset_vector(builder, tensors)
    inputs_vec, outputs_vec = _int_vector(builder, [0]), _int_vector(builder, [current])
    op_vec = _offset_vector(builder, operators)
    builder.StartObject(5)
    builder.PrependUOffsetTRelativeSlot(0, tensor_vec, 0)
    builder.PrependUOffsetTRelativeSlot(1, inputs_vec, 0)
    builder.PrependUOffsetTRelativeSlot(2, outputs_vec, 0)
    builder.PrependUOffsetTRelativeSlot(3, op_vec, 0)
    builder.PrependUOffsetTRelativeSlot(4, subgraph_name, 0)
    subgraph = builder.EndObject()
    opcodes = _offset_vector(builder, [_opcode(builder, FULLY_CONNECTED), _opcode(builder, SOFTMAX)])
    subgraphs = _offset_vector(builder, [subgraph])
    buffer_vec = _offset_vector(builder, buffers)
    desc = builder.CreateString(description or "edgefarm test model")
    builder.StartObject(5)
    builder.PrependUint32Slot(0, 3, 0)
    builder.PrependUOffsetTRelativeSlot(1, opcodes, 0)
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
