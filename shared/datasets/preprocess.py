"""Pre-processing: how a decoded image becomes the model's input tensor, and how a
quantized output becomes float again.

This module owns ``InputSpec`` (shape, dtype, layout and quantization of the first
input), ``preprocess_image``, ``dequantize`` and ``default_preprocessing``.

Choices, so that every device computes the same tensor:

* Resizing uses Pillow's bilinear filter (``Image.resize(..., Image.BILINEAR)``) on
  every device, never OpenCV: Pillow is an agent dependency everywhere while OpenCV is
  optional, and the two filters differ when shrinking (Pillow widens its kernel to
  cover the source pixels, OpenCV's INTER_LINEAR samples 2x2). The aspect ratio is not
  kept (the image is stretched to the input size), as in the TFLite evaluation tools.
* Gray images feeding a 3-channel input are repeated over the channels; colour images
  feeding a 1-channel input are converted with Pillow's ITU-R 601-2 luma ("L").
* ``color="bgr"`` reverses the channels; ``mean`` and ``std`` are then listed in the
  model's channel order (B, G, R), as Caffe-style models publish them.
* Float inputs get ``(pixel * scale - mean) / std`` in float32. Quantized integer
  inputs get that float value quantized with the tensor's own scale and zero point
  (rounded half to even, clipped to the dtype's range). Integer inputs without
  quantization parameters take the raw pixels (uint8 as they are, int8 minus 128) and
  ignore mean/std.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from edgefarm.shared.contract.schemas import Preprocessing

_RESAMPLE = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
    "box": Image.BOX,
}
_LAYOUTS = ("nhwc", "nchw")


def _usable_quantization(quantization: Optional[Sequence[float]]) -> Optional[Tuple[float, int]]:
    """(scale, zero_point), or None when absent or scale 0 (TFLite's "not quantized")."""
    if quantization is None:
        return None
    scale, zero_point = float(quantization[0]), int(quantization[1])
    return (scale, zero_point) if scale != 0.0 else None


@dataclass
class InputSpec:
    """What the model's (first) input tensor wants.

    ``shape`` is the full tensor shape with batch 1: ``[1, H, W, C]`` (nhwc),
    ``[1, C, H, W]`` (nchw) or ``[1, H, W]`` (one gray channel without a channel axis).
    """

    shape: Tuple[int, ...]
    dtype: str
    layout: str = "nhwc"
    quantization: Optional[Tuple[float, int]] = None

    def __post_init__(self) -> None:
        self.layout = str(self.layout).lower()
        if self.layout not in _LAYOUTS:
            raise ValueError(f"input layout must be one of {_LAYOUTS}, not {self.layout!r}")
        shape = tuple(int(d) for d in self.shape)
        if len(shape) not in (3, 4):
            raise ValueError(f"image input must be 3-D [1,H,W] or 4-D [1,H,W,C]/[1,C,H,W], "
                             f"not {list(shape)}")
        shape = (1,) + shape[1:] if shape[0] <= 0 else shape  # a dynamic batch becomes 1
        if shape[0] != 1 or min(shape[1:]) <= 0:
            raise ValueError(f"image input needs batch 1 and fixed sizes, got {list(self.shape)}")
        self.shape = shape
        self.dtype = np.dtype(self.dtype).name
        self.quantization = _usable_quantization(self.quantization)
        if self.channels not in (1, 3):
            raise ValueError(f"image input of shape {list(shape)} ({self.layout}) has "
                             f"{self.channels} channels; expected 1 or 3")

    @classmethod
    def from_tensor(cls, info: Any, layout: str = "nhwc") -> InputSpec:
        """From a runtime's ``TensorInfo`` and the runtime's ``layout``."""
        return cls(tuple(info.shape), info.dtype, layout, info.quantization)

    @property
    def height(self) -> int:
        return self.shape[2] if len(self.shape) == 4 and self.layout == "nchw" else self.shape[1]

    @property
    def width(self) -> int:
        return self.shape[3] if len(self.shape) == 4 and self.layout == "nchw" else self.shape[2]

    @property
    def channels(self) -> int:
        if len(self.shape) == 3:
            return 1
        return self.shape[1] if self.layout == "nchw" else self.shape[3]


def default_preprocessing(input_dtype: str) -> Preprocessing:
    """Mean and std 127.5 (pixels to -1..1), RGB, bilinear: the convention of the
    MobileNet / DeepLab TFLite models. Used for float inputs and for quantized
    integer inputs (whose own scale/zero point then map -1..1 back to integers);
    integer inputs without quantization parameters ignore it (raw pixels)."""
    del input_dtype  # one convention for every dtype; kept for callers that pass it
    return Preprocessing()


def preprocess_image(image: np.ndarray, spec: InputSpec, pre: Any = None) -> np.ndarray:
    """The input tensor for one image: exactly ``spec.shape`` and ``spec.dtype``.

    ``image`` is HxWx3 uint8 RGB or HxW (or HxWx1) uint8 gray; ``pre`` is a
    ``Preprocessing`` (or an object with mean/std/scale/color/resize), None for the
    default.
    """
    pre = pre if pre is not None else default_preprocessing(spec.dtype)
    pixels = _resized_pixels(image, spec, str(getattr(pre, "resize", "bilinear")))
    if spec.channels == 3 and str(getattr(pre, "color", "rgb")).lower() == "bgr":
        pixels = pixels[..., ::-1]
    values = _to_dtype(pixels, spec, pre)
    if len(spec.shape) == 4 and spec.layout == "nchw":
        values = values.transpose(2, 0, 1)
    elif len(spec.shape) == 3:
        values = values[..., 0]
    return np.ascontiguousarray(values).reshape(spec.shape)


def _resized_pixels(image: np.ndarray, spec: InputSpec, resize: str) -> np.ndarray:
    """HxWxC uint8 at the input size with the input's channel count."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"expected an HxWx3 or HxW uint8 image, got shape {array.shape} "
                         f"dtype {array.dtype}")
    picture = Image.fromarray(array)
    if spec.channels == 1 and picture.mode != "L":
        picture = picture.convert("L")
    if picture.size != (spec.width, spec.height):
        if resize.lower() not in _RESAMPLE:
            raise ValueError(f"unknown resize method {resize!r}; known: {', '.join(_RESAMPLE)}")
        picture = picture.resize((spec.width, spec.height), _RESAMPLE[resize.lower()])
    pixels = np.asarray(picture)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if spec.channels == 3 and pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return pixels


def _per_channel(values: Any, channels: int, what: str) -> np.ndarray:
    """mean or std as a float32 vector of ``channels`` (one value is broadcast; three
    values for a 1-channel input are averaged)."""
    vector = np.atleast_1d(np.asarray(values, dtype=np.float32))
    if vector.size == channels:
        return vector
    if vector.size == 1:
        return np.repeat(vector, channels)
    if channels == 1:
        return np.asarray([vector.mean()], dtype=np.float32)
    raise ValueError(f"preprocessing {what} has {vector.size} values for a {channels}-channel input")


def normalize(pixels: np.ndarray, pre: Any) -> np.ndarray:
    """``(pixel * scale - mean) / std`` in float32, per channel (last axis)."""
    channels = pixels.shape[-1]
    mean = _per_channel(getattr(pre, "mean", 0.0), channels, "mean")
    std = _per_channel(getattr(pre, "std", 1.0), channels, "std")
    if np.any(std == 0):
        raise ValueError("preprocessing std must not be 0")
    scale = np.float32(getattr(pre, "scale", 1.0))
    return (pixels.astype(np.float32) * scale - mean) / std


def _to_dtype(pixels: np.ndarray, spec: InputSpec, pre: Any) -> np.ndarray:
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        return normalize(pixels, pre).astype(dtype, copy=False)
    if dtype.kind not in "iu":
        raise ValueError(f"unsupported input dtype {spec.dtype}")
    info = np.iinfo(dtype)
    if spec.quantization is None:  # raw pixels: uint8 as is, int8 shifted by -128
        shift = 128 if dtype == np.int8 else 0
        return np.clip(pixels.astype(np.int32) - shift, info.min, info.max).astype(dtype)
    scale, zero_point = spec.quantization
    quantized = np.round(normalize(pixels, pre) / np.float32(scale)) + zero_point
    return np.clip(quantized, info.min, info.max).astype(dtype)


def dequantize(array: Any, quantization: Optional[Sequence[float]]) -> np.ndarray:
    """An output as float32: ``(q - zero_point) * scale`` when quantized, else a cast."""
    values = np.asarray(array)
    usable = _usable_quantization(quantization)
    if usable is None:
        return values.astype(np.float32, copy=False)
    scale, zero_point = usable
    return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
