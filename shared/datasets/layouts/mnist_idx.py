"""The mnist-idx layout: MNIST's IDX files.

``t10k-images-idx3-ubyte`` + ``t10k-labels-idx1-ubyte`` and/or the ``train-`` pair,
optionally gzipped (``.gz``). Only the 16-byte headers are read while planning; the
labels are read by ``list_samples``. Samples are records: t10k first, then train.
"""

from __future__ import annotations

import posixpath
import re
from typing import Dict, List, Optional, Tuple

from ..archives import Tree
from ..errors import DatasetError
from .plan import Layout, LayoutNotFound, Plan, Sample, counted, shallowest, top_level

MNIST_CLASS_COUNT = 10
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
IDX_FILE = re.compile(r"(t10k|train)-(images[-.]idx3|labels[-.]idx1)-ubyte(\.gz)?")


def reads(path: str) -> Optional[str]:
    """The heads of the IDX files."""
    return "head" if IDX_FILE.fullmatch(posixpath.basename(path)) else None


def plan(tree: Tree, split: Optional[str]) -> Plan:
    found = [path for path in tree.files if IDX_FILE.fullmatch(posixpath.basename(path))]
    if not found:
        raise LayoutNotFound(
            "no mnist-idx layout found: expected t10k-images-idx3-ubyte and "
            "t10k-labels-idx1-ubyte (or the train- pair, optionally .gz) "
            f"({top_level(tree)})"
        )
    root = shallowest(sorted({posixpath.dirname(path) for path in found}), "mnist-idx files")
    samples: List[Sample] = []
    record_labels = {}
    for prefix, images, labels in _pairs(tree, root):
        count = _check_pair(tree, images, labels)
        samples += [Sample(id=f"{prefix}-{index}", index=index, source=images)
                    for index in range(count)]
        record_labels[images] = (labels, 8, 1)
    return Plan(root=root, samples=samples, num_classes=MNIST_CLASS_COUNT,
                record_labels=record_labels)


def _pairs(tree: Tree, root: str) -> List[Tuple[str, str, str]]:
    """(prefix, images file, labels file) for t10k and train; plain files win over .gz."""
    found: Dict[Tuple[str, str], str] = {}
    for name in tree.listing(root)[1]:
        match = IDX_FILE.fullmatch(name)
        if match:
            key = (match.group(1), match.group(2)[:6])
            if key not in found or not name.endswith(".gz"):
                found[key] = posixpath.join(root, name)
    pairs = []
    for prefix in ("t10k", "train"):
        images, labels = found.get((prefix, "images")), found.get((prefix, "labels"))
        if images and labels:
            pairs.append((prefix, images, labels))
        elif images or labels:
            missing = f"{prefix}-labels-idx1-ubyte" if images else f"{prefix}-images-idx3-ubyte"
            raise DatasetError(f"mnist-idx: found {images or labels} but no matching {missing}")
    return pairs


def _check_pair(tree: Tree, images: str, labels: str) -> int:
    image_count, rows, columns = _header(tree, images, IDX_IMAGES_MAGIC, 3)
    (label_count,) = _header(tree, labels, IDX_LABELS_MAGIC, 1)
    if image_count != label_count:
        raise DatasetError(f"mnist-idx: {images} holds {counted(image_count, 'image')} but "
                           f"{labels} holds {counted(label_count, 'label')}")
    _check_size(tree, images, 16 + image_count * rows * columns,
                f"{image_count} images of {rows}x{columns} pixels")
    _check_size(tree, labels, 8 + label_count, f"{label_count} labels")
    return image_count


def _header(tree: Tree, path: str, magic: int, dimensions: int) -> Tuple[int, ...]:
    head = tree.head(path)
    if len(head) < 4 + 4 * dimensions:
        raise DatasetError(f"mnist-idx: {path} is too short for an IDX header")
    found = int.from_bytes(head[:4], "big")
    if found != magic:
        kind = "images" if magic == IDX_IMAGES_MAGIC else "labels"
        raise DatasetError(f"mnist-idx: {path} starts with magic number 0x{found:08x}, "
                           f"not 0x{magic:08x} (IDX {kind} file)")
    return tuple(int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(dimensions))


def _check_size(tree: Tree, path: str, expected: int, what: str) -> None:
    """Uncompressed files only: a .gz file's expanded size is not known without reading it."""
    if not path.endswith(".gz") and tree.files[path] != expected:
        raise DatasetError(f"mnist-idx: {path} is {tree.files[path]} bytes but its header "
                           f"announces {what} ({expected} bytes)")


LAYOUT = Layout("mnist-idx", plan, reads)
