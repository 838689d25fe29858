"""Graph rewrites of ``.tflite`` files that work around importer bugs in other
runtimes, without changing what the model computes.

``pad_dilated_convolutions``: OpenCV's TFLite importer (seen in 4.14 and 5.0)
pads a SAME convolution with dilation > 1 as if it were not dilated, which
shifts its output by a pixel (DeepLabv3's atrous layers: argmax agreement with
TFLite drops to ~64%). Each such CONV_2D / DEPTHWISE_CONV_2D becomes an
explicit PAD followed by the same convolution with VALID padding, which is the
same arithmetic (the TFLite interpreter gives bit-identical outputs for both
graphs) and which OpenCV imports correctly.

Uses the flatbuffers object API that LiteRT ships (``schema_py_generated``).
"""

from pathlib import Path
from typing import Any, List

from edgefarm.shared.formats.tflite_objects import find_schema_module

CONV_2D, DEPTHWISE_CONV_2D, PAD = 3, 4, 34
SAME, VALID = 0, 1


def _builtin(opcode: Any) -> int:
    return max(opcode.builtinCode, opcode.deprecatedBuiltinCode)


def _opcode_index(schema: Any, model: Any, code: int) -> int:
    for index, opcode in enumerate(model.operatorCodes):
        if _builtin(opcode) == code:
            return index
    opcode = schema.OperatorCodeT()
    opcode.builtinCode, opcode.deprecatedBuiltinCode, opcode.version = code, min(code, 127), 1
    model.operatorCodes.append(opcode)
    return len(model.operatorCodes) - 1


def _needs_padding(model: Any, op: Any) -> bool:
    options = op.builtinOptions
    if _builtin(model.operatorCodes[op.opcodeIndex]) not in (CONV_2D, DEPTHWISE_CONV_2D):
        return False
    if options is None or options.padding != SAME:
        return False
    dilated = options.dilationHFactor > 1 or options.dilationWFactor > 1
    return dilated and options.strideH == 1 and options.strideW == 1


def _new_tensor(
    schema: Any, model: Any, graph: Any, name: str, shape: List[int], dtype: int, data: bytes = b""
) -> int:
    buffer = schema.BufferT()
    if data:
        buffer.data = list(data)
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type = name.encode(), shape, dtype
    tensor.buffer = len(model.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _pad_op(schema: Any, model: Any, graph: Any, op: Any, number: int) -> Any:
    """A PAD operator feeding ``op``, which is switched to VALID padding."""
    import struct

    options = op.builtinOptions
    source = graph.tensors[op.inputs[0]]
    weights = graph.tensors[op.inputs[1]]
    kernel_h, kernel_w = int(weights.shape[1]), int(weights.shape[2])
    pad_h = options.dilationHFactor * (kernel_h - 1)
    pad_w = options.dilationWFactor * (kernel_w - 1)
    pads = [0, 0, pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2, 0, 0]
    pads_index = _new_tensor(
        schema,
        model,
        graph,
        f"edgefarm/pad{number}/paddings",
        [4, 2],
        schema.TensorType.INT32,
        struct.pack("<8i", *pads),
    )
    shape = list(source.shape)
    padded_shape = [shape[0], shape[1] + pad_h, shape[2] + pad_w, shape[3]]
    padded_index = _new_tensor(
        schema, model, graph, f"edgefarm/pad{number}/output", padded_shape, source.type
    )
    pad = schema.OperatorT()
    pad.opcodeIndex = _opcode_index(schema, model, PAD)
    pad.inputs, pad.outputs = [op.inputs[0], pads_index], [padded_index]
    pad.builtinOptionsType, pad.builtinOptions = schema.BuiltinOptions.PadOptions, schema.PadOptionsT()
    op.inputs = [padded_index] + list(op.inputs[1:])
    options.padding = VALID
    return pad


def pad_dilated_convolutions(source: Path, destination: Path) -> int:
    """Write the rewritten model; returns how many convolutions were changed (0: nothing written)."""
    schema = find_schema_module()
    if schema is None:
        return 0
    import flatbuffers

    data = Path(source).read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    changed = 0
    for graph in model.subgraphs:
        operators = []
        for op in graph.operators:
            if _needs_padding(model, op):
                operators.append(_pad_op(schema, model, graph, op, changed))
                changed += 1
            operators.append(op)
        graph.operators = operators
    if changed:
        builder = flatbuffers.Builder(len(data) + 1024 * 1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        Path(destination).write_bytes(bytes(builder.Output()))
    return changed
