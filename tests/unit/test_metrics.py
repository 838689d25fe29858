"""edgefarm.agent.evaluation.metrics: confusion-matrix mIoU, pixel accuracy, top-k, logits resize."""

from __future__ import annotations

import numpy as np
import pytest

from edgefarm.agent.evaluation.metrics import ConfusionMatrix, TopK, argmax_map, resize_logits

VOID = 255


def test_void_pixels_never_count_even_where_predicted_as_background():
    label = np.array([[0, VOID], [1, 1]])
    pred = np.array([[0, 0], [1, 0]])
    cm = ConfusionMatrix(2)
    cm.update(pred, label)
    # matrix[label, pred]: (0,0)=1, (1,1)=1, (1,0)=1; the void pixel is nowhere.
    assert cm.matrix.tolist() == [[1, 0], [1, 1]]
    assert cm.total == 3
    # class 0: TP 1, FP 1, FN 0 -> 1/2. Had void counted as background it would be 2/3.
    assert cm.per_class_iou() == {0: 0.5, 1: 0.5}
    assert cm.miou() == 0.5
    assert cm.pixel_accuracy() == pytest.approx(2 / 3)


def test_classes_absent_from_labels_and_predictions_are_left_out_of_the_mean():
    label = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 2, 1, 1]])  # class 2 predicted but never present; class 3 nowhere
    cm = ConfusionMatrix(4)
    cm.update(pred, label)
    iou = cm.per_class_iou()
    assert iou == {0: 0.5, 1: 1.0, 2: 0.0, 3: None}
    assert cm.miou() == pytest.approx((0.5 + 1.0 + 0.0) / 3)  # not / 4, and class 2 counts


def test_dataset_wide_accumulation_differs_from_per_image_averaging():
    # Image A: 4 pixels of class 0, all predicted 0 -> its own mIoU is 1.0 (class 1 absent).
    label_a, pred_a = np.zeros((2, 2), int), np.zeros((2, 2), int)
    # Image B: 50 pixels of class 0 and 50 of class 1, all predicted 1:
    # IoU0 = 0/50 = 0, IoU1 = 50/100 = 0.5 -> its own mIoU is 0.25.
    label_b = np.array([[0] * 50 + [1] * 50])
    pred_b = np.ones_like(label_b)
    cm = ConfusionMatrix(2)
    cm.update(pred_a, label_a)
    cm.update(pred_b, label_b)
    # Whole dataset: IoU0 = TP 4 / (4 + FN 50) = 4/54, IoU1 = 50 / (50 + FP 50) = 0.5.
    assert cm.per_class_iou() == {0: pytest.approx(4 / 54), 1: 0.5}
    assert cm.miou() == pytest.approx((4 / 54 + 0.5) / 2)  # 0.28704
    per_image = (1.0 + 0.25) / 2  # 0.625: what averaging per image gives
    with_leading_zero = (0.0 + 1.0 + 0.25) / 3  # 0.41667: the study's defect
    assert abs(cm.miou() - per_image) > 0.3
    assert abs(cm.miou() - with_leading_zero) > 0.1
    assert cm.pixel_accuracy() == pytest.approx((4 + 50) / 104)


def test_labels_outside_the_classes_are_refused_but_void_is_not():
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 1]]), np.array([[VOID, 1]]))
    with pytest.raises(ValueError, match="label value 7 .*0..2"):
        cm.update(np.array([[0, 1]]), np.array([[7, 1]]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
    assert cm.total == 1


def test_empty_matrix_has_no_miou_or_accuracy():
    cm = ConfusionMatrix(3)
    cm.update(np.zeros((2, 2), int), np.full((2, 2), VOID))
    assert cm.miou() is None
    assert cm.pixel_accuracy() is None
    assert cm.per_class_iou() == {0: None, 1: None, 2: None}


def test_topk_counts_hits_over_the_dataset():
    topk = TopK(5)
    scores = np.arange(10, dtype=np.float32)  # class 9 best, then 8, 7, ...
    assert topk.update(scores, 9) == 0  # top-1 hit
    assert topk.update(scores, 5) == 4  # top-5 hit only
    assert topk.update(scores, 4) == 5  # miss
    assert topk.update(scores, 0) == 9  # miss
    assert topk.top1() == 0.25
    assert topk.top5() == 0.5


def test_topk_ties_go_to_the_lower_class_index():
    topk = TopK(5)
    assert topk.update(np.array([0.5, 0.5, 0.1]), 1) == 1  # class 0 wins the tie
    assert topk.update(np.array([0.5, 0.5, 0.1]), 0) == 0
    flat = np.zeros(10)  # all tied: rank is the class index
    assert topk.update(flat, 3) == 3
    assert topk.update(flat, 7) == 7
    assert topk.top1() == 0.25
    assert topk.top5() == 0.75
    with pytest.raises(ValueError, match="label 10"):
        topk.update(flat, 10)


def _direct_bilinear(src: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear with half-pixel centres and clamped edges, pixel by pixel."""
    in_h, in_w, channels = src.shape
    out = np.zeros((height, width, channels))
    for i in range(height):
        y = min(max((i + 0.5) * in_h / height - 0.5, 0.0), in_h - 1)
        y0 = int(np.floor(y))
        y1, wy = min(y0 + 1, in_h - 1), y - y0
        for j in range(width):
            x = min(max((j + 0.5) * in_w / width - 0.5, 0.0), in_w - 1)
            x0 = int(np.floor(x))
            x1, wx = min(x0 + 1, in_w - 1), x - x0
            top = src[y0, x0] * (1 - wx) + src[y0, x1] * wx
            bottom = src[y1, x0] * (1 - wx) + src[y1, x1] * wx
            out[i, j] = top * (1 - wy) + bottom * wy
    return out


@pytest.mark.parametrize("size", [(7, 9), (3, 2), (5, 5), (12, 1)])
def test_resize_logits_matches_a_direct_computation(size):
    src = np.random.default_rng(1).standard_normal((5, 4, 3)).astype(np.float32)
    result = resize_logits(src, size)
    assert result.shape == (*size, 3)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, _direct_bilinear(src.astype(np.float64), *size), atol=1e-5)


def test_resize_logits_by_hand():
    column = np.array([[[0.0]], [[1.0]]], dtype=np.float32)  # 2x1x1
    # Output row i samples source row (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped).
    assert resize_logits(column, (4, 1)).ravel().tolist() == [0.0, 0.25, 0.75, 1.0]
    np.testing.assert_array_equal(resize_logits(column, (2, 1)), column)


def test_argmax_map_breaks_ties_to_the_lower_index():
    logits = np.array([[[0.1, 0.9, 0.9], [2.0, 1.0, 2.0]]])
    assert argmax_map(logits).tolist() == [[1, 0]]
