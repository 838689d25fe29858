"""Accuracy metrics, pure and independent of runtimes and files.

This module owns:

* ``ConfusionMatrix``: segmentation the standard (PASCAL VOC) way, one matrix
  accumulated over the whole dataset, pixels labelled ``ignore_index`` (255, "void")
  left out entirely, whatever was predicted there. ``per_class_iou`` gives
  TP / (TP + FP + FN) for each class whose union is not empty (None otherwise);
  ``miou`` is the mean over the classes with a non-empty union, i.e. present in the
  ground truth OR predicted somewhere (a class only ever predicted, never present,
  counts with IoU 0; a class neither present nor predicted does not count). This is
  the definition of the VOC devkit, mmsegmentation and torchmetrics (nan-mean), and
  not a mean of per-image mIoUs.
* ``TopK``: top-1 / top-k accuracy of classification scores. Ties are broken by the
  lower class index (as a stable sort would rank them), so results never depend on a
  sort implementation.
* ``resize_logits``: bilinear resize of HxWxC logits with half-pixel centres and edge
  clamping (the geometry of OpenCV's INTER_LINEAR and of TensorFlow's
  ``resize(..., half_pixel_centers=True)``, no antialiasing), in numpy on every
  device. OpenCV is deliberately not used: it quantizes the interpolation weights to
  1/2048 (differences up to 1e-4 on unit-scale logits), so devices with and without it
  would disagree; this numpy version is exact and about as fast (12 ms for
  257x257x21 -> 375x500 on a PC, against 8 ms).
* ``argmax_map``: the class map of HxWxC logits (ties to the lower index).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np


class ConfusionMatrix:
    """Counts ``matrix[label, prediction]`` over every valid pixel seen by ``update``."""

    def __init__(self, num_classes: int, ignore_index: Optional[int] = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, not {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, label: np.ndarray) -> np.ndarray:
        """Add one image: ``pred`` and ``label`` are HxW integer class maps. Returns that
        image's own matrix (the dataset's is the sum of them)."""
        pred, label = np.asarray(pred), np.asarray(label)
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
        label = label.astype(np.int64).ravel()
        pred = pred.astype(np.int64).ravel()
        valid = label != self.ignore_index if self.ignore_index is not None else slice(None)
        label, pred = label[valid], pred[valid]
        n = self.num_classes
        bad = (label < 0) | (label >= n)
        if bad.any():
            raise ValueError(f"label value {int(label[bad][0])} is not a class index 0..{n - 1} "
                             f"(nor the ignored value {self.ignore_index})")
        bad = (pred < 0) | (pred >= n)
        if bad.any():
            raise ValueError(f"predicted class {int(pred[bad][0])} is not a class index 0..{n - 1}")
        image = np.bincount(label * n + pred, minlength=n * n).reshape(n, n)
        self.matrix += image
        return image

    @property
    def total(self) -> int:
        """Number of valid (not ignored) pixels seen."""
        return int(self.matrix.sum())

    def per_class_iou(self) -> Dict[int, Optional[float]]:
        """IoU of each class; None for a class absent from labels and predictions."""
        intersection = np.diag(self.matrix)
        union = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - intersection
        return {c: (float(intersection[c] / union[c]) if union[c] > 0 else None)
                for c in range(self.num_classes)}

    def miou(self) -> Optional[float]:
        """Mean IoU over the classes with a non-empty union; None before any pixel."""
        values = [v for v in self.per_class_iou().values() if v is not None]
        return float(np.mean(values)) if values else None

    def pixel_accuracy(self) -> Optional[float]:
        """Correct valid pixels / valid pixels; None before any pixel."""
        total = self.total
        return float(np.trace(self.matrix) / total) if total else None


class TopK:
    """Top-1 and top-k accuracy over the samples given to ``update``."""

    def __init__(self, k: int = 5) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        self.k = k
        self.count = 0
        self.hits = np.zeros(k, dtype=np.int64)  # hits[i]: label ranked within the first i+1

    def update(self, scores: np.ndarray, label: int) -> int:
        """Add one sample; returns the rank of the true class (0 = top-1)."""
        scores = np.asarray(scores).ravel()
        if not 0 <= label < scores.size:
            raise ValueError(f"label {label} is not one of the {scores.size} scored classes")
        target = scores[label]
        rank = int(np.count_nonzero(scores > target) + np.count_nonzero(scores[:label] == target))
        if rank < self.k:
            self.hits[rank:] += 1
        self.count += 1
        return rank

    def accuracy(self, k: int) -> Optional[float]:
        if not 1 <= k <= self.k:
            raise ValueError(f"top-{k} is not tracked (k runs from 1 to {self.k})")
        return float(self.hits[k - 1] / self.count) if self.count else None

    def top1(self) -> Optional[float]:
        return self.accuracy(1)

    def top5(self) -> Optional[float]:
        return self.accuracy(min(5, self.k))


def _linear_taps(source: int, target: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each target index: the two source indices and the weight of the second,
    with half-pixel centres and coordinates clamped to the edges."""
    position = (np.arange(target, dtype=np.float64) + 0.5) * (source / target) - 0.5
    position = np.clip(position, 0.0, source - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, source - 1)
    return low, high, (position - low).astype(np.float32)


def resize_logits(logits: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Bilinear resize of HxWxC float logits to ``size`` = (height, width), float32."""
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim != 3:
        raise ValueError(f"logits must be HxWxC, got shape {logits.shape}")
    height, width = int(size[0]), int(size[1])
    if logits.shape[:2] == (height, width):
        return logits
    rows_low, rows_high, row_weight = _linear_taps(logits.shape[0], height)
    cols_low, cols_high, col_weight = _linear_taps(logits.shape[1], width)
    top = logits[rows_low]
    rows = top + (logits[rows_high] - top) * row_weight[:, None, None]
    left = rows[:, cols_low]
    result = rows[:, cols_high]
    result -= left  # in place: a + (b - a) * w without more full-size temporaries
    result *= col_weight[None, :, None]
    result += left
    return result


def argmax_map(logits: np.ndarray) -> np.ndarray:
    """HxW class indices (int64) of HxWxC logits; ties go to the lower class index."""
    return np.argmax(logits, axis=-1)
