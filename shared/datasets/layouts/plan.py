"""What a layout planner gives and the words every planner uses.

This module owns ``Sample`` (one evaluation sample), ``Plan`` (what a planner found in
a ``Tree``: its root, samples, classes, and where record labels sit), ``Layout`` (one
entry of the catalog's registry: a name, its planner, and the small files it reads),
``LayoutNotFound`` and the shared pieces of the planners' messages and searches
(``shallowest``, ``problem_list``, ``class_names``, ...).

Pure standard library; runs on Python 3.9 and later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from ..archives import Tree
from ..errors import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_MAX_LISTED_PROBLEMS = 5


class LayoutNotFound(DatasetError):
    """The files are not of the layout at all (rather than a damaged dataset of it), so the
    message may suggest another layout they do form."""


@dataclass
class Sample:
    """One evaluation sample. Paths are inside the folder given to ``list_samples``."""

    id: str
    image: Optional[str] = None  # image file (voc-seg, imagenet-val, imagefolder)
    label: Optional[int] = None  # class index (all but voc-seg)
    mask: Optional[str] = None  # segmentation mask file (voc-seg)
    index: Optional[int] = None  # record index inside ``source`` (mnist-idx, cifar10-bin)
    source: Optional[str] = None  # file holding the record (mnist-idx, cifar10-bin)


@dataclass
class Plan:
    """What a layout found: samples with paths relative to the archive top ("/"-separated)."""

    root: str
    samples: List[Sample]
    split: Optional[str] = None
    classes: Optional[List[str]] = None
    num_classes: Optional[int] = None
    # data file -> (file holding its labels, offset of the first label, bytes between labels)
    record_labels: Dict[str, Tuple[str, int, int]] = field(default_factory=dict)


class Layout(NamedTuple):
    """One layout of the catalog: its name, its planner (``plan(tree, split)``) and which
    small files it reads while an archive or folder is scanned (``reads(path)``: "text",
    "head" or None, see ``edgefarm.shared.datasets.archives.Keep``)."""

    name: str
    plan: Callable[[Tree, Optional[str]], Plan]
    reads: Callable[[str], Optional[str]]


def reads_nothing(path: str) -> Optional[str]:
    return None


def top_level(tree: Tree) -> str:
    folders, files = tree.listing("")
    names = [name + "/" for name in folders] + files
    shown_names = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return f"found top-level: {shown_names}"


def shown(folder: str) -> str:
    return f"{folder}/" if folder else "the top level"


def _depth(folder: str) -> int:
    return folder.count("/") + 1 if folder else 0


def shallowest(folders: List[str], what: str) -> str:
    """The one shallowest folder; DatasetError when several share the smallest depth."""
    least = min(_depth(folder) for folder in folders)
    candidates = sorted(folder for folder in folders if _depth(folder) == least)
    if len(candidates) > 1:
        listed = ", ".join(shown(folder) for folder in candidates)
        raise DatasetError(
            f"{what} found in several folders ({listed}); keep one dataset per archive"
        )
    return candidates[0]


def counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def problem_list(problems: List[str]) -> str:
    listed = "; ".join(problems[:_MAX_LISTED_PROBLEMS])
    more = len(problems) - _MAX_LISTED_PROBLEMS
    return f"{listed}; and {more} more" if more > 0 else listed


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def relative(path: str, folder: str) -> str:
    return path[len(folder) + 1:] if folder else path


def text_lines(text: str) -> List[Tuple[int, str]]:
    """(line number, stripped line) of the non-blank lines."""
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)
            if line.strip()]


def class_names(tree: Tree, path: str) -> List[str]:
    names = [line for _, line in text_lines(tree.text(path))]
    if not names:
        raise DatasetError(f"class list {path} is empty")
    return names
