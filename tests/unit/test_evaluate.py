"""edgefarm.agent.evaluation.evaluate: the pipelined evaluation on real files with fake runtimes.

The fake runtimes are "oracles": their outputs are a fixed function of the input
tensor, so the test can compute the expected metrics independently from the files.
"""

from __future__ import annotations

import gzip
import struct
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest
from PIL import Image

from edgefarm.agent.errors import Cancelled, DatasetModelMismatch
from edgefarm.agent.evaluation.evaluate import EvaluationError, evaluate
from edgefarm.agent.runtimes.base import Runtime, TensorInfo
from edgefarm.shared.datasets import DatasetError
from edgefarm.shared.datasets.dataset import open_dataset
from edgefarm.shared.datasets.preprocess import InputSpec, default_preprocessing
from edgefarm.shared.datasets.readers import DecodedSample, load_mask
from edgefarm.shared.stats.encoding import (
    sample_order_sha256,
    unpack_counts,
    unpack_flags,
)

H, W = 12, 16
SEG_CLASSES = 5  # class 4 appears nowhere; class 3 is only ever predicted
THRESHOLDS = np.array([30.5, 90.5, 150.5])  # pixel value -> class: 0-30, 31-90, 91-150, 151+
SHADES = (0, 60, 120, 180)  # an image region of class k has gray value SHADES[k]
VOID = 255


class FakeRuntime(Runtime):
    """Base of the oracles: remembers the input, computes outputs from it in invoke."""

    name = "fake"

    def __init__(self, input_shape, output_shape, layout="nhwc", invoke_seconds=0.0,
                 fail_on_invoke: Optional[int] = None):
        self.layout = layout
        self._inputs = [TensorInfo("input", tuple(input_shape), "float32")]
        self._outputs = [TensorInfo("output", tuple(output_shape), "float32")]
        self.invoke_seconds = invoke_seconds
        self.fail_on_invoke = fail_on_invoke
        self.invocations = 0
        self._x = None
        self._y = None

    @property
    def inputs(self):
        return self._inputs

    @property
    def outputs(self):
        return self._outputs

    def set_inputs(self, arrays):
        self._x = np.asarray(arrays[0])

    def invoke(self):
        self.invocations += 1
        if self.fail_on_invoke == self.invocations:
            raise RuntimeError("delegate crashed")
        if self.invoke_seconds:
            time.sleep(self.invoke_seconds)
        self._y = self.compute(self._x)

    def get_outputs(self):
        return [self._y]

    def compute(self, x):
        return np.zeros(self._outputs[0].shape, np.float32)


class SegmentationOracle(FakeRuntime):
    """One-hot logits of the class coded by the red channel (input is x/127.5 - 1)."""

    def compute(self, x):
        red = x[0, 0] if self.layout == "nchw" else x[0, ..., 0]
        classes = (red[..., None] > (THRESHOLDS / 127.5 - 1)).sum(-1)
        logits = np.eye(SEG_CLASSES, dtype=np.float32)[classes]
        return logits.transpose(2, 0, 1)[None] if self.layout == "nchw" else logits[None]


class ClassificationOracle(FakeRuntime):
    """Scores -|j - v| with v = mean pixel / 20, optionally after a background score."""

    def __init__(self, scores: int, background: bool = False, **kwargs):
        super().__init__((1, 8, 8, 3), (1, scores + int(background)), **kwargs)
        self.scores, self.background = scores, background

    def compute(self, x):
        v = float(((x + 1) * 127.5).mean()) / 20
        scores = -np.abs(np.arange(self.scores) - v).astype(np.float32)
        if self.background:
            scores = np.concatenate([[100.0], scores]).astype(np.float32)
        return scores[None]


# ------------------------------------------------------------------ datasets on disk


def _voc_pair(index: int):
    """An image whose shades code classes, and a mask that disagrees with it in places."""
    image = np.zeros((H, W), np.uint8)
    image[2:8, 1 + index:9 + index] = SHADES[1]
    image[6:11, 10:15] = SHADES[2]
    image[0:3, 12:16] = SHADES[3]  # predicted class 3, never in a mask
    mask = np.zeros((H, W), np.uint8)
    mask[3:9, 2:10] = 1
    mask[7:11, 9:15] = 2
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = VOID
    mask[5, 3 + index] = VOID  # a void pixel inside a region
    return np.stack([image] * 3, axis=-1), mask


def make_voc(root: Path, count: int = 3, corrupt: Optional[str] = None) -> List[str]:
    ids = [f"2007_{index:06d}" for index in range(count)]
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    for index, sample_id in enumerate(ids):
        image, mask = _voc_pair(index)
        Image.fromarray(image).save(root / "JPEGImages" / f"{sample_id}.jpg", quality=95)
        png = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask, np.uint8).tobytes())
        png.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 252 + [224, 224, 192])
        png.save(root / "SegmentationClass" / f"{sample_id}.png")
    if corrupt:
        jpeg = root / "JPEGImages" / f"{corrupt}.jpg"
        jpeg.write_bytes(jpeg.read_bytes()[:200])
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids) + "\n")
    return ids


def expected_segmentation(root: Path, ids: List[str]) -> Dict[str, object]:
    """mIoU computed independently: decoded JPEG -> class by threshold, masks as stored."""
    intersection = np.zeros(SEG_CLASSES)
    union = np.zeros(SEG_CLASSES)
    correct = valid = 0
    for sample_id in ids:
        red = np.asarray(Image.open(root / "JPEGImages" / f"{sample_id}.jpg").convert("RGB"))[..., 0]
        pred = (red[..., None] > THRESHOLDS).sum(-1)
        label = np.asarray(Image.open(root / "SegmentationClass" / f"{sample_id}.png"))
        keep = label != VOID
        correct += int((pred[keep] == label[keep]).sum())
        valid += int(keep.sum())
        for c in range(SEG_CLASSES):
            p, g = (pred == c) & keep, (label == c) & keep
            intersection[c] += (p & g).sum()
            union[c] += (p | g).sum()
    per_class = {str(c): (intersection[c] / union[c] if union[c] else None) for c in range(SEG_CLASSES)}
    present = [v for v in per_class.values() if v is not None]
    return {"miou": sum(present) / len(present), "pixel_accuracy": correct / valid,
            "per_class_iou": per_class}


def miou_from_counts(intersection: List[List[int]], union: List[List[int]]) -> float:
    """The dataset mIoU from per-image counts: summed per class, the mean IoU of the classes
    with a non-empty union (``ConfusionMatrix.miou``'s definition and arithmetic)."""
    inter = np.sum(np.asarray(intersection, dtype=np.int64), axis=0)
    uni = np.sum(np.asarray(union, dtype=np.int64), axis=0)
    return float(np.mean([float(i / u) for i, u in zip(inter, uni) if u > 0]))


def seg_spec(layout: str = "nhwc") -> InputSpec:
    return InputSpec((1, 3, H, W) if layout == "nchw" else (1, H, W, 3), "float32", layout)


# ------------------------------------------------------------------ segmentation


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_segmentation_miou_matches_an_independent_computation(tmp_path, layout):
    ids = make_voc(tmp_path)
    out_shape = (1, SEG_CLASSES, H, W) if layout == "nchw" else (1, H, W, SEG_CLASSES)
    runtime = SegmentationOracle(seg_spec(layout).shape, out_shape, layout=layout)
    seen = []
    outcome = evaluate(runtime, open_dataset(tmp_path, "voc-seg").decoded(), "segmentation", seg_spec(layout),
                       default_preprocessing("float32"), SEG_CLASSES,
                       progress=lambda done, total: seen.append(done))
    expected = expected_segmentation(tmp_path, ids)
    assert outcome.metrics["sample_count"] == 3
    assert outcome.metrics["miou"] == pytest.approx(expected["miou"])
    assert outcome.metrics["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"])
    assert outcome.metrics["per_class_iou"] == pytest.approx(expected["per_class_iou"])
    assert outcome.metrics["per_class_iou"]["3"] == 0.0  # predicted, never present: counts
    assert outcome.metrics["per_class_iou"]["4"] is None  # nowhere: left out of the mean
    assert 0.3 < outcome.metrics["miou"] < 0.9
    assert seen == [1, 2, 3]
    assert [s.id for s in outcome.samples] == ids
    # the per-image counts, summed over the images, give back the reported mIoU exactly
    per_sample = outcome.metrics["per_sample"]
    assert per_sample["count"] == 3 and per_sample["order_sha256"] == sample_order_sha256(ids)
    iou = per_sample["iou"]
    assert (iou["images"], iou["classes"]) == (3, SEG_CLASSES)
    intersection = unpack_counts(iou["intersection"], 3, SEG_CLASSES)
    union = unpack_counts(iou["union"], 3, SEG_CLASSES)
    assert miou_from_counts(intersection, union) == outcome.metrics["miou"]
    assert union != [[0] * SEG_CLASSES] * 3 and intersection != union
    assert len(outcome.inference_ms) == len(outcome.end_to_end_ms) == 3
    for timing, total in zip(outcome.samples, outcome.end_to_end_ms):
        assert total == pytest.approx(timing.decode_ms + timing.preprocess_ms
                                      + timing.inference_ms + timing.postprocess_ms)
    assert set(outcome.stage_ms) == {"decode", "preprocess", "inference", "postprocess", "end_to_end"}


def test_segmentation_logits_are_resized_to_the_mask(tmp_path):
    make_voc(tmp_path, count=2)

    class Coarse(FakeRuntime):  # 2x smaller logits: class 1 everywhere
        def compute(self, x):
            logits = np.zeros((1, H // 2, W // 2, SEG_CLASSES), np.float32)
            logits[..., 1] = 1.0
            return logits

    runtime = Coarse((1, H, W, 3), (1, H // 2, W // 2, SEG_CLASSES))
    outcome = evaluate(runtime, open_dataset(tmp_path, "voc-seg").decoded(), "segmentation", seg_spec(),
                       None, SEG_CLASSES)
    masks = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "SegmentationClass").iterdir())]
    ones = sum(int((m == 1).sum()) for m in masks)
    valid = sum(int((m != VOID).sum()) for m in masks)
    assert outcome.metrics["pixel_accuracy"] == pytest.approx(ones / valid)
    assert outcome.metrics["miou"] == pytest.approx(ones / valid / 3)  # classes 0, 2 at IoU 0


def test_a_corrupt_jpeg_fails_the_evaluation_naming_the_sample(tmp_path):
    ids = make_voc(tmp_path, count=4, corrupt="2007_000002")
    runtime = SegmentationOracle((1, H, W, 3), (1, H, W, SEG_CLASSES))
    with pytest.raises(DatasetError, match="2007_000002") as failure:
        evaluate(runtime, open_dataset(tmp_path, "voc-seg").decoded(), "segmentation", seg_spec(), None,
                 SEG_CLASSES)
    assert "JPEGImages" in str(failure.value)
    assert runtime.invocations <= 2 and ids[2] == "2007_000002"
    _assert_no_pipeline_threads()


def test_an_inference_error_names_the_sample_and_stops_the_threads(tmp_path):
    make_voc(tmp_path, count=5)
    runtime = SegmentationOracle((1, H, W, 3), (1, H, W, SEG_CLASSES), fail_on_invoke=2)
    with pytest.raises(EvaluationError, match="sample 2007_000001: inference failed.*delegate crashed"):
        evaluate(runtime, open_dataset(tmp_path, "voc-seg").decoded(), "segmentation", seg_spec(), None,
                 SEG_CLASSES)
    _assert_no_pipeline_threads()


def test_mask_classes_beyond_the_model_are_a_mismatch(tmp_path):
    make_voc(tmp_path, count=2)
    runtime = SegmentationOracle((1, H, W, 3), (1, H, W, 2))
    with pytest.raises(DatasetModelMismatch, match="sample 2007_000000: mask holds class 2"):
        evaluate(runtime, open_dataset(tmp_path, "voc-seg").decoded(), "segmentation", seg_spec(), None, None)


def test_model_and_dataset_mismatches_are_found_before_any_sample():
    def untouchable():
        raise AssertionError("no sample should be read")
        yield  # pragma: no cover

    flat = FakeRuntime((1, H, W, 3), (1, 1000))
    with pytest.raises(DatasetModelMismatch, match="4-D output"):
        evaluate(flat, untouchable(), "segmentation", seg_spec(), None, 21)
    seg = FakeRuntime((1, H, W, 3), (1, H, W, 21))
    with pytest.raises(DatasetModelMismatch, match="dataset has 19 classes.*scores 21"):
        evaluate(seg, untouchable(), "segmentation", seg_spec(), None, 19)
    cls = FakeRuntime((1, 8, 8, 3), (1, 10))
    with pytest.raises(DatasetModelMismatch, match="dataset has 100 classes"):
        evaluate(cls, untouchable(), "classification", InputSpec((1, 8, 8, 3), "float32"), None, 100)
    with pytest.raises(DatasetModelMismatch, match="no segmentation mask"):
        evaluate(seg, iter([DecodedSample("a", np.zeros((4, 4, 3), np.uint8), label=1)]),
                 "segmentation", seg_spec(), None, 21)


# ------------------------------------------------------------------ classification


CLASS_NAMES = [f"class{c}" for c in range(8)]
# (true class, centre the oracle sees): the oracle ranks c, c+1, c-1, c+2, c-2, ...
# Every class needs a folder: imagefolder numbers the folders that exist.
CLASS_CASES = [(3, 3), (3, 2), (5, 5), (1, 4), (0, 7), (6, 4), (7, 7), (2, 0), (4, 1)]


def make_imagefolder(root: Path) -> None:
    for number, (label, centre) in enumerate(CLASS_CASES):
        folder = root / CLASS_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        shade = 20 * centre + 7  # v = centre + 0.35: no ties in the oracle's ranking
        Image.new("RGB", (10, 6), (shade,) * 3).save(folder / f"img{number}.png")


def expected_topk() -> Dict[str, float]:
    ranks = []
    for label, centre in CLASS_CASES:
        v = centre + 0.35
        order = sorted(range(len(CLASS_NAMES)), key=lambda j: (abs(j - v), j))
        ranks.append(order.index(label))
    return {"top1": sum(r < 1 for r in ranks) / len(ranks), "top5": sum(r < 5 for r in ranks) / len(ranks)}


@pytest.mark.parametrize("background", [False, True])
def test_classification_top1_top5_on_an_imagefolder(tmp_path, background):
    make_imagefolder(tmp_path)
    runtime = ClassificationOracle(len(CLASS_NAMES), background=background)
    outcome = evaluate(runtime, open_dataset(tmp_path, "imagefolder").decoded(), "classification",
                       InputSpec((1, 8, 8, 3), "float32"), None, len(CLASS_NAMES))
    expected = expected_topk()
    assert 0 < expected["top1"] < expected["top5"] < 1
    per_sample = outcome.metrics.pop("per_sample")
    assert outcome.metrics == {"sample_count": len(CLASS_CASES), **expected}
    # the per-sample bits, in evaluation order, give back the reported accuracies
    count = len(CLASS_CASES)
    assert per_sample["count"] == count
    assert per_sample["order_sha256"] == sample_order_sha256([t.id for t in outcome.samples])
    top1 = unpack_flags(per_sample["top1_correct"], count)
    top5 = unpack_flags(per_sample["top5_correct"], count)
    assert sum(top1) / count == outcome.metrics["top1"] and sum(top5) / count == outcome.metrics["top5"]
    assert all(five for one, five in zip(top1, top5) if one) and top1 != top5
    assert outcome.details["label_offset"] == (1 if background else 0)
    assert sorted(outcome.predictions.values()) == sorted(centre for _, centre in CLASS_CASES)


def test_classification_labels_beyond_the_scores_are_a_mismatch(tmp_path):
    make_imagefolder(tmp_path)
    runtime = ClassificationOracle(6)
    with pytest.raises(DatasetModelMismatch, match="has label 6 but the model scores 6 classes"):
        evaluate(runtime, open_dataset(tmp_path, "imagefolder").decoded(), "classification",
                 InputSpec((1, 8, 8, 3), "float32"), None, None)


# ------------------------------------------------------------------ dataset readers


def test_masks_keep_palette_indices_and_void(tmp_path):
    make_voc(tmp_path, count=1)
    mask = load_mask(tmp_path / "SegmentationClass" / "2007_000000.png")
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, _voc_pair(0)[1])  # indices as stored, 255 kept
    Image.new("RGB", (4, 4), (128, 0, 0)).save(tmp_path / "colour.png")
    with pytest.raises(ValueError, match="RGB image"):
        load_mask(tmp_path / "colour.png")


@pytest.mark.parametrize("compressed", [False, True])
def test_mnist_idx_records(tmp_path, compressed):
    images = np.arange(5 * 28 * 28, dtype=np.uint32).reshape(5, 28, 28).astype(np.uint8)
    labels = bytes([7, 2, 1, 0, 4])
    opener = gzip.open if compressed else open
    suffix = ".gz" if compressed else ""
    with opener(tmp_path / f"t10k-images-idx3-ubyte{suffix}", "wb") as out:
        out.write(struct.pack(">IIII", 0x803, 5, 28, 28) + images.tobytes())
    with opener(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", "wb") as out:
        out.write(struct.pack(">II", 0x801, 5) + labels)
    decoded = list(open_dataset(tmp_path, "mnist-idx").decoded(limit=4))
    assert [d.id for d in decoded] == ["t10k-0", "t10k-1", "t10k-2", "t10k-3"]
    assert [d.label for d in decoded] == [7, 2, 1, 0]
    for index, sample in enumerate(decoded):
        np.testing.assert_array_equal(sample.image, images[index])


def test_cifar10_bin_records_become_hwc(tmp_path):
    planes = np.random.default_rng(3).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    records = b"".join(bytes([label]) + planes[i].tobytes() for i, label in enumerate([3, 9, 0]))
    (tmp_path / "test_batch.bin").write_bytes(records)
    decoded = list(open_dataset(tmp_path, "cifar10-bin").decoded())
    assert [d.label for d in decoded] == [3, 9, 0]
    for index, sample in enumerate(decoded):
        assert sample.image.shape == (32, 32, 3)
        np.testing.assert_array_equal(sample.image, planes[index].transpose(1, 2, 0))


# ------------------------------------------------------------------ control


def slow_samples(count: int, decode_seconds: float):
    for index in range(count):
        time.sleep(decode_seconds)
        yield DecodedSample(f"s{index}", np.full((8, 8, 3), 20 * (index % 8) + 7, np.uint8),
                            label=index % 8)


def test_should_stop_cancels_between_samples():
    runtime = ClassificationOracle(8)
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled, match="after 3 samples"):
        evaluate(runtime, slow_samples(50, 0.001), "classification",
                 InputSpec((1, 8, 8, 3), "float32"), None, 8, should_stop=should_stop)
    assert runtime.invocations == 3
    _assert_no_pipeline_threads()


def test_limit_stops_early():
    outcome = evaluate(ClassificationOracle(8), slow_samples(50, 0.0), "classification",
                       InputSpec((1, 8, 8, 3), "float32"), None, 8, limit=7)
    assert outcome.metrics["sample_count"] == 7


def test_stages_overlap():
    runtime = ClassificationOracle(8, invoke_seconds=0.020)
    outcome = evaluate(runtime, slow_samples(20, 0.015), "classification",
                       InputSpec((1, 8, 8, 3), "float32"), None, 8)
    serial_seconds = sum(outcome.end_to_end_ms) / 1e3  # >= 20 * (15 + 20) ms = 0.7 s
    assert serial_seconds >= 0.69
    assert outcome.stage_ms["decode"] >= 14 and outcome.stage_ms["inference"] >= 19
    # pipelined: about 20 * 20 ms + one decode, well under the serial sum
    assert outcome.wall_seconds < 0.8 * serial_seconds


def _assert_no_pipeline_threads():
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if not any(t.name.startswith("evaluation-") for t in threading.enumerate()):
            return
        time.sleep(0.01)
    raise AssertionError("pipeline threads still running")
