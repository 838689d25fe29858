"""Seeded bootstrap intervals of mIoU and pixel accuracy from per-image counts, pure Python.

A segmentation result keeps, per image, the intersection and union pixel counts of each
class (``PerSample.iou``). Resampling images with replacement and recomputing the dataset
figures from the summed counts gives the percentile bootstrap interval of

* **mIoU**: the mean over classes with a non-empty summed union of ``sum I / sum U``
  (the dataset-level definition of ``agent.evaluation.metrics.ConfusionMatrix``), and
* **pixel accuracy**: ``sum I / T`` over all classes, where the valid pixels
  ``T = (sum U + sum I) / 2`` (every valid pixel is counted once as ground truth and once
  as prediction, so ``sum U = 2T - sum I``).

``paired_difference`` draws the same images for both results (the same sample order) and
gives the interval of ``new - base``: the paired bootstrap. A generator seeded with
``SEED`` makes every interval reproducible. Images are kept as sparse rows (most images hold
a few classes), so one resample costs about ``images x classes present per image``.
"""

import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .quantiles import Interval

SEED = 20240607
RESAMPLES = 1000

SparseRow = List[Tuple[int, int, int]]  # (class, intersection, union) with union > 0


@dataclass(frozen=True)
class ImageCounts:
    """Per-image counts as sparse rows."""

    classes: int
    rows: List[SparseRow]

    @classmethod
    def from_tables(cls, intersection: Sequence[Sequence[int]],
                    union: Sequence[Sequence[int]]) -> "ImageCounts":
        if len(intersection) != len(union):
            raise ValueError("intersection and union tables differ in images")
        classes = len(intersection[0]) if intersection else 0
        rows = []
        for inter, uni in zip(intersection, union):
            if len(inter) != classes or len(uni) != classes:
                raise ValueError("every image needs one count per class")
            if any(i > u for i, u in zip(inter, uni)):
                raise ValueError("an intersection exceeds its union")
            rows.append([(c, int(i), int(u)) for c, (i, u) in enumerate(zip(inter, uni)) if u])
        return cls(classes=classes, rows=rows)


def sums(rows: Sequence[SparseRow], picks: Sequence[int]) -> Tuple[Dict[int, int], Dict[int, int]]:
    inter: Dict[int, int] = {}
    union: Dict[int, int] = {}
    for p in picks:
        for c, i, u in rows[p]:
            inter[c] = inter.get(c, 0) + i
            union[c] = union.get(c, 0) + u
    return inter, union


def miou_of(inter: Dict[int, int], union: Dict[int, int]) -> Optional[float]:
    values = [inter.get(c, 0) / u for c, u in union.items() if u > 0]
    return sum(values) / len(values) if values else None


def pixel_accuracy_of(inter: Dict[int, int], union: Dict[int, int]) -> Optional[float]:
    correct = sum(inter.values())
    total = (sum(union.values()) + correct) / 2.0
    return correct / total if total else None


METRICS = {"miou": miou_of, "pixel_accuracy": pixel_accuracy_of}


def _percentiles(values: List[float], confidence: float) -> Tuple[Optional[float], Optional[float]]:
    if not values:
        return None, None
    values.sort()
    alpha = (1.0 - confidence) / 2.0
    last = len(values) - 1
    return values[int(round(alpha * last))], values[int(round((1.0 - alpha) * last))]


def _draws(images: int, resamples: int, seed: int):
    rng = random.Random(seed)
    for _ in range(resamples):
        yield [rng.randrange(images) for _ in range(images)]


def interval(counts: ImageCounts, metric: str, confidence: float = 0.95,
             resamples: int = RESAMPLES, seed: int = SEED) -> Interval:
    """``metric`` ("miou" or "pixel_accuracy") of all images with its percentile bootstrap
    interval over images."""
    measure = METRICS[metric]
    images = len(counts.rows)
    if images == 0:
        raise ValueError("a bootstrap needs at least one image")
    estimate = measure(*sums(counts.rows, range(images)))
    if estimate is None:
        raise ValueError("no class has any pixel")
    values = [v for v in (measure(*sums(counts.rows, picks))
                          for picks in _draws(images, resamples, seed)) if v is not None]
    low, high = _percentiles(values, confidence)
    return Interval(estimate=estimate, low=low, high=high, confidence=confidence,
                    method=f"bootstrap over images ({resamples} resamples, seed {seed})")


def paired_difference(base: ImageCounts, new: ImageCounts, metric: str,
                      confidence: float = 0.95, resamples: int = RESAMPLES,
                      seed: int = SEED) -> Interval:
    """``new - base`` of ``metric`` over the same images, with the paired bootstrap interval
    (both results resampled with the same image draws)."""
    if len(base.rows) != len(new.rows):
        raise ValueError("paired results must cover the same images")
    measure = METRICS[metric]
    images = len(base.rows)
    if images == 0:
        raise ValueError("a bootstrap needs at least one image")
    whole = range(images)
    first, second = measure(*sums(base.rows, whole)), measure(*sums(new.rows, whole))
    if first is None or second is None:
        raise ValueError("no class has any pixel")
    values = []
    for picks in _draws(images, resamples, seed):
        x, y = measure(*sums(base.rows, picks)), measure(*sums(new.rows, picks))
        if x is not None and y is not None:
            values.append(y - x)
    low, high = _percentiles(values, confidence)
    return Interval(estimate=second - first, low=low, high=high, confidence=confidence,
                    method=f"paired bootstrap over images ({resamples} resamples, seed {seed})")
