"""edgefarm.agent.synthetic: random inputs shaped like a model's, as benchmark_model makes them."""

import numpy as np

from edgefarm.agent.runtimes.base import TensorInfo
from edgefarm.agent.synthetic import synthetic_inputs


def test_synthetic_inputs_have_the_shapes_dtypes_and_ranges():
    infos = [TensorInfo("image", (1, 8, 8, 3), "float32"), TensorInfo("q", (1, 4000), "int8"),
             TensorInfo("u", (2, 500), "uint8"), TensorInfo("ids", (-1, 5), "int32"),
             TensorInfo("mask", (3,), "bool")]
    image, quantized, unsigned, ids, mask = synthetic_inputs(infos)
    assert image.shape == (1, 8, 8, 3) and image.dtype == np.float32
    assert image.min() >= -1.0 and image.max() < 1.0
    assert quantized.dtype == np.int8 and quantized.min() < -100 and quantized.max() > 100
    assert unsigned.dtype == np.uint8 and unsigned.min() < 20 and unsigned.max() > 235
    assert ids.shape == (1, 5) and ids.dtype == np.int32  # dynamic dimension -> 1
    assert mask.dtype == np.bool_


def test_synthetic_inputs_are_deterministic_per_seed():
    infos = [TensorInfo("x", (4, 4), "float32")]
    assert np.array_equal(synthetic_inputs(infos, seed=1)[0], synthetic_inputs(infos, seed=1)[0])
    assert not np.array_equal(synthetic_inputs(infos, seed=1)[0], synthetic_inputs(infos, seed=2)[0])
