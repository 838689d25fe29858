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
``SEED`` makes every interval reproducible. Counts are kept per class over the images that
hold the class (most images hold a few classes), so one resample costs about ``images x
classes present per image`` multiplications in C-level ``map`` passes: about 0.7 s for 1,000
resamples of 1,449 VOC images on a PC.
"""

import random
from dataclasses import dataclass
from operator import mul
from typing import Dict, List, Optional, Sequence, Tuple

from .quantiles import Interval

SEED = 20240607
RESAMPLES = 1000

SparseRow = List[Tuple[int, int, int]]  # (class, intersection, union) with union > 0


@dataclass(frozen=True)
class ImageCounts:
    """Per-image counts as sparse rows, and by class: ``columns[c]`` is (images, intersections,
    unions) of the images where class c has pixels, so a resample sums each class with a few
    C-level ``map`` passes over its images."""

    classes: int
    rows: List[SparseRow]
    columns: Dict[int, Tuple[List[int], List[int], List[int]]]

    @classmethod
    def from_tables(cls, intersection: Sequence[Sequence[int]],
                    union: Sequence[Sequence[int]]) -> "ImageCounts":
        if len(intersection) != len(union):
            raise ValueError("intersection and union tables differ in images")
        classes = len(intersection[0]) if intersection else 0
        rows = []
        columns: Dict[int, Tuple[List[int], List[int], List[int]]] = {}
        for image, (inter, uni) in enumerate(zip(intersection, union)):
            if len(inter) != classes or len(uni) != classes:
                raise ValueError("every image needs one count per class")
            if any(i > u for i, u in zip(inter, uni)):
                raise ValueError("an intersection exceeds its union")
            row = [(c, int(i), int(u)) for c, (i, u) in enumerate(zip(inter, uni)) if u]
            rows.append(row)
            for c, i, u in row:
                images, inters, unions = columns.setdefault(c, ([], [], []))
                images.append(image)
                inters.append(i)
                unions.append(u)
        return cls(classes=classes, rows=rows, columns=columns)


def sums(rows: Sequence[SparseRow], picks: Sequence[int]) -> Tuple[Dict[int, int], Dict[int, int]]:
    """Summed intersection and union per class over the images ``picks`` (with repeats)."""
    inter: Dict[int, int] = {}
    union: Dict[int, int] = {}
    for p in picks:
        for c, i, u in rows[p]:
            inter[c] = inter.get(c, 0) + i
            union[c] = union.get(c, 0) + u
    return inter, union


def weighted_sums(counts: ImageCounts, weights: Sequence[int]) -> Tuple[Dict[int, int], Dict[int, int]]:
    """``sums`` for a resample given as how many times each image was drawn."""
    inter: Dict[int, int] = {}
    union: Dict[int, int] = {}
    for c, (images, inters, unions) in counts.columns.items():
        drawn = list(map(weights.__getitem__, images))
        total_union = sum(map(mul, drawn, unions))
        if total_union:
            inter[c] = sum(map(mul, drawn, inters))
            union[c] = total_union
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
    """Each resample as the number of times each image is drawn (n draws with replacement)."""
    rng = random.Random(seed)
    for _ in range(resamples):
        weights = [0] * images
        for pick in rng.choices(range(images), k=images):
            weights[pick] += 1
        yield weights


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
    values = [v for v in (measure(*weighted_sums(counts, weights))
                          for weights in _draws(images, resamples, seed)) if v is not None]
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
    for weights in _draws(images, resamples, seed):
        x, y = measure(*weighted_sums(base, weights)), measure(*weighted_sums(new, weights))
        if x is not None and y is not None:
            values.append(y - x)
    low, high = _percentiles(values, confidence)
    return Interval(estimate=second - first, low=low, high=high, confidence=confidence,
                    method=f"paired bootstrap over images ({resamples} resamples, seed {seed})")
