"""The per-sample record of an evaluation (``edgefarm.shared.contract.schemas.PerSample``):
which samples a classification got right, and each image's intersection and union pixel
counts per class for a segmentation, in evaluation order, with the sha256 of that order.

The server resamples and pairs results from it without the dataset (bootstrap intervals,
McNemar's test): two results pair sample by sample only when their ``order_sha256`` are
equal. The bytes are those of ``edgefarm.shared.stats.encoding`` (the pure-Python
reference, which the server decodes), built here with numpy: ``packbits`` (most
significant bit first) for flags, little-endian uint32 ``tobytes`` for counts.

Size: flags cost 1 bit per sample (50,000 ImageNet images: 8.4 KB of base64 per flag set).
Counts cost 2 x 4 bytes per image and class, 4/3 more as base64: VOC's 1,449 x 21 is
325 KB, but ADE20K's 2,000 x 150 would be 3.2 MB. Above ``MAX_COUNTS_CHARS`` the counts
are left out (the metrics say so, in ``per_sample_note``) so the report stays well under
the server's 8 MiB body limit.
"""

import base64
from typing import Any, Dict, List, Sequence

import numpy as np

from edgefarm.shared.stats.encoding import sample_order_sha256

#: Most base64 characters of the two count tables together (the report limit is 8 MiB).
MAX_COUNTS_CHARS = 4 * 1024 * 1024


def pack_flags_np(flags: Sequence[bool]) -> str:
    """``encoding.pack_flags`` with numpy."""
    bits = np.packbits(np.asarray(flags, dtype=bool), bitorder="big")
    return base64.b64encode(bits.tobytes()).decode("ascii")


def pack_counts_np(table: np.ndarray) -> str:
    """``encoding.pack_counts`` with numpy (a 2-D table of counts below 2**32)."""
    table = np.asarray(table)
    if table.size and (table.min() < 0 or table.max() >= 2 ** 32):
        raise ValueError("counts must be in 0 .. 2**32 - 1")
    return base64.b64encode(table.astype("<u4").tobytes()).decode("ascii")


def classification_record(ids: List[str], ranks: List[int], top_k: int = 5) -> Dict[str, Any]:
    """Top-1 and top-5 (top-``top_k``) correctness of each sample from the rank of its true
    class (0 = top-1)."""
    ranks_array = np.asarray(ranks, dtype=np.int64)
    return {"count": len(ids), "order_sha256": sample_order_sha256(ids),
            "top1_correct": pack_flags_np(ranks_array < 1),
            "top5_correct": pack_flags_np(ranks_array < top_k)}


def segmentation_record(ids: List[str], intersections: List[np.ndarray], unions: List[np.ndarray],
                        classes: int) -> Dict[str, Any]:
    """Each image's intersection and union pixel counts per class (summed over the images
    they are the dataset's, from which the mIoU is computed); a ``note`` instead of ``iou``
    when the counts are left out for size."""
    record: Dict[str, Any] = {"count": len(ids), "order_sha256": sample_order_sha256(ids)}
    chars = 2 * 4 * ((len(intersections) * classes * 4 + 2) // 3)
    if chars > MAX_COUNTS_CHARS:
        record["note"] = (f"per-image IoU counts left out: {len(intersections)} images x {classes} "
                          f"classes would take {chars} characters (limit {MAX_COUNTS_CHARS})")
        return record
    shape = (len(intersections), classes)
    record["iou"] = {"classes": classes, "images": len(intersections),
                     "intersection": pack_counts_np(np.reshape(intersections, shape)),
                     "union": pack_counts_np(np.reshape(unions, shape))}
    return record
