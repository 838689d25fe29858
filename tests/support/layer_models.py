"""Small models for the per-layer tests: a chain of convolutions built with
``onnx.helper``, and a copy of it with one layer's weights corrupted (optionally with
every intermediate tensor renamed, as a quantizer may do)."""

from pathlib import Path
from typing import List

import numpy as np

CHAIN_LAYERS = 6
CHANNELS = 8


def conv_chain(path: Path, corrupt: int = -1, rename: bool = False, seed: int = 0) -> List[str]:
    """Write the chain (input [1,3,16,16] -> Conv+Relu x ``CHAIN_LAYERS``) to ``path``; with
    ``corrupt`` >= 0 that convolution's weights get noise. Returns the convolution output
    names in graph order."""
    from onnx import TensorProto, helper, numpy_helper

    from tests.support.model_builders import write_onnx

    rng = np.random.default_rng(seed)
    nodes, inits, outputs = [], [], []
    current, channels = "image", 3
    prefix = "renamed_" if rename else ""
    for i in range(CHAIN_LAYERS):
        weights = rng.normal(0, 0.3, (CHANNELS, channels, 3, 3)).astype(np.float32)
        if i == corrupt:
            weights = weights + np.random.default_rng(seed + 99).normal(0, 0.05, weights.shape).astype(np.float32)
        inits += [numpy_helper.from_array(weights, f"w{i}"),
                  numpy_helper.from_array(np.zeros(CHANNELS, np.float32), f"b{i}")]
        conv, relu = f"{prefix}conv{i}", f"{prefix}relu{i}"
        nodes.append(helper.make_node("Conv", [current, f"w{i}", f"b{i}"], [conv], name=f"{prefix}Conv_{i}",
                                      pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [conv], [relu], name=f"{prefix}Relu_{i}"))
        outputs.append(conv)
        current, channels = relu, CHANNELS
    nodes.append(helper.make_node("Identity", [current], ["logits"], name="Output"))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CHANNELS, 16, 16])],
                              inits)
    write_onnx(graph, path)
    return outputs


QUICK_ONNX = {"runtime": "onnxruntime", "threads": 1, "warmup_runs": 1, "warmup_seconds": 0.0,
              "measured_runs": 10, "min_seconds": 0.0, "layer_runs": 3}


def layered_result(farm, tmp_path: Path) -> dict:
    """The conv chain (family base) and its copy with layer 3 corrupted pushed; one real
    agent runs the copy on onnxruntime with the chain as its reference; the stored result."""
    from tests.support.agents import AgentProcess, wait_job

    conv_chain(tmp_path / "chain.onnx")
    conv_chain(tmp_path / "chain-corrupted.onnx", corrupt=3)
    base = farm.push_model(tmp_path / "chain.onnx", name="chain-fp32", family="chain", task="classification")
    variant = farm.push_model(tmp_path / "chain-corrupted.onnx", name="chain-corrupted", family="chain",
                              task="classification", variant={"quantization": "int8", "label": "corrupted"},
                              lineage={"parent_sha256": base["sha256"], "tool": "test"})
    agent = AgentProcess(farm, tmp_path / "agent", name="pc-layers").start()
    try:
        job = farm.submit(models=[variant["id"]], devices="all", settings={
            **QUICK_ONNX, "profile": True, "reference": {"runtime": "onnxruntime", "model": str(base["id"])}})
        final = wait_job(farm, job["id"], timeout=120)
        assert final["state"] == "succeeded", (final, agent.log()[-3000:])
    finally:
        agent.stop()
    return farm.user.get(f"/api/v1/results/{final['runs'][0]['result_id']}").json()
