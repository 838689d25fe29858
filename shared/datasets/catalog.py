"""The catalog of dataset layouts: which names a dataset is uploaded or registered with,
and what the files of an archive or folder hold under one of them.

This module owns:

* ``LAYOUTS``: the five layout names (voc-seg, imagenet-val, imagefolder, mnist-idx,
  cifar10-bin) and the registry of their planners (``edgefarm.shared.datasets.layouts``).
* ``validate_archive`` / ``validate_directory``: check that a zip or tar archive (or an
  extracted folder) holds a complete dataset of the named layout and summarise it
  (``ArchiveSummary``). Only member names and sizes are read, plus the few small files
  a layout needs (split lists, labels files, class lists, the headers of IDX files).
  When the files are not of the named layout at all but form another, the message
  suggests it.
* ``list_samples`` and ``plan_directory``: the samples of an extracted dataset, in
  evaluation order, with the labels of mnist-idx and cifar10-bin records read from
  their files (``plan_directory`` gives the summary of the same single scan too).

Pure standard library; runs on Python 3.9 and later.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections import Counter
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

from .archives import DEFAULT_MAX_MEMBERS, DEFAULT_MAX_TOTAL_BYTES, Tree, scan_archive, scan_directory
from .errors import DatasetError
from .layouts import cifar10_bin, imagefolder, imagenet_val, mnist_idx, voc_seg
from .layouts.plan import Layout, LayoutNotFound, Plan, Sample, problem_list

_REGISTRY: Dict[str, Layout] = {
    layout.name: layout
    for layout in (voc_seg.LAYOUT, imagenet_val.LAYOUT, imagefolder.LAYOUT, mnist_idx.LAYOUT,
                   cifar10_bin.LAYOUT)
}
LAYOUTS = tuple(_REGISTRY)


@dataclass
class ArchiveSummary:
    """What ``validate_archive`` / ``validate_directory`` found."""

    layout: str
    sample_count: int
    root: str  # folder inside the archive that holds the layout ("" when at top)
    split: Optional[str]  # voc-seg split used
    classes: Optional[List[str]]  # class names when known
    num_classes: Optional[int]
    members: int  # number of regular files (junk members not counted)
    total_bytes: int  # uncompressed size of those files


def validate_archive(
    path,
    layout: str,
    split: Optional[str] = None,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> ArchiveSummary:
    """Check that the zip or tar archive at ``path`` is safe and holds a ``layout`` dataset.

    ``max_members`` limits the number of entries of any kind (files, folders, junk).
    ``split`` selects the voc-seg split list and is ignored by the other layouts.
    Raises DatasetError; nothing is extracted.
    """
    _check_layout_name(layout)
    tree = scan_archive(path, max_members, max_total_bytes, _small_files)
    return _summary(tree, layout, _plan(tree, layout, split))


def validate_directory(path, layout: str, split: Optional[str] = None) -> ArchiveSummary:
    """The checks of ``validate_archive`` on an extracted folder (symlinks are refused too)."""
    _check_layout_name(layout)
    tree = scan_directory(path, _small_files)
    return _summary(tree, layout, _plan(tree, layout, split))


def list_samples(root_dir, layout: str, split: Optional[str] = None) -> List[Sample]:
    """The samples of the extracted ``layout`` dataset in ``root_dir``, in evaluation order.

    Paths in the samples are ``root_dir`` joined with the file's path inside the dataset.
    Labels of mnist-idx and cifar10-bin records are read from their files.
    """
    return plan_directory(root_dir, layout, split)[1]


def plan_directory(root_dir, layout: str,
                   split: Optional[str] = None) -> Tuple[ArchiveSummary, List[Sample]]:
    """``validate_directory`` and ``list_samples`` of one scan of the folder."""
    _check_layout_name(layout)
    tree = scan_directory(root_dir, _small_files)
    plan = _plan(tree, layout, split)
    root = os.fspath(root_dir)
    labels = _read_record_labels(root, plan)
    samples = []
    for sample in plan.samples:
        if sample.source in labels:
            sample = replace(sample, label=labels[sample.source][sample.index])
        samples.append(replace(
            sample, image=_local_path(root, sample.image), mask=_local_path(root, sample.mask),
            source=_local_path(root, sample.source),
        ))
    return _summary(tree, layout, plan), samples


# ---------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------


def _small_files(path: str) -> Optional[str]:
    """What a scan keeps of ``path`` for the planners: every layout's small files, since a
    planner may try the others (the hint of ``_other_layout_hint``, imagefolder's checks)."""
    for layout in _REGISTRY.values():
        kind = layout.reads(path)
        if kind is not None:
            return kind
    return None


def _check_layout_name(layout: str) -> None:
    if layout not in _REGISTRY:
        raise DatasetError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")


def _summary(tree: Tree, layout: str, plan: Plan) -> ArchiveSummary:
    return ArchiveSummary(
        layout=layout, sample_count=len(plan.samples), root=plan.root, split=plan.split,
        classes=plan.classes, num_classes=plan.num_classes, members=len(tree.files),
        total_bytes=tree.total_bytes,
    )


def _plan(tree: Tree, layout: str, split: Optional[str]) -> Plan:
    if not tree.files:
        raise DatasetError(f"{tree.container} is empty: it holds no files")
    try:
        plan = _REGISTRY[layout].plan(tree, split)
    except LayoutNotFound as exc:
        raise DatasetError(f"{exc}{_other_layout_hint(tree, layout)}") from None
    if not plan.samples:
        raise DatasetError(f"{layout}: the dataset holds no samples")
    return plan


def _other_layout_hint(tree: Tree, layout: str) -> str:
    """A suggestion when the files form a valid dataset of another layout."""
    for other in LAYOUTS:
        if other == layout:
            continue
        try:
            _REGISTRY[other].plan(tree, None)
        except DatasetError:
            continue
        return f"; its files form a valid {other} dataset: did you mean layout '{other}'?"
    return ""


def _local_path(root: str, path: Optional[str]) -> Optional[str]:
    return os.path.join(root, *path.split("/")) if path is not None else None


# ---------------------------------------------------------------------------
# Record labels (mnist-idx and cifar10-bin)
# ---------------------------------------------------------------------------


def _read_record_labels(root: str, plan: Plan) -> Dict[str, bytes]:
    """Label bytes per data file, checked against the dataset's number of classes."""
    counts = Counter(
        sample.source for sample in plan.samples if sample.source in plan.record_labels
    )
    labels = {}
    for source, (label_file, offset, stride) in plan.record_labels.items():
        values = _read_whole_file(_local_path(root, label_file))[offset::stride][:counts[source]]
        if len(values) < counts[source]:
            raise DatasetError(f"{label_file} is truncated: it holds {len(values)} of "
                               f"{counts[source]} labels")
        _check_record_labels(source, values, plan.num_classes)
        labels[source] = values
    return labels


def _read_whole_file(path: str) -> bytes:
    """The file's bytes, decompressed when its name ends with .gz."""
    if not path.endswith(".gz"):
        with open(path, "rb") as stream:
            return stream.read()
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path} is not a valid gzip file ({exc})") from None


def _check_record_labels(source: str, values: bytes, class_count: Optional[int]) -> None:
    if class_count is None:
        return
    bad = [f"record {index} has label {value}" for index, value in enumerate(values)
           if value >= class_count]
    if bad:
        raise DatasetError(f"{source}: {problem_list(bad)} (expected 0 to {class_count - 1})")
