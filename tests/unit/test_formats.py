"""edgefarm.shared.formats: format detection by content and the hand-written TFLite reader."""

import io
import zipfile
from pathlib import Path

import pytest

from edgefarm.shared.formats import (
    ModelFormatError,
    detect_format,
    iter_tflite_tensors,
    read_tflite_info,
    tflite_constant_arrays,
)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
DEEPLAB = FIXTURES / "deeplabv3_mnv2_dm05_pascal_fp32.tflite"
PHOTO = FIXTURES / "deeplab_demo_person_horse.jpg"

ITEM_SIZES = {"float32": 4, "int32": 4, "int64": 8, "uint8": 1, "int8": 1, "float16": 2}


def fixture(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"fixture {path.name} absent: ../shared/fixtures is beside the checkout in CI")
    return path


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


# --- protobuf encoding, by hand --------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint_field(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def bytes_field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def tiny_onnx(ir_version: int = 8, with_graph: bool = True) -> bytes:
    """ModelProto{ir_version, producer_name, graph{node Identity x->y, name, input x and
    output y: float tensors of shape [4]}, opset_import{version 13}}, field numbers from
    onnx.proto; onnx.checker accepts it."""
    node = bytes_field(1, b"x") + bytes_field(2, b"y") + bytes_field(4, b"Identity")
    shape = bytes_field(1, varint_field(1, 4))  # TensorShapeProto{dim{dim_value 4}}
    float_4 = bytes_field(1, varint_field(1, 1) + bytes_field(2, shape))  # TypeProto.tensor_type
    graph = (
        bytes_field(1, node)
        + bytes_field(2, b"tiny")
        + bytes_field(11, bytes_field(1, b"x") + bytes_field(2, float_4))
        + bytes_field(12, bytes_field(1, b"y") + bytes_field(2, float_4))
    )
    model = varint_field(1, ir_version) + bytes_field(2, b"edgefarm-test")
    if with_graph:
        model += bytes_field(7, graph)
    return model + bytes_field(8, varint_field(2, 13))


def zip_bytes(members: dict) -> bytes:
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return stream.getvalue()


# --- the real DeepLab fixture ----------------------------------------------------------------


def test_fixture_is_detected_as_tflite():
    assert detect_format(fixture(DEEPLAB)) == "tflite"


def test_fixture_inputs_outputs_and_operators():
    info = read_tflite_info(fixture(DEEPLAB))
    assert info["inputs"] == [
        {"name": "sub_7", "shape": [1, 513, 513, 3], "dtype": "float32", "quantization": None}
    ]
    assert info["outputs"] == [
        {
            "name": "ResizeBilinear_2",
            "shape": [1, 513, 513, 21],
            "dtype": "float32",
            "quantization": None,
        }
    ]
    assert info["operators"] == {
        "CONV_2D": 38,
        "DEPTHWISE_CONV_2D": 17,
        "ADD": 10,
        "RESIZE_BILINEAR": 3,
        "AVERAGE_POOL_2D": 1,
        "CONCATENATION": 1,
    }
    assert info["tensor_count"] == 183
    assert info["version"] == 3
    assert info["description"] == "MLIR Converted."


def test_fixture_parameter_count_is_that_of_mobilenetv2_dm05_deeplab():
    info = read_tflite_info(fixture(DEEPLAB))
    assert 600_000 <= info["parameter_count"] <= 800_000
    assert info["parameter_count"] == 688_361


def test_fixture_constant_arrays_match_their_shapes_and_dtypes():
    arrays = tflite_constant_arrays(fixture(DEEPLAB))
    assert len(arrays) == 112
    elements = 0
    for name, dtype, shape, data in arrays:
        count = 1
        for dimension in shape:
            count *= dimension
        assert isinstance(data, memoryview) and data.readonly, name
        assert len(data) == count * ITEM_SIZES[dtype], name
        elements += count
    assert elements == read_tflite_info(DEEPLAB)["parameter_count"]


def test_fixture_tensor_iteration_marks_constants_and_locates_their_data():
    size = fixture(DEEPLAB).stat().st_size
    tensors = list(iter_tflite_tensors(DEEPLAB))
    assert len(tensors) == 183
    assert [t["index"] for t in tensors] == list(range(183))
    by_name = {t["name"]: t for t in tensors}
    assert by_name["sub_7"]["is_constant"] is False
    assert by_name["sub_7"]["data_offset"] is None and by_name["sub_7"]["data_size"] == 0
    constants = [t for t in tensors if t["is_constant"]]
    assert len(constants) == 112
    for tensor in constants:
        assert 0 < tensor["data_offset"] and tensor["data_offset"] + tensor["data_size"] <= size


def test_fixture_agrees_with_the_litert_interpreter():
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter")
    np = pytest.importorskip("numpy")
    interpreter = interpreter_module.Interpreter(model_path=str(fixture(DEEPLAB)))
    interpreter.allocate_tensors()
    info = read_tflite_info(DEEPLAB)
    for ours, theirs in (
        (info["inputs"], interpreter.get_input_details()),
        (info["outputs"], interpreter.get_output_details()),
    ):
        assert [t["name"] for t in ours] == [d["name"] for d in theirs]
        assert [t["shape"] for t in ours] == [d["shape"].tolist() for d in theirs]
        assert [t["dtype"] for t in ours] == [np.dtype(d["dtype"]).name for d in theirs]
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    raw = DEEPLAB.read_bytes()
    elements = 0
    for tensor in iter_tflite_tensors(DEEPLAB):
        detail = details[tensor["index"]]
        assert (tensor["name"], tensor["shape"]) == (detail["name"], detail["shape"].tolist())
        assert tensor["dtype"] == np.dtype(detail["dtype"]).name
        if tensor["is_constant"]:
            value = interpreter.get_tensor(tensor["index"])
            start = tensor["data_offset"]
            assert value.tobytes() == raw[start:start + tensor["data_size"]], tensor["name"]
            elements += value.size
    assert elements == info["parameter_count"]


# --- things that are not models ------------------------------------------------------------


def test_text_file_is_not_a_model(tmp_path):
    path = write(tmp_path, "model.tflite", b"Hello: this is a README, not a model.\n" * 20)
    with pytest.raises(ModelFormatError, match="not a model file"):
        detect_format(path)


def test_jpeg_bytes_are_not_a_model(tmp_path):
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(
        range(256)
    ) * 8 + b"\xff\xd9"
    with pytest.raises(ModelFormatError, match="neither a TFLite flatbuffer"):
        detect_format(write(tmp_path, "model.onnx", jpeg))


def test_real_photo_is_not_a_model():
    with pytest.raises(ModelFormatError, match="not a model file"):
        detect_format(fixture(PHOTO))


def test_empty_file_is_not_a_model(tmp_path):
    path = write(tmp_path, "empty.tflite", b"")
    with pytest.raises(ModelFormatError, match="empty file"):
        detect_format(path)
    with pytest.raises(ModelFormatError, match="TFL3"):
        read_tflite_info(path)


def test_reading_a_non_tflite_file_names_the_missing_identifier(tmp_path):
    path = write(tmp_path, "x.tflite", tiny_onnx())
    with pytest.raises(ModelFormatError, match="not a TFLite model: .*TFL3"):
        read_tflite_info(path)


def test_truncated_tflite_is_refused_by_the_reader(tmp_path):
    path = write(tmp_path, "cut.tflite", fixture(DEEPLAB).read_bytes()[:1000])
    assert detect_format(path) == "tflite"
    with pytest.raises(ModelFormatError, match="truncated"):
        read_tflite_info(path)
    with pytest.raises(ModelFormatError):
        tflite_constant_arrays(path)
    with pytest.raises(ModelFormatError):
        list(iter_tflite_tensors(path))


def test_tflite_identifier_with_a_root_offset_past_the_end_is_not_a_model(tmp_path):
    path = write(tmp_path, "fake.tflite", b"\xff\xff\x00\x00TFL3" + b"\x00" * 16)
    with pytest.raises(ModelFormatError, match="not a model file"):
        detect_format(path)
    with pytest.raises(ModelFormatError, match="root table offset"):
        read_tflite_info(path)


# --- ONNX ------------------------------------------------------------------------------------


def test_hand_built_onnx_model_is_detected(tmp_path):
    assert detect_format(write(tmp_path, "tiny.bin", tiny_onnx())) == "onnx"


@pytest.mark.parametrize(
    "content, why",
    [
        (tiny_onnx(with_graph=False), "no graph (field 7)"),
        (tiny_onnx()[2:], "no ir_version (field 1)"),
        (tiny_onnx(ir_version=0), "ir_version 0"),
        (tiny_onnx()[:-3], "last field cut short"),
        (tiny_onnx() + varint_field(150, 1), "field 150 is not in ModelProto"),
        (tiny_onnx() + varint(9 << 3 | 3), "wire type 3 (group) is not accepted"),
        (varint_field(1, 8) + varint(7 << 3), "graph with the varint wire type"),
    ],
)
def test_broken_onnx_is_not_a_model(tmp_path, content, why):
    with pytest.raises(ModelFormatError, match="not a model file"):
        detect_format(write(tmp_path, "broken.onnx", content))


def test_onnx_with_a_huge_declared_length_is_refused_without_reading_it(tmp_path):
    content = varint_field(1, 8) + varint(7 << 3 | 2) + varint(1 << 40) + b"\x00" * 32
    with pytest.raises(ModelFormatError, match="not a model file"):
        detect_format(write(tmp_path, "huge.onnx", content))


def test_onnx_saved_by_the_onnx_package_is_detected(tmp_path):
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, producer_name="edgefarm-test")
    path = tmp_path / "relu.onnx"
    onnx.save(model, str(path))
    assert detect_format(path) == "onnx"


# --- SNPE DLC --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "members",
    [
        {"model": b"\xd5\x0a\x03\x00", "model.params": b"\x00", "dlc.metadata": b"k=v\n"},
        {
            "dlc.metadata.history.2.3.0": b"",
            "dlc.metadata2.3.0": b"",
            "model": b"\xd5\x0a\x04\x00\x00\x00\x00\x00",
            "model.params": b"",
            "model.params.bin": b"",
        },
        {"model.params": b"NETP"},
    ],
)
def test_zip_with_dlc_members_is_a_dlc(tmp_path, members):
    assert detect_format(write(tmp_path, "model.zip", zip_bytes(members))) == "dlc"


def test_plain_zip_is_not_a_dlc(tmp_path):
    content = zip_bytes({"weights.bin": b"\x00" * 64, "dlc.metadata": b"k=v\n"})
    with pytest.raises(ModelFormatError, match="not an SNPE DLC container.*weights.bin"):
        detect_format(write(tmp_path, "model.dlc", content))


def test_damaged_zip_is_not_a_model(tmp_path):
    content = zip_bytes({"model": b"x" * 100})[:60]
    with pytest.raises(ModelFormatError, match="damaged ZIP"):
        detect_format(write(tmp_path, "cut.dlc", content))


# --- synthetic TFLite: custom ops, quantization, data outside the flatbuffer -----------------


def build_tflite(external_offset: int) -> bytes:
    """A one-subgraph model built with the official flatbuffers builder and schema."""
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    flatbuffers = pytest.importorskip("flatbuffers")

    def opcode(deprecated, builtin, custom=None):
        code = schema.OperatorCodeT()
        code.deprecatedBuiltinCode, code.builtinCode, code.customCode = deprecated, builtin, custom
        return code

    def tensor(name, shape, dtype, buffer, scale=None, zero_point=None):
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), shape, dtype, buffer
        if scale is not None:
            t.quantization = schema.QuantizationParametersT()
            t.quantization.scale, t.quantization.zeroPoint = scale, zero_point
        return t

    def operator(index):
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = index, [0, 1], [2]
        return op

    inline, external = schema.BufferT(), schema.BufferT()
    inline.data = list(range(1, 13))  # 3x4 int8
    external.offset, external.size = external_offset, 16  # 2x2 float32 outside the flatbuffer
    graph = schema.SubGraphT()
    graph.tensors = [
        tensor("input", [1, 4], schema.TensorType.INT8, 0, [0.5], [-3]),
        tensor("weights", [3, 4], schema.TensorType.INT8, 1, [0.1, 0.2, 0.3], [0, 0, 0]),
        tensor("output", [1, 3], schema.TensorType.FLOAT32, 0),
        tensor("table", [2, 2], schema.TensorType.FLOAT32, 2),
    ]
    graph.inputs, graph.outputs = [0], [2]
    graph.operators = [operator(i) for i in (0, 1, 2, 3, 0)]
    model = schema.ModelT()
    model.version, model.description = 3, b"synthetic"
    model.operatorCodes = [
        opcode(9, 9),  # FULLY_CONNECTED
        opcode(32, 32, b"EdgeFarmCustom"),
        opcode(127, 150),  # GELU, beyond the byte-sized deprecated code
        opcode(127, 4000),  # a code this reader does not know
    ]
    model.subgraphs, model.buffers = [graph], [schema.BufferT(), inline, external]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def synthetic_tflite(tmp_path: Path) -> Path:
    size = len(build_tflite(1 << 40))  # same layout whatever the (non-default) offset
    offset = (size + 15) // 16 * 16
    flatbuffer = build_tflite(offset)
    assert len(flatbuffer) == size
    table = b"".join(v.to_bytes(4, "little") for v in (0x3F800000, 0x40000000, 0, 0x40400000))
    return write(tmp_path, "synthetic.tflite", flatbuffer.ljust(offset, b"\x00") + table)


def test_synthetic_model_operators_quantization_and_external_buffer(tmp_path):
    path = synthetic_tflite(tmp_path)
    assert detect_format(path) == "tflite"
    info = read_tflite_info(path)
    assert info["operators"] == {
        "FULLY_CONNECTED": 2,
        "EdgeFarmCustom": 1,
        "GELU": 1,
        "BUILTIN_4000": 1,
    }
    assert info["inputs"] == [
        {"name": "input", "shape": [1, 4], "dtype": "int8",
         "quantization": {"scale": [0.5], "zero_point": [-3]}},
    ]
    assert info["outputs"][0]["quantization"] is None
    assert info["parameter_count"] == 12 + 4
    assert (info["tensor_count"], info["version"], info["description"]) == (4, 3, "synthetic")
    arrays = {name: (dtype, shape, bytes(data)) for name, dtype, shape, data in
              tflite_constant_arrays(path)}
    assert arrays["weights"] == ("int8", [3, 4], bytes(range(1, 13)))
    assert arrays["table"] == ("float32", [2, 2], path.read_bytes()[-16:])
    weights = next(t for t in iter_tflite_tensors(path) if t["name"] == "weights")
    assert weights["quantization"]["scale"] == pytest.approx([0.1, 0.2, 0.3])


def test_external_buffer_past_the_end_of_the_file_is_refused(tmp_path):
    path = synthetic_tflite(tmp_path)
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ModelFormatError, match="outside"):
        read_tflite_info(path)
