"""A small PASCAL VOC-style segmentation dataset built from the DeepLab
fixture photo, with masks derived from the model's own reference prediction
and then perturbed (void borders, a relabelled block) so that mIoU is
meaningful and the void label is exercised."""

import io
import tarfile
from pathlib import Path
from typing import Dict

import numpy as np
from PIL import Image

from edgefarm.tools.voc_sample import voc_palette
from tests.support.servers import FIXTURES

PHOTO = FIXTURES / "deeplab_demo_person_horse.jpg"
SIZE = 513


def source_images() -> Dict[str, Image.Image]:
    photo = Image.open(PHOTO).convert("RGB")
    width, height = photo.size
    return {
        "img_full": photo.resize((SIZE, SIZE), Image.BILINEAR),
        "img_flip": photo.transpose(Image.FLIP_LEFT_RIGHT).resize((SIZE, SIZE), Image.BILINEAR),
        "img_crop": photo.crop((0, 0, width * 2 // 3, height)).resize((SIZE, SIZE), Image.BILINEAR),
    }


def reference_prediction(model_path: Path, pixels: np.ndarray) -> np.ndarray:
    """Argmax of the model's logits, computed with the interpreter directly."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path), num_threads=2)
    interpreter.allocate_tensors()
    x = (pixels.astype(np.float32) / 127.5 - 1.0)[None]
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    logits = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    return logits.argmax(axis=-1).astype(np.uint8)


def perturb(mask: np.ndarray, index: int) -> np.ndarray:
    out = mask.copy()
    out[:6, :] = out[-6:, :] = 255
    out[:, :6] = out[:, -6:] = 255
    if index == 1:  # call a block of the photo "horse" that the model will not
        out[200:300, 30:130] = 13
    if index == 2:  # and a block "person" -> "dog" (class 12)
        out[out == 15] = np.where(np.arange(out[out == 15].size) % 3 == 0, 12, 15)
    return out


def build_voc_folder(root: Path, model_path: Path) -> Dict[str, np.ndarray]:
    """Writes JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/val.txt; returns masks."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    masks = {}
    for index, (name, image) in enumerate(source_images().items()):
        image.save(root / "JPEGImages" / f"{name}.jpg", quality=95)
        decoded = np.asarray(Image.open(root / "JPEGImages" / f"{name}.jpg").convert("RGB"))
        mask = perturb(reference_prediction(model_path, decoded), index)
        png = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
        png.putpalette(voc_palette())
        png.save(root / "SegmentationClass" / f"{name}.png")
        masks[name] = mask
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(masks) + "\n")
    return masks


def tar_folder(root: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(root)))
    return buffer.getvalue()


def independent_miou(model_path: Path, root: Path, num_classes: int = 21) -> dict:
    """mIoU computed here, without the agent's code: one confusion matrix, 255 ignored."""
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for name in (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split():
        pixels = np.asarray(Image.open(root / "JPEGImages" / f"{name}.jpg").convert("RGB"))
        label = np.asarray(Image.open(root / "SegmentationClass" / f"{name}.png"))
        pred = reference_prediction(model_path, pixels)
        valid = label != 255
        confusion += np.bincount(label[valid].astype(np.int64) * num_classes + pred[valid],
                                 minlength=num_classes ** 2).reshape(num_classes, num_classes)
    inter = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - inter
    present = union > 0
    iou = inter[present] / union[present]
    return {"miou": float(iou.mean()), "pixel_accuracy": float(inter.sum() / confusion.sum()),
            "per_class": {int(c): float(inter[c] / union[c]) for c in np.nonzero(present)[0]}}
