"""Synthetic inputs: random data shaped like a model's inputs, as benchmark_model makes
them, for a latency run without a dataset (and the output agreement of such a run).

``synthetic_inputs`` owns the ranges: uniform over the whole range for integer types,
[-1, 1) for floating types, 0/1 for bool; dynamic dimensions (-1, 0 or None) become 1.
Deterministic for a given seed.
"""

from typing import List, Sequence, Tuple

import numpy as np

from .runtimes.base import TensorInfo


def _concrete_shape(shape: Sequence[int]) -> Tuple[int, ...]:
    """Dynamic dimensions (-1, 0 or None) become 1, as benchmark_model does by default."""
    return tuple(int(d) if d is not None and int(d) > 0 else 1 for d in shape)


def synthetic_inputs(tensor_infos: Sequence[TensorInfo], seed: int = 0) -> List[np.ndarray]:
    """Random data for each input, in the ranges above."""
    rng = np.random.default_rng(seed)
    arrays = []
    for info in tensor_infos:
        shape = _concrete_shape(info.shape)
        dtype = np.dtype(info.dtype)
        if dtype.kind == "f":
            arrays.append(rng.uniform(-1.0, 1.0, size=shape).astype(dtype))
        elif dtype.kind in "iu":
            limits = np.iinfo(dtype)
            arrays.append(rng.integers(limits.min, limits.max, size=shape, dtype=dtype, endpoint=True))
        elif dtype.kind == "b":
            arrays.append(rng.integers(0, 2, size=shape).astype(bool))
        else:
            raise ValueError(f"cannot make synthetic data for input {info.name!r} of type {info.dtype}")
    return arrays
