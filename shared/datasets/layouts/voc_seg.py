"""The voc-seg layout: PASCAL VOC 2012 segmentation.

``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette masks, 255 = void)
and ``ImageSets/Segmentation/<split>.txt`` (ids, one per line; split ``val`` by
default). The root is the folder holding ``JPEGImages`` and ``SegmentationClass``.
Samples follow the split file's order.
"""

from __future__ import annotations

import posixpath
import re
from typing import List, Optional

from ..archives import Tree
from ..errors import DatasetError
from .plan import Layout, LayoutNotFound, Plan, Sample, problem_list, shallowest, text_lines, top_level

VOC_DEFAULT_SPLIT = "val"
_SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def reads(path: str) -> Optional[str]:
    """The split lists, ``ImageSets/Segmentation/*.txt``."""
    parts = path.split("/")
    return "text" if parts[-1].endswith(".txt") and parts[-3:-1] == ["ImageSets", "Segmentation"] else None


def is_voc_root(tree: Tree, folder: str) -> bool:
    return {"JPEGImages", "SegmentationClass"} <= set(tree.listing(folder)[0])


def plan(tree: Tree, split: Optional[str]) -> Plan:
    split = split or VOC_DEFAULT_SPLIT
    if not _SPLIT_NAME.fullmatch(split):
        raise DatasetError(f"voc-seg: invalid split name {split!r}")
    roots = [folder for folder in tree.folders() if is_voc_root(tree, folder)]
    if not roots:
        raise LayoutNotFound(
            "no voc-seg layout found: expected JPEGImages/ and SegmentationClass/ folders "
            f"({top_level(tree)})"
        )
    root = shallowest(roots, "voc-seg datasets (JPEGImages/ and SegmentationClass/)")
    ids = _split_ids(tree, root, split)
    _check_files(tree, root, ids)
    samples = [
        Sample(id=image_id, image=posixpath.join(root, "JPEGImages", f"{image_id}.jpg"),
               mask=posixpath.join(root, "SegmentationClass", f"{image_id}.png"))
        for image_id in ids
    ]
    return Plan(root=root, samples=samples, split=split)


def _split_ids(tree: Tree, root: str, split: str) -> List[str]:
    rel = f"ImageSets/Segmentation/{split}.txt"
    path = posixpath.join(root, rel)
    if path not in tree.files:
        names = tree.listing(posixpath.join(root, "ImageSets/Segmentation"))[1]
        available = [name[:-4] for name in names if name.endswith(".txt")]
        if available:
            raise DatasetError(f"voc-seg: split '{split}' not found: there is no {rel} "
                               f"(available splits: {', '.join(available)})")
        raise DatasetError(f"voc-seg: no split list {rel} listing the image ids of split "
                           f"'{split}', one per line")
    ids: List[str] = []
    for number, line in text_lines(tree.text(path)):
        if len(line.split()) != 1:
            raise DatasetError(f"voc-seg: {rel} line {number}: expected one image id, got {line!r}")
        if line in ids:
            raise DatasetError(f"voc-seg: {rel} lists image '{line}' twice")
        ids.append(line)
    if not ids:
        raise DatasetError(f"voc-seg: {rel} lists no image ids")
    return ids


def _check_files(tree: Tree, root: str, ids: List[str]) -> None:
    problems = []
    for image_id in ids:
        image = f"JPEGImages/{image_id}.jpg"
        mask = f"SegmentationClass/{image_id}.png"
        if posixpath.join(root, image) not in tree.files:
            problems.append(f"image '{image_id}' has no {image}")
        if posixpath.join(root, mask) not in tree.files:
            problems.append(f"image '{image_id}' has no mask {mask}")
    if problems:
        raise DatasetError(f"voc-seg: {problem_list(problems)}")


LAYOUT = Layout("voc-seg", plan, reads)
