"""edgefarm.shared.formats.onnx: graph inputs and outputs, checked against the ``onnx`` package."""

import pytest

from edgefarm.shared.formats import ModelFormatError
from edgefarm.shared.formats.onnx import read_onnx_info
from tests.unit.test_formats import tiny_onnx, write

onnx = pytest.importorskip("onnx", reason="the onnx package builds the test models (the [dev] extra)")


def test_tiny_identity_model(tmp_path):
    info = read_onnx_info(write(tmp_path, "tiny.onnx", tiny_onnx()))
    assert info == {"inputs": [{"name": "x", "shape": [4], "dtype": "float32", "quantization": None}],
                    "outputs": [{"name": "y", "shape": [4], "dtype": "float32", "quantization": None}]}


def test_symbolic_dimensions_types_and_initializers_listed_as_inputs(tmp_path):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.zeros((64, 10), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Cast", ["y"], ["c"], to=2)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [64, 10])],  # IR < 4 style
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 10]),
         helper.make_tensor_value_info("c", TensorProto.UINT8, [1, 10])],
        [weights])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    info = read_onnx_info(path)
    assert [(i["name"], i["shape"], i["dtype"]) for i in info["inputs"]] == [("x", [-1, 64], "float32")]
    assert [(o["name"], o["shape"], o["dtype"]) for o in info["outputs"]] == [
        ("y", [-1, 10], "float32"), ("c", [1, 10], "uint8")]


def test_truncated_model_is_a_format_error(tmp_path):
    data = tiny_onnx()
    with pytest.raises(ModelFormatError, match="damaged or truncated ONNX"):
        read_onnx_info(write(tmp_path, "cut.onnx", data[:-7]))
