"""The cifar10-bin layout: the CIFAR-10 binary version.

``test_batch.bin`` and/or ``data_batch_N.bin`` (records of 1 label byte + 3072 pixel
bytes), optional ``batches.meta.txt`` class names, possibly under
``cifar-10-batches-bin/``. Samples are records: test_batch first, then data_batch_1,
2, ...
"""

from __future__ import annotations

import posixpath
import re
from typing import List, Optional, Tuple

from ..archives import Tree
from ..errors import DatasetError
from .plan import Layout, LayoutNotFound, Plan, Sample, class_names, shallowest, top_level

CIFAR_RECORD_BYTES = 1 + 32 * 32 * 3
CIFAR_CLASS_COUNT = 10
CIFAR_META_NAME = "batches.meta.txt"
BATCH_FILE = re.compile(r"test_batch\.bin|data_batch_([1-9][0-9]*)\.bin")


def reads(path: str) -> Optional[str]:
    """The class list, ``batches.meta.txt``."""
    return "text" if posixpath.basename(path).lower() == CIFAR_META_NAME else None


def plan(tree: Tree, split: Optional[str]) -> Plan:
    found = [path for path in tree.files if BATCH_FILE.fullmatch(posixpath.basename(path))]
    if not found:
        raise LayoutNotFound("no cifar10-bin layout found: expected test_batch.bin or "
                             f"data_batch_N.bin of the CIFAR-10 binary version ({top_level(tree)})")
    root = shallowest(sorted({posixpath.dirname(path) for path in found}), "cifar10-bin batches")
    batches = sorted((name for name in tree.listing(root)[1] if BATCH_FILE.fullmatch(name)),
                     key=_batch_order)
    samples: List[Sample] = []
    record_labels = {}
    for name in batches:
        path = posixpath.join(root, name)
        size = tree.files[path]
        if size == 0 or size % CIFAR_RECORD_BYTES:
            raise DatasetError(f"cifar10-bin: {path} is {size} bytes, not a whole number of "
                               f"{CIFAR_RECORD_BYTES}-byte records (1 label byte + 3072 pixels)")
        samples += [Sample(id=f"{name[:-4]}-{index}", index=index, source=path)
                    for index in range(size // CIFAR_RECORD_BYTES)]
        record_labels[path] = (path, 0, CIFAR_RECORD_BYTES)
    meta = posixpath.join(root, CIFAR_META_NAME)
    classes = class_names(tree, meta) if meta in tree.files else None
    return Plan(root=root, samples=samples, classes=classes,
                num_classes=len(classes) if classes else CIFAR_CLASS_COUNT,
                record_labels=record_labels)


def _batch_order(name: str) -> Tuple[int, int]:
    """test_batch first, then data_batch_1, data_batch_2, ... by number."""
    match = BATCH_FILE.fullmatch(name)
    number = match.group(1) if match else None
    return (1, int(number)) if number else (0, 0)


LAYOUT = Layout("cifar10-bin", plan, reads)
