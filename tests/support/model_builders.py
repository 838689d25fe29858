"""Models and environments the runtime tests build: the digits MLP as ``.tflite``,
as ``.onnx`` (same weights, an NCHW input, built with ``onnx.helper``), as a
stand-in DLC, and as a dynamic-range variant (``ai-edge-quantizer``); and the
environment that puts the stand-in SNPE SDK (``tests/snpe_standin``) on PATH."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from tests.support.servers import PROJECT

STANDIN_BIN = PROJECT / "tests" / "snpe_standin" / "bin"


def standin_env(runtimes: str = "cpu,gpu", base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """``base`` (default os.environ) with the stand-in SDK and this Python first on PATH."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([str(STANDIN_BIN), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["SNPE_STANDIN_RUNTIMES"] = runtimes
    env.pop("SNPE_ROOT", None)
    return env


def without_sdk(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """``base`` with no SNPE tool reachable (PATH keeps only folders without one)."""
    env = dict(os.environ if base is None else base)
    folders = [p for p in env.get("PATH", "").split(os.pathsep)
               if p and not (Path(p) / "snpe-net-run").exists()]
    env["PATH"] = os.pathsep.join(folders)
    env.pop("SNPE_ROOT", None)
    return env


def digits_layers(seed: int = 0):
    from edgefarm.tools.digits import train_digits

    layers, _ = train_digits(seed)
    return layers


def digits_tflite(layers, path: Path) -> Path:
    from edgefarm.shared.formats.tflite_builder import build_mlp
    from edgefarm.tools.digits import INPUT_NAME, INPUT_SHAPE

    path.write_bytes(build_mlp(layers, input_name=INPUT_NAME, input_shape=INPUT_SHAPE))
    return path


def digits_onnx(layers, path: Path, input_name: str = "image") -> Path:
    """The same MLP in ONNX: input [1,1,8,8] (NCHW), Reshape, (MatMul, Add, Relu)*, Softmax."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Reshape", [input_name, "flat_shape"], ["h0"])]
    inits = [numpy_helper.from_array(np.array([1, 64], np.int64), "flat_shape")]
    current = "h0"
    for i, (weights, bias) in enumerate(layers):
        w = np.asarray(weights, np.float32).T.copy()
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array(np.asarray(bias, np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        current = f"a{i}"
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"r{i}"]))
            current = f"r{i}"
    nodes.append(helper.make_node("Softmax", [current], ["probabilities"], axis=-1))
    graph = helper.make_graph(
        nodes, "digits", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, len(layers[-1][1])])],
        inits)
    write_onnx(graph, path)
    return path


def write_onnx(graph, path: Path) -> None:
    """Save ``graph`` as a checked opset-13 ONNX model (IR version 8, which ONNX Runtime reads)."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def dynamic_range_variant(tflite: Path, dest: Path) -> Path:
    """Weights int8, activations float (``ai-edge-quantizer``'s dynamic_wi8_afp32 recipe)."""
    from ai_edge_quantizer import quantizer, recipe

    runner = quantizer.Quantizer(str(tflite))
    runner.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    runner.quantize().export_model(str(dest), overwrite=True)
    return dest


def standin_dlc(tflite: Path, dest: Path) -> Path:
    """A stand-in container, made by the stand-in ``snpe-tflite-to-dlc``."""
    done = subprocess.run(["snpe-tflite-to-dlc", "--input_network", str(tflite), "--output_path", str(dest)],
                          env=standin_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return dest
