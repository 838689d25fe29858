"""Pure parts of the layer passes: tensor matching and dequantization of the drift pass,
and the accumulation of per-layer times."""

import numpy as np
import pytest

from edgefarm.agent.drift import TensorEntry, _dequantized, match_tensors
from edgefarm.agent.layers import NOT_AVAILABLE, _Accumulator, profile_layers


def entry(name, op, position, size=10):
    return TensorEntry(name, op, None, position, size)


def test_tensors_match_by_name_then_by_position_of_the_same_op_type():
    reference = [entry("a", "CONV_2D", 0), entry("b", "RELU", 1), entry("c", "CONV_2D", 2),
                 entry("d", "ADD", 3, size=5)]
    candidate = [entry("q", "QUANTIZE", 0), entry("a", "CONV_2D", 1), entry("b;renamed", "RELU", 2),
                 entry("c;renamed", "CONV_2D", 3), entry("e", "ADD", 4, size=7)]
    pairs = [(c.name, r.name, how) for c, r, how in match_tensors(candidate, reference)]
    # QUANTIZE has no counterpart; ADD has one of another size
    assert pairs == [("a", "a", "name"), ("b;renamed", "b", "position"), ("c;renamed", "c", "position")]


def test_position_matching_never_goes_back_before_the_previous_match():
    reference = [entry("x", "CONV_2D", 0), entry("y", "CONV_2D", 1)]
    candidate = [entry("y", "CONV_2D", 0), entry("renamed", "CONV_2D", 1)]
    pairs = [(c.name, r.name) for c, r, _ in match_tensors(candidate, reference)]
    assert pairs == [("y", "y")]  # "x" comes before "y" in the reference: not a match


def test_onnx_and_tflite_op_types_compare_without_case_and_underscores():
    pairs = match_tensors([entry("n", "Conv_2D", 0)], [entry("m", "CONV_2D", 0)])
    assert [(c.name, r.name) for c, r, _ in pairs] == [("n", "m")]


def test_dequantization_per_tensor_and_per_channel():
    values = np.array([[0, 10], [20, -10]], np.int8)
    per_tensor = _dequantized(values, {"scales": [0.5], "zero_points": [10], "quantized_dimension": 0})
    assert per_tensor.tolist() == [[-5.0, 0.0], [5.0, -10.0]]
    per_channel = _dequantized(values, {"scales": [1.0, 0.1], "zero_points": [0, 0], "quantized_dimension": 1})
    assert per_channel == pytest.approx(np.array([[0.0, 1.0], [20.0, -1.0]]))
    floats = np.array([1.5, -2.0], np.float32)
    assert _dequantized(floats, {"scales": [], "zero_points": []}).tolist() == [1.5, -2.0]


def test_layer_times_are_means_over_the_runs_with_shares_of_their_sum():
    found = _Accumulator()
    for _ in range(4):
        found.add("conv", "Conv", 3.0, unit="CPU")
        found.add("relu", "Relu", 1.0, unit="CPU")
    profile = found.profile("test", 4, [4.2] * 4)
    assert [(row.name, row.ms, row.share) for row in profile.layers] == [("conv", 3.0, 0.75), ("relu", 1.0, 0.25)]
    assert profile.total_ms == 4.0 and profile.run_ms == pytest.approx(4.2)


def test_a_runtime_without_a_profiler_says_why():
    class Plain:
        name = "tflite"

    profile = profile_layers(Plain(), "model.tflite", [], runs=3)
    assert profile.layers == [] and profile.not_available == NOT_AVAILABLE["tflite"]
