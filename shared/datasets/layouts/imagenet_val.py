"""The imagenet-val layout: images in one folder, labelled by a labels file.

Images (.jpg, .jpeg, .png) in one folder plus ``labels.txt``, ``val.txt`` or
``ground_truth.txt`` beside them (or beside their folder), either
``<filename> <class_index>`` lines or one class index per line for the images in
sorted file-name order (the TFLite ImageNet evaluation tool's format). Optional
class names in ``synsets.txt`` or ``classes.txt``. Samples are in sorted file-name
order.
"""

from __future__ import annotations

import posixpath
import re
from typing import Dict, List, Optional, Tuple

from ..archives import Tree
from ..errors import DatasetError
from .plan import (
    IMAGE_EXTENSIONS,
    Layout,
    LayoutNotFound,
    Plan,
    Sample,
    class_names,
    counted,
    is_image,
    problem_list,
    relative,
    shallowest,
    shown,
    text_lines,
    top_level,
)

LABEL_FILE_NAMES = ("labels.txt", "val.txt", "ground_truth.txt")  # in order of preference
CLASS_FILE_NAMES = ("synsets.txt", "classes.txt")
_CLASS_INDEX = re.compile(r"[0-9]+")


def reads(path: str) -> Optional[str]:
    """The labels files and class lists."""
    return "text" if posixpath.basename(path).lower() in LABEL_FILE_NAMES + CLASS_FILE_NAMES else None


def plan(tree: Tree, split: Optional[str]) -> Plan:
    labels_path = _labels_file(tree)
    root = posixpath.dirname(labels_path)
    image_dir = _image_dir(tree, root, labels_path)
    names = [name for name in tree.listing(image_dir)[1] if is_image(name)]
    entries = _parse_labels(tree.text(labels_path), labels_path)
    if entries[0][0] is None:
        labels = _labels_by_position(entries, names, labels_path, image_dir)
    else:
        labels = _labels_by_name(entries, names, labels_path, relative(image_dir, root))
    classes = _classes(tree, root, image_dir)
    if classes is not None:
        _check_label_range(names, labels, len(classes))
    samples = [Sample(id=name, image=posixpath.join(image_dir, name), label=label)
               for name, label in zip(names, labels)]
    return Plan(root=root, samples=samples, classes=classes,
                num_classes=len(classes) if classes else None)


def _labels_file(tree: Tree) -> str:
    candidates = [path for path in tree.files
                  if posixpath.basename(path).lower() in LABEL_FILE_NAMES
                  and "ImageSets" not in path.split("/")]
    if not candidates:
        raise LayoutNotFound(
            "no imagenet-val layout found: expected a labels file (labels.txt, val.txt or "
            f"ground_truth.txt) beside the images ({top_level(tree)})"
        )
    folders = sorted({posixpath.dirname(path) for path in candidates})
    folder = shallowest(folders, "imagenet-val labels files")
    in_folder = [path for path in candidates if posixpath.dirname(path) == folder]
    return min(in_folder, key=lambda path: LABEL_FILE_NAMES.index(posixpath.basename(path).lower()))


def _image_dir(tree: Tree, root: str, labels_path: str) -> str:
    subfolders, files = tree.listing(root)
    if any(is_image(name) for name in files):
        return root
    with_images = [posixpath.join(root, name) for name in subfolders
                   if any(is_image(f) for f in tree.listing(posixpath.join(root, name))[1])]
    if len(with_images) == 1:
        return with_images[0]
    if not with_images:
        raise LayoutNotFound(f"imagenet-val: no images ({', '.join(IMAGE_EXTENSIONS)}) beside "
                             f"{labels_path} or in a folder next to it")
    listed = ", ".join(shown(folder) for folder in with_images)
    raise DatasetError(f"imagenet-val: images in several folders beside {labels_path} ({listed}); "
                       "put all images in one folder")


def _parse_labels(text: str, labels_path: str) -> List[Tuple[Optional[str], int]]:
    """(file name or None, class index) per non-blank line of a labels file."""
    entries = [_parse_label_line(line, labels_path, number) for number, line in text_lines(text)]
    if not entries:
        raise DatasetError(f"imagenet-val: {labels_path} holds no labels")
    if len({name is None for name, _ in entries}) > 1:
        raise DatasetError(f"imagenet-val: {labels_path} mixes '<filename> <class_index>' lines "
                           "with lines holding only a class index")
    return entries


def _parse_label_line(line: str, labels_path: str, number: int) -> Tuple[Optional[str], int]:
    parts = line.rsplit(None, 1)
    if len(parts) == 1 and _CLASS_INDEX.fullmatch(parts[0]):
        return None, int(parts[0])
    if len(parts) == 2 and _CLASS_INDEX.fullmatch(parts[1]):
        return parts[0], int(parts[1])
    raise DatasetError(f"imagenet-val: {labels_path} line {number}: expected "
                       f"'<filename> <class_index>' or '<class_index>', got {line!r}")


def _labels_by_position(entries, names: List[str], labels_path: str, image_dir: str) -> List[int]:
    if len(entries) != len(names):
        raise DatasetError(
            f"imagenet-val: {labels_path} has {counted(len(entries), 'label')} but "
            f"{shown(image_dir)} holds {counted(len(names), 'image')}; with one class index "
            "per line there must be one "
            "label per image, in sorted file-name order"
        )
    return [label for _, label in entries]


def _labels_by_name(entries, names: List[str], labels_path: str, image_prefix: str) -> List[int]:
    """Labels of ``names`` from '<filename> <class_index>' entries; file names may also carry
    the image folder's path relative to the labels file."""
    by_name: Dict[str, int] = {}
    for name, label in entries:
        if image_prefix and name.startswith(image_prefix + "/"):
            name = name[len(image_prefix) + 1:]
        if name in by_name:
            raise DatasetError(f"imagenet-val: {labels_path} labels image '{name}' twice")
        by_name[name] = label
    present = set(names)
    problems = [f"image '{name}' has no label in {labels_path}"
                for name in names if name not in by_name]
    problems += [f"{labels_path} labels '{name}', which is not among the images"
                 for name in by_name if name not in present]
    if problems:
        raise DatasetError(f"imagenet-val: {problem_list(problems)}")
    return [by_name[name] for name in names]


def _classes(tree: Tree, root: str, image_dir: str) -> Optional[List[str]]:
    for folder in (root, image_dir):
        for name in CLASS_FILE_NAMES:
            path = posixpath.join(folder, name)
            if path in tree.files:
                return class_names(tree, path)
    return None


def _check_label_range(names: List[str], labels: List[int], class_count: int) -> None:
    problems = [f"image '{name}' has class index {label}"
                for name, label in zip(names, labels) if label >= class_count]
    if problems:
        raise DatasetError(f"imagenet-val: the class list names {class_count} classes "
                           f"(indexes 0 to {class_count - 1}) but {problem_list(problems)}")


LAYOUT = Layout("imagenet-val", plan, reads)
