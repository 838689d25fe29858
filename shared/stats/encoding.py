"""Compact per-sample data kept with a result, so the server can compute intervals and
paired tests later without the dataset (``edgefarm.shared.contract.schemas.PerSample``).

* A **flag set** (which samples a result got right) is the bits of the samples in evaluation
  order, most significant bit first in each byte (numpy's ``packbits(bitorder="big")``),
  base64-encoded: 1,449 samples are 184 bytes, 248 characters.
* A **count table** (per-image intersection and union pixels per class) is the row-major
  table as little-endian unsigned 32-bit integers, base64-encoded.
* The **sample order** is the sha256 of the sample ids joined by newlines: two results are
  paired sample by sample only when their orders are equal.

Pure Python: the server has no numpy; the agent may build the same bytes with numpy.
"""

import base64
import hashlib
import struct
from typing import Iterable, List, Sequence


def sample_order_sha256(sample_ids: Iterable[str]) -> str:
    """The sha256 (hex) of the sample ids, in evaluation order, joined by newlines."""
    return hashlib.sha256("\n".join(str(i) for i in sample_ids).encode("utf-8")).hexdigest()


def pack_flags(flags: Sequence[bool]) -> str:
    """``flags`` as base64 bits, most significant bit first."""
    out = bytearray((len(flags) + 7) // 8)
    for index, flag in enumerate(flags):
        if flag:
            out[index >> 3] |= 0x80 >> (index & 7)
    return base64.b64encode(bytes(out)).decode("ascii")


def unpack_flags(text: str, count: int) -> List[bool]:
    """The first ``count`` flags of a ``pack_flags`` string; ValueError when it is too short
    or is not base64."""
    data = _decode(text)
    if len(data) * 8 < count or len(data) > (count + 7) // 8:
        raise ValueError(f"a flag set of {count} samples needs {(count + 7) // 8} bytes, got {len(data)}")
    return [bool(data[i >> 3] & (0x80 >> (i & 7))) for i in range(count)]


def pack_counts(rows: Sequence[Sequence[int]]) -> str:
    """A table of non-negative integers (< 2**32) as base64 little-endian uint32, row-major."""
    values = [int(v) for row in rows for v in row]
    if any(v < 0 or v >= 2 ** 32 for v in values):
        raise ValueError("counts must be in 0 .. 2**32 - 1")
    return base64.b64encode(struct.pack(f"<{len(values)}I", *values)).decode("ascii")


def unpack_counts(text: str, rows: int, columns: int) -> List[List[int]]:
    """The ``rows`` x ``columns`` table of a ``pack_counts`` string; ValueError on a size
    mismatch."""
    data = _decode(text)
    if len(data) != rows * columns * 4:
        raise ValueError(f"a {rows} x {columns} count table needs {rows * columns * 4} bytes, "
                         f"got {len(data)}")
    flat = struct.unpack(f"<{rows * columns}I", data)
    return [list(flat[r * columns:(r + 1) * columns]) for r in range(rows)]


def _decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"not base64: {exc}") from None
