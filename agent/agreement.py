"""Output agreement: how close a run's outputs are to a reference's (the same
model on TFLite CPU fp32, or a variant's fp32 base) on the same inputs.

This module owns the error statistics (``OutputStats``, ``psnr_db``), the
matching of outputs between two runtimes (``align``) and ``compute_agreement``,
which runs both runtimes on the compared inputs and returns a
``edgefarm.shared.contract.schemas.Agreement`` dict. Each runtime is run through its
run's strategy (``edgefarm.agent.strategy``): one ``invoke()`` per input, or batches
for a batch runtime such as SNPE.

Inputs compared: with a dataset, the first ``max_samples`` dataset samples (the
first is also the latency input), each decoded once (from the run's opened
dataset) and pre-processed for each
runtime with that runtime's own input spec (layout, dtype, quantization); without
one, the synthetic latency input, converted to the reference's layout and dtype.

Per output: ``max_abs_error``, ``mean_abs_error`` and ``psnr_db = 10 *
log10(peak^2 / MSE)`` with ``peak = max|reference|`` over every compared value of
that output, both sides dequantized to float. Identical outputs (MSE 0) have no
finite PSNR: ``psnr_db`` is None and ``identical`` true. ``top1_agreement``
(classification) is the share of samples whose argmax of the first output is the
same; ``pixel_agreement`` (segmentation) the share of pixels whose class is.
Outputs are paired by position (both models list them in the same order after a
conversion), an NCHW output is transposed to match an NHWC reference.
"""

import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edgefarm.shared.datasets.preprocess import InputSpec, dequantize, preprocess_image

BATCH_CHUNK = 16  # samples run at a time, to bound the outputs held at once


class AgreementError(RuntimeError):
    """The two runtimes' inputs or outputs cannot be matched."""


def psnr_db(peak: float, mse: float) -> Optional[float]:
    """``10 * log10(peak^2 / mse)``; None when ``mse`` is 0 (identical) or there is no peak."""
    if mse <= 0 or peak <= 0:
        return None
    return 10.0 * math.log10(peak * peak / mse)


class OutputStats:
    """Streaming error statistics of one output over many samples."""

    def __init__(self, name: str, reference_name: str):
        self.name, self.reference_name = name, reference_name
        self.count, self.abs_sum, self.sq_sum = 0, 0.0, 0.0
        self.max_abs, self.peak = 0.0, 0.0

    def add(self, candidate: np.ndarray, reference: np.ndarray) -> None:
        diff = candidate.astype(np.float64) - reference.astype(np.float64)
        self.count += diff.size
        self.abs_sum += float(np.abs(diff).sum())
        self.sq_sum += float(np.square(diff).sum())
        self.max_abs = max(self.max_abs, float(np.abs(diff).max(initial=0.0)))
        self.peak = max(self.peak, float(np.abs(reference).max(initial=0.0)))

    def summary(self) -> Dict[str, Any]:
        mse = self.sq_sum / self.count if self.count else 0.0
        return {"max_abs_error": self.max_abs, "mean_abs_error": self.abs_sum / max(self.count, 1),
                "psnr_db": psnr_db(self.peak, mse), "identical": self.count > 0 and self.sq_sum == 0.0,
                "reference_name": self.reference_name}


def align(candidate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``candidate`` shaped like ``reference``: as is, NCHW -> NHWC, or reshaped."""
    if candidate.shape == reference.shape:
        return candidate
    if candidate.ndim == 4 and candidate.transpose(0, 2, 3, 1).shape == reference.shape:
        return candidate.transpose(0, 2, 3, 1)
    if candidate.ndim == 4 and candidate.transpose(0, 3, 1, 2).shape == reference.shape:
        return candidate.transpose(0, 3, 1, 2)
    if candidate.size == reference.size:
        return candidate.reshape(reference.shape)
    raise AgreementError(f"an output of shape {list(candidate.shape)} cannot be compared with the "
                         f"reference's {list(reference.shape)}")


def _as_float(outputs: Sequence[Any], infos: Sequence[Any]) -> List[np.ndarray]:
    return [dequantize(np.asarray(value), info.quantization) for value, info in zip(outputs, infos)]


def _float_outputs(strategy: Any, samples: Sequence[List[np.ndarray]]) -> List[List[np.ndarray]]:
    """Float outputs of the strategy's runtime for each sample's input list."""
    return [_as_float(outputs, strategy.runtime.outputs) for outputs in strategy.outputs(samples)]


def convert_input(array: np.ndarray, source: Any, target: Any) -> np.ndarray:
    """A synthetic input of one runtime made fit for the other: dequantized, transposed
    between NCHW and NHWC when needed, then cast (or quantized) to the target type."""
    values = dequantize(np.asarray(array), source.quantization)
    shape = tuple(int(d) if int(d) > 0 else 1 for d in target.shape)
    values = align(values, np.empty(shape, np.float32))
    dtype = np.dtype(target.dtype)
    if dtype.kind in "iu" and target.quantization:
        scale, zero_point = target.quantization
        info = np.iinfo(dtype)
        return np.clip(np.round(values / scale) + zero_point, info.min, info.max).astype(dtype)
    return values.astype(dtype)


def _image_inputs(runtime: Any, images: Sequence[np.ndarray], pre: Any) -> List[List[np.ndarray]]:
    spec = InputSpec.from_tensor(runtime.inputs[0], runtime.layout)
    return [[preprocess_image(image, spec, pre)] for image in images]


class Comparison:
    """Accumulates the agreement of paired outputs, sample by sample."""

    def __init__(self, names: Sequence[str], ref_names: Sequence[str], task: str):
        pairs = min(len(names), len(ref_names))
        self.stats = [OutputStats(names[i], ref_names[i]) for i in range(pairs)]
        self.task, self.samples = task, 0
        self.top1: List[bool] = []
        self.pixels = self.pixel_total = 0

    def add(self, candidate: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> None:
        aligned = [align(candidate[i], reference[i]) for i in range(len(self.stats))]
        for stat, value, ref in zip(self.stats, aligned, reference):
            stat.add(value, ref)
        self.samples += 1
        if self.task == "classification" and aligned[0].size == reference[0].size:
            self.top1.append(int(np.argmax(aligned[0])) == int(np.argmax(reference[0])))
        elif self.task == "segmentation" and aligned[0].ndim == 4:
            self.pixels += int((aligned[0].argmax(-1) == reference[0].argmax(-1)).sum())
            self.pixel_total += int(aligned[0][..., 0].size)

    def summary(self) -> Dict[str, Any]:
        outputs = {stat.name: stat.summary() for stat in self.stats}
        psnrs = [o["psnr_db"] for o in outputs.values() if o["psnr_db"] is not None]
        result = {"outputs": outputs, "sample_count": self.samples,
                  "psnr_db": min(psnrs) if psnrs else None,
                  "top1_agreement": float(np.mean(self.top1)) if self.top1 else None}
        if self.pixel_total:
            result["pixel_agreement"] = self.pixels / self.pixel_total
        return result


def compute_agreement(candidate: Any, baseline: Any, task: str, images: Optional[Sequence[np.ndarray]],
                      synthetic: Optional[Sequence[np.ndarray]], pre: Any) -> Dict[str, Any]:
    """Agreement of the ``candidate`` strategy's runtime with the ``baseline``'s (the
    reference's; both loaded) on ``images`` (decoded dataset samples, pre-processed per
    runtime) or else the ``synthetic`` input list."""
    runtime, reference = candidate.runtime, baseline.runtime
    if len(runtime.inputs) != len(reference.inputs):
        raise AgreementError(f"the model takes {len(runtime.inputs)} inputs, its reference "
                             f"{len(reference.inputs)}")
    comparison = Comparison([t.name for t in runtime.outputs], [t.name for t in reference.outputs], task)
    if images:
        for start in range(0, len(images), BATCH_CHUNK):
            chunk = images[start:start + BATCH_CHUNK]
            pairs = zip(_float_outputs(candidate, _image_inputs(runtime, chunk, pre)),
                        _float_outputs(baseline, _image_inputs(reference, chunk, pre)))
            for outputs, reference_outputs in pairs:
                comparison.add(outputs, reference_outputs)
    elif synthetic is not None:
        converted = [convert_input(a, s, t) for a, s, t in zip(synthetic, runtime.inputs, reference.inputs)]
        comparison.add(_float_outputs(candidate, [list(synthetic)])[0],
                       _float_outputs(baseline, [converted])[0])
    else:
        raise AgreementError("no inputs to compare")
    return comparison.summary()
