"""edgefarm.agent.agreement: the error statistics, PSNR and output matching, on arrays."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from edgefarm.agent.agreement import AgreementError, Comparison, OutputStats, align, convert_input, psnr_db


def test_psnr_is_ten_log10_peak_squared_over_mse():
    reference = np.array([[0.0, 2.0, -4.0, 1.0]])
    candidate = reference + np.array([[0.1, -0.1, 0.0, 0.2]])
    stats = OutputStats("y", "y")
    stats.add(candidate, reference)
    summary = stats.summary()
    mse = (0.01 + 0.01 + 0.0 + 0.04) / 4
    assert summary["psnr_db"] == pytest.approx(10 * math.log10(4.0 ** 2 / mse))
    assert summary["max_abs_error"] == pytest.approx(0.2)
    assert summary["mean_abs_error"] == pytest.approx(0.4 / 4)
    assert not summary["identical"]


def test_identical_outputs_have_no_finite_psnr():
    stats = OutputStats("y", "y")
    stats.add(np.ones((1, 3)), np.ones((1, 3)))
    assert stats.summary()["psnr_db"] is None and stats.summary()["identical"]
    assert psnr_db(0.0, 1.0) is None


def test_statistics_accumulate_over_samples_with_one_peak():
    stats = OutputStats("y", "y")
    stats.add(np.array([1.0, 1.0]), np.array([1.0, 0.0]))  # error 1 on the second value
    stats.add(np.array([10.0, 0.0]), np.array([10.0, 0.0]))  # peak 10 comes from here
    assert stats.summary()["psnr_db"] == pytest.approx(10 * math.log10(100 / 0.25))


def test_align_transposes_nchw_to_nhwc_and_refuses_other_shapes():
    nchw = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    nhwc = nchw.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(align(nchw, nhwc), nhwc)
    assert align(np.zeros((1, 10)), np.zeros((10,))).shape == (10,)
    with pytest.raises(AgreementError, match="cannot be compared"):
        align(np.zeros((1, 3)), np.zeros((1, 4)))


def test_top1_and_pixel_agreement():
    classification = Comparison(["p"], ["p"], "classification")
    classification.add([np.array([[0.1, 0.9]])], [np.array([[0.2, 0.8]])])
    classification.add([np.array([[0.6, 0.4]])], [np.array([[0.2, 0.8]])])
    assert classification.summary()["top1_agreement"] == 0.5
    segmentation = Comparison(["s"], ["s"], "segmentation")
    logits = np.zeros((1, 2, 2, 3))
    logits[0, 0, 0, 1] = 1.0
    segmentation.add([logits], [np.zeros((1, 2, 2, 3))])
    summary = segmentation.summary()
    assert summary["pixel_agreement"] == 0.75 and summary["top1_agreement"] is None


def test_synthetic_input_is_made_fit_for_the_reference():
    source = SimpleNamespace(shape=(1, 3, 2, 2), dtype="float32", quantization=None)
    target = SimpleNamespace(shape=(1, 2, 2, 3), dtype="int8", quantization=(0.5, 1))
    array = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2) / 4
    converted = convert_input(array, source, target)
    assert converted.dtype == np.int8 and converted.shape == (1, 2, 2, 3)
    expected = np.round(array.transpose(0, 2, 3, 1) / 0.5) + 1
    np.testing.assert_array_equal(converted, expected.astype(np.int8))
