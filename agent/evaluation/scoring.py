"""Scorers: what the evaluation does with one model output, per task, and the checks
that a dataset fits a model (raised as ``DatasetModelMismatch`` before any work where
the model's declared output shape allows, otherwise at the first sample).

``SegmentationScorer`` turns a ``[1,H,W,C]`` (or, for an nchw runtime,
``[1,C,H,W]``) output into a class map at the mask's size (dequantize, bilinear
resize of the logits, argmax) and feeds one dataset-wide ``ConfusionMatrix``.
Both also keep the per-sample record of the result (``per_sample``: each image's
intersection and union per class, each sample's rank of its true class, in evaluation order).
``ClassificationScorer`` ranks a ``[1,N]`` score vector with ``TopK``; with
``label_offset=1`` score 0 (a "background" class, as in the 1001-class TF-slim
ImageNet models) is dropped so that score ``i + 1`` belongs to dataset class ``i``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgefarm.shared.datasets.preprocess import dequantize

from ..errors import DatasetModelMismatch
from .metrics import ConfusionMatrix, TopK, argmax_map, resize_logits
from .per_sample import classification_record, segmentation_record

IGNORE_INDEX = 255


def _output_info(runtime: Any) -> Tuple[str, Tuple[int, ...], Optional[Tuple[float, int]]]:
    info = runtime.outputs[0]
    return info.name, tuple(int(d) for d in info.shape), info.quantization


class SegmentationScorer:
    """Dataset-wide confusion matrix over the model's class maps."""

    task = "segmentation"

    def __init__(self, runtime: Any, layout: str, num_classes: Optional[int] = None,
                 class_names: Optional[Sequence[str]] = None) -> None:
        name, shape, self.quantization = _output_info(runtime)
        if len(shape) != 4:
            raise DatasetModelMismatch(
                f"segmentation needs a 4-D output [1,H,W,C] (or [1,C,H,W]) of per-class "
                f"logits; the model's output {name!r} has shape {list(shape)}")
        self.channels_first = str(layout).lower() == "nchw" and (
            num_classes is None or shape[1] == num_classes)
        channels = shape[1] if self.channels_first else shape[3]
        if num_classes is not None and channels != num_classes:
            raise DatasetModelMismatch(
                f"the dataset has {num_classes} classes but the model's output {name!r} "
                f"{list(shape)} scores {channels}")
        self.num_classes = channels
        self.class_names = list(class_names) if class_names else None
        self.confusion = ConfusionMatrix(channels, ignore_index=IGNORE_INDEX)
        self.count = 0
        self.ids: List[str] = []  # evaluation order
        self.intersections: List[np.ndarray] = []  # per image, per class
        self.unions: List[np.ndarray] = []

    def check_sample(self, sample: Any) -> None:
        """Refuse a sample without a mask, or with class indices the model cannot predict."""
        if sample.mask is None:
            raise DatasetModelMismatch(f"sample {sample.id} has no segmentation mask; "
                                       "segmentation needs a voc-seg dataset")
        mask = np.asarray(sample.mask)
        bad = mask[(mask != IGNORE_INDEX) & (mask >= self.num_classes)]
        if bad.size:
            raise DatasetModelMismatch(
                f"sample {sample.id}: mask holds class {int(bad.max())} but the model predicts "
                f"{self.num_classes} classes (0..{self.num_classes - 1}, 255 = void)")

    def target(self, sample: Any) -> np.ndarray:
        return np.asarray(sample.mask)

    def logits(self, output: np.ndarray) -> np.ndarray:
        """HxWxC float32 logits from one raw output."""
        values = dequantize(output, self.quantization)
        if values.ndim != 4 or values.shape[0] != 1:
            raise DatasetModelMismatch(f"segmentation output has shape {list(values.shape)}, "
                                       "expected [1,H,W,C] or [1,C,H,W]")
        values = values[0]
        return values.transpose(1, 2, 0) if self.channels_first else values

    def add(self, sample_id: str, output: np.ndarray, mask: np.ndarray) -> None:
        logits = resize_logits(self.logits(output), mask.shape[:2])
        image = self.confusion.update(argmax_map(logits), mask)
        intersection = np.diagonal(image)
        self.intersections.append(intersection.copy())
        self.unions.append(image.sum(axis=0) + image.sum(axis=1) - intersection)
        self.ids.append(str(sample_id))
        self.count += 1

    def metrics(self) -> Dict[str, Any]:
        per_class = self.confusion.per_class_iou()
        names = self.class_names if self.class_names and len(self.class_names) == len(per_class) \
            else [str(index) for index in per_class]
        metrics = {
            "sample_count": self.count,
            "miou": self.confusion.miou(),
            "pixel_accuracy": self.confusion.pixel_accuracy(),
            "per_class_iou": {names[index]: value for index, value in per_class.items()},
        }
        if self.count:
            record = segmentation_record(self.ids, self.intersections, self.unions,
                                         self.num_classes)
            note = record.pop("note", None)
            metrics["per_sample"] = record
            if note:
                metrics["per_sample_note"] = note
        return metrics

    def details(self) -> Dict[str, Any]:
        return {"num_classes": self.num_classes, "ignore_index": IGNORE_INDEX,
                "miou_classes": "classes with a non-empty union (in ground truth or predicted)"}


def _score_count(name: str, shape: Sequence[int]) -> int:
    size = int(np.prod(shape)) if len(shape) else 1
    if not shape or size != shape[-1] or size < 1:
        raise DatasetModelMismatch(f"classification needs one score vector [1,N]; the model's "
                                   f"output {name!r} has shape {list(shape)}")
    return size


class ClassificationScorer:
    """Top-1 / top-5 over the dataset."""

    task = "classification"

    def __init__(self, runtime: Any, num_classes: Optional[int] = None,
                 label_offset: Optional[int] = None, k: int = 5) -> None:
        name, shape, self.quantization = _output_info(runtime)
        scores = _score_count(name, shape)
        if label_offset is None:  # the 1001-score convention when the dataset says 1000
            label_offset = 1 if num_classes is not None and scores == num_classes + 1 else 0
        if label_offset not in (0, 1):
            raise ValueError(f"label_offset must be 0 or 1, not {label_offset}")
        self.label_offset = label_offset
        self.num_classes = scores - label_offset
        if num_classes is not None and self.num_classes < num_classes:
            raise DatasetModelMismatch(
                f"the dataset has {num_classes} classes but the model's output {name!r} "
                f"{list(shape)} scores {self.num_classes} (label_offset {label_offset})")
        self.topk = TopK(k)
        self.predictions: Dict[str, int] = {}  # sample id -> top-1 class
        self.ids: List[str] = []  # evaluation order
        self.ranks: List[int] = []  # the rank of each sample's true class (0 = top-1)

    def check_sample(self, sample: Any) -> None:
        if sample.label is None:
            raise DatasetModelMismatch(f"sample {sample.id} has no class label; classification "
                                       "needs an imagenet-val, imagefolder, mnist-idx or "
                                       "cifar10-bin dataset")
        if not 0 <= int(sample.label) < self.num_classes:
            raise DatasetModelMismatch(
                f"sample {sample.id} has label {sample.label} but the model scores "
                f"{self.num_classes} classes (label_offset {self.label_offset})")

    def target(self, sample: Any) -> int:
        return int(sample.label)

    def add(self, sample_id: str, output: np.ndarray, label: int) -> None:
        scores = dequantize(output, self.quantization).reshape(-1)[self.label_offset:]
        if scores.size != self.num_classes:
            raise DatasetModelMismatch(f"output of {scores.size + self.label_offset} scores, "
                                       f"expected {self.num_classes + self.label_offset}")
        self.ranks.append(self.topk.update(scores, int(label)))
        self.ids.append(str(sample_id))
        self.predictions[sample_id] = int(np.argmax(scores))

    def metrics(self) -> Dict[str, Any]:
        metrics = {"sample_count": self.topk.count, "top1": self.topk.top1(), "top5": self.topk.top5()}
        if self.ids:
            metrics["per_sample"] = classification_record(self.ids, self.ranks, min(5, self.topk.k))
        return metrics

    def details(self) -> Dict[str, Any]:
        return {"num_classes": self.num_classes, "label_offset": self.label_offset}


def make_scorer(task: str, runtime: Any, layout: str, num_classes: Optional[int] = None,
                label_offset: Optional[int] = None,
                class_names: Optional[Sequence[str]] = None) -> Any:
    task = str(task)
    if task == "segmentation":
        return SegmentationScorer(runtime, layout, num_classes, class_names)
    if task == "classification":
        return ClassificationScorer(runtime, num_classes, label_offset)
    raise ValueError(f"cannot evaluate task {task!r}: expected classification or segmentation")
