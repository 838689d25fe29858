"""edgefarm.shared.datasets.preprocess: input tensors of the right shape, dtype, order and scale."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgefarm.agent.runtimes.base import TensorInfo
from edgefarm.shared.contract.schemas import Preprocessing
from edgefarm.shared.datasets.preprocess import (
    InputSpec,
    default_preprocessing,
    dequantize,
    preprocess_image,
)

RAW = Preprocessing(mean=[0.0], std=[1.0])  # pixels unchanged, as float


def rgb_image(height=4, width=6, rgb=(10, 20, 30)) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = rgb
    return image


def test_input_spec_from_tensor_info_for_both_layouts():
    nhwc = InputSpec.from_tensor(TensorInfo("in", (1, 224, 160, 3), "float32"), "nhwc")
    assert (nhwc.height, nhwc.width, nhwc.channels) == (224, 160, 3)
    nchw = InputSpec.from_tensor(TensorInfo("in", (1, 3, 224, 160), "uint8", (0.5, 3)), "nchw")
    assert (nchw.height, nchw.width, nchw.channels) == (224, 160, 3)
    assert nchw.quantization == (0.5, 3)
    gray = InputSpec.from_tensor(TensorInfo("in", (1, 28, 28), "float32"), "nhwc")
    assert (gray.height, gray.width, gray.channels) == (28, 28, 1)
    # TFLite reports (0.0, 0) for tensors that are not quantized
    assert InputSpec((1, 8, 8, 3), "int8", "nhwc", (0.0, 0)).quantization is None
    with pytest.raises(ValueError, match="5 channels"):
        InputSpec((1, 8, 8, 5), "float32", "nhwc")
    with pytest.raises(ValueError, match="layout"):
        InputSpec((1, 8, 8, 3), "float32", "hwc")


def test_nhwc_and_nchw_shapes_and_the_same_values():
    image = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    nhwc = preprocess_image(image, InputSpec((1, 4, 6, 3), "float32", "nhwc"))
    nchw = preprocess_image(image, InputSpec((1, 3, 4, 6), "float32", "nchw"))
    assert nhwc.shape == (1, 4, 6, 3) and nhwc.dtype == np.float32
    assert nchw.shape == (1, 3, 4, 6) and nchw.dtype == np.float32
    np.testing.assert_array_equal(nchw[0], nhwc[0].transpose(2, 0, 1))


def test_resize_is_pillow_bilinear():
    image = np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(image).resize((7, 5), Image.BILINEAR), np.float32)
    out = preprocess_image(image, InputSpec((1, 5, 7, 3), "float32"), RAW)
    np.testing.assert_array_equal(out[0], expected)


def test_bgr_reverses_channels():
    bgr = Preprocessing(mean=[0.0], std=[1.0], color="bgr")
    out = preprocess_image(rgb_image(), InputSpec((1, 4, 6, 3), "float32"), bgr)
    assert out[0, 0, 0].tolist() == [30.0, 20.0, 10.0]
    rgb = preprocess_image(rgb_image(), InputSpec((1, 3, 4, 6), "float32", "nchw"), RAW)
    assert rgb[0, :, 0, 0].tolist() == [10.0, 20.0, 30.0]


def test_default_normalisation_is_x_over_127_5_minus_1():
    image = np.array([[[0, 51, 255]]], np.uint8)
    out = preprocess_image(image, InputSpec((1, 1, 1, 3), "float32"), default_preprocessing("float32"))
    np.testing.assert_allclose(out[0, 0, 0], [-1.0, 51 / 127.5 - 1, 1.0], rtol=1e-6)
    custom = Preprocessing(mean=[1.0, 2.0, 3.0], std=[2.0, 4.0, 8.0], scale=2.0)
    out = preprocess_image(image, InputSpec((1, 1, 1, 3), "float32"), custom)
    np.testing.assert_allclose(out[0, 0, 0], [-0.5, 100 / 4, 507 / 8])


def test_quantized_int8_input_uses_scale_and_zero_point():
    image = np.array([[[0, 51, 255]]], np.uint8)  # normalised: -1, -0.6, 1
    spec = InputSpec((1, 1, 1, 3), "int8", "nhwc", (1 / 128, 0))
    out = preprocess_image(image, spec, default_preprocessing("int8"))
    assert out.dtype == np.int8
    assert out[0, 0, 0].tolist() == [-128, -77, 127]  # -76.8 rounds to -77; 128 clips to 127


def test_quantized_uint8_input_uses_scale_and_zero_point():
    image = np.array([[[0, 51, 255]]], np.uint8)
    spec = InputSpec((1, 1, 1, 3), "uint8", "nhwc", (1 / 128, 128))
    out = preprocess_image(image, spec, default_preprocessing("uint8"))
    assert out.dtype == np.uint8
    assert out[0, 0, 0].tolist() == [0, 51, 255]  # 51.2 -> 51; 256 clips to 255
    spec = InputSpec((1, 1, 1, 3), "uint8", "nhwc", (0.02, 10))
    out = preprocess_image(image, spec, default_preprocessing("uint8"))
    assert out[0, 0, 0].tolist() == [0, 0, 60]  # -40 and -20 clip to 0; 1/0.02 + 10 = 60


def test_raw_integer_inputs_take_the_pixels():
    image = np.array([[[0, 51, 255]]], np.uint8)
    raw_u8 = preprocess_image(image, InputSpec((1, 1, 1, 3), "uint8"), default_preprocessing("uint8"))
    assert raw_u8.dtype == np.uint8 and raw_u8[0, 0, 0].tolist() == [0, 51, 255]
    raw_i8 = preprocess_image(image, InputSpec((1, 1, 1, 3), "int8"), default_preprocessing("int8"))
    assert raw_i8.dtype == np.int8 and raw_i8[0, 0, 0].tolist() == [-128, -77, 127]


def test_gray_and_colour_are_converted_to_the_input_channels():
    gray = np.full((28, 28), 200, np.uint8)
    out = preprocess_image(gray, InputSpec((1, 28, 28, 3), "float32"), RAW)
    assert out.shape == (1, 28, 28, 3) and np.all(out == 200.0)
    out = preprocess_image(rgb_image(28, 28, (100, 200, 50)), InputSpec((1, 28, 28), "float32"), RAW)
    luma = (100 * 299 + 200 * 587 + 50 * 114) / 1000
    assert out.shape == (1, 28, 28) and abs(out[0, 0, 0] - luma) <= 1
    one = Preprocessing(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5])
    out = preprocess_image(gray, InputSpec((1, 1, 28, 28), "float32", "nchw"), one)
    assert out.shape == (1, 1, 28, 28)
    np.testing.assert_allclose(out, 200 / 127.5 - 1, rtol=1e-6)


def test_bad_images_and_settings_are_refused():
    with pytest.raises(ValueError, match="uint8 image"):
        preprocess_image(np.zeros((4, 4, 3), np.float32), InputSpec((1, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match="resize method"):
        preprocess_image(rgb_image(), InputSpec((1, 2, 2, 3), "float32"),
                         Preprocessing(resize="sideways"))
    with pytest.raises(ValueError, match="std"):
        preprocess_image(rgb_image(), InputSpec((1, 4, 6, 3), "float32"), Preprocessing(std=[0.0]))


def test_dequantize():
    values = np.array([0, 128, 255], np.uint8)
    np.testing.assert_allclose(dequantize(values, (0.5, 128)), [-64.0, 0.0, 63.5])
    assert dequantize(values, None).dtype == np.float32
    assert dequantize(values, (0.0, 0)).tolist() == [0.0, 128.0, 255.0]
