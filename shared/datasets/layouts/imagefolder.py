"""The imagefolder layout: one folder per class.

``<root>/<class_name>/<image>``: class index = position of the folder name in sorted
order (images may sit in subfolders of it); optionally under a single top folder.
Samples are ordered by class, then path. Since almost any image tree fits, the files
of the other layouts are refused here, with a hint.
"""

from __future__ import annotations

import posixpath
from typing import List, Optional

from ..archives import Tree
from ..errors import DatasetError
from . import imagenet_val
from .cifar10_bin import BATCH_FILE
from .mnist_idx import IDX_FILE
from .plan import (
    IMAGE_EXTENSIONS,
    Layout,
    LayoutNotFound,
    Plan,
    Sample,
    is_image,
    reads_nothing,
    relative,
    shown,
    top_level,
)
from .voc_seg import is_voc_root


def plan(tree: Tree, split: Optional[str]) -> Plan:
    _refuse_other_layout_files(tree)
    root = _root(tree)
    classes, files = tree.listing(root)
    loose = [name for name in files if is_image(name)]
    if loose:
        raise LayoutNotFound(f"imagefolder: images must sit in one folder per class, but "
                             f"{shown(root)} holds images directly (e.g. '{loose[0]}')")
    if not classes:
        raise LayoutNotFound("no imagefolder layout found: expected one folder per class with "
                             f"images inside ({top_level(tree)})")
    if len(classes) == 1:
        _refuse_labels_file(tree, root, classes[0])
    samples = []
    for index, name in enumerate(classes):
        images = _images_below(tree, posixpath.join(root, name))
        if not images:
            raise LayoutNotFound(f"imagefolder: class folder '{name}/' holds no images "
                                 f"({', '.join(IMAGE_EXTENSIONS)})")
        samples += [Sample(id=relative(image, root), image=image, label=index) for image in images]
    return Plan(root=root, samples=samples, classes=classes, num_classes=len(classes))


def _refuse_labels_file(tree: Tree, root: str, only_class: str) -> None:
    """One image folder with a labels file beside or inside it is an imagenet-val dataset."""
    for folder in (root, posixpath.join(root, only_class)):
        for name in tree.listing(folder)[1]:
            if name.lower() in imagenet_val.LABEL_FILE_NAMES:
                raise LayoutNotFound(
                    f"imagefolder: found {posixpath.join(folder, name)} beside a single image "
                    "folder, the shape of an imagenet-val dataset rather than one folder per class"
                )


def _root(tree: Tree) -> str:
    """The top level, or its only folder when that holds folders and no images itself."""
    folders, files = tree.listing("")
    if len(folders) == 1 and not files:
        subfolders, inner_files = tree.listing(folders[0])
        if subfolders and not any(is_image(name) for name in inner_files):
            return folders[0]
    return ""


def _images_below(tree: Tree, folder: str) -> List[str]:
    """Images in ``folder`` (sorted), then those of its subfolders (in sorted order)."""
    subfolders, files = tree.listing(folder)
    images = [posixpath.join(folder, name) for name in files if is_image(name)]
    for name in subfolders:
        images += _images_below(tree, posixpath.join(folder, name))
    return images


def _refuse_other_layout_files(tree: Tree) -> None:
    """imagefolder accepts almost any image tree, so refuse the files of the other layouts."""
    for folder in tree.folders():
        if is_voc_root(tree, folder):
            prefix = f"{folder}/" if folder else ""
            raise LayoutNotFound(f"imagefolder: found {prefix}JPEGImages/ and "
                                 f"{prefix}SegmentationClass/, the folders of a voc-seg dataset")
    for path in sorted(tree.files):
        name = posixpath.basename(path)
        if IDX_FILE.fullmatch(name) or BATCH_FILE.fullmatch(name):
            layout = "mnist-idx" if IDX_FILE.fullmatch(name) else "cifar10-bin"
            raise LayoutNotFound(f"imagefolder: found {path}, a file of a {layout} dataset")
    try:
        found = imagenet_val.plan(tree, None)
    except DatasetError:
        return
    raise LayoutNotFound(f"imagefolder: the images of {shown(found.root)} are labelled by a "
                         "labels file, as in an imagenet-val dataset")


LAYOUT = Layout("imagefolder", plan, reads_nothing)
