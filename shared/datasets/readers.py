"""Dataset readers: the decoded images, labels and masks of an extracted dataset, one
sample at a time, in the order ``edgefarm.shared.datasets.list_samples`` gives.

This module owns ``load_image`` (any image file to HxWx3 uint8 RGB), ``load_mask``
(a segmentation mask's class indices as stored: palette PNGs are read as indices,
never converted to colours, so VOC's 255 "void" stays 255), the record readers of
mnist-idx (IDX, possibly gzipped) and cifar10-bin files, and ``decode_samples``
(planned samples to decoded ones, lazily; a run reads them through
``edgefarm.shared.datasets.dataset.Dataset.decoded``, which plans the folder once).

Every read error is raised as ``edgefarm.shared.datasets.DatasetError`` naming the sample and
the file, so a corrupt JPEG deep inside an evaluation reports which one it was.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from typing import IO, Dict, Iterable, Iterator, Optional, Tuple

import numpy as np
from PIL import Image

from edgefarm.shared.datasets import CIFAR_RECORD_BYTES, DatasetError, Sample

_IDX_HEADER_BYTES = 16
_CIFAR_SIDE = 32
_READ_ERRORS = (OSError, ValueError, EOFError, zlib.error, SyntaxError)


@dataclass
class DecodedSample:
    """One sample ready for pre-processing: an HxWx3 (or HxW gray) uint8 image, the
    class index (classification) or the HxW uint8 mask (segmentation)."""

    id: str
    image: np.ndarray
    label: Optional[int] = None
    mask: Optional[np.ndarray] = None


def load_image(path: str) -> np.ndarray:
    """The image as HxWx3 uint8 RGB (gray, palette, CMYK and alpha images converted;
    EXIF orientation is not applied, as in the reference evaluation tools)."""
    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"))


def load_mask(path: str) -> np.ndarray:
    """The mask's class indices as HxW uint8, exactly as stored (P or L mode; 16-bit
    masks are accepted when every value fits in 0..255). Colour masks are refused:
    their class indices cannot be recovered without the palette."""
    with Image.open(path) as picture:
        if picture.mode in ("P", "L"):
            return np.array(picture, dtype=np.uint8)
        if picture.mode in ("I", "I;16", "I;16B", "I;16L"):
            values = np.array(picture)
            if values.size and (values.min() < 0 or values.max() > 255):
                raise ValueError(f"mask values run from {values.min()} to {values.max()}, "
                                 "outside the 0..255 class indices")
            return values.astype(np.uint8)
        raise ValueError(f"mask is a {picture.mode} image; expected a palette (P) or "
                         "grayscale (L) PNG of class indices")


class _RecordReader:
    """Records of mnist-idx and cifar10-bin files; each file is opened once and read
    by seeking (forward seeks in a .gz file decompress only what lies between)."""

    def __init__(self) -> None:
        self._files: Dict[str, IO[bytes]] = {}
        self._idx_shapes: Dict[str, Tuple[int, int]] = {}

    def _open(self, path: str) -> IO[bytes]:
        if path not in self._files:
            self._files[path] = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
        return self._files[path]

    def _read(self, path: str, offset: int, size: int) -> bytes:
        stream = self._open(path)
        stream.seek(offset)
        data = stream.read(size)
        if len(data) != size:
            raise ValueError(f"file ends at byte {offset + len(data)}, inside the record "
                             f"of {size} bytes at {offset}")
        return data

    def mnist_image(self, path: str, index: int) -> np.ndarray:
        if path not in self._idx_shapes:
            head = self._read(path, 0, _IDX_HEADER_BYTES)
            self._idx_shapes[path] = (int.from_bytes(head[8:12], "big"),
                                      int.from_bytes(head[12:16], "big"))
        rows, columns = self._idx_shapes[path]
        data = self._read(path, _IDX_HEADER_BYTES + index * rows * columns, rows * columns)
        return np.frombuffer(data, dtype=np.uint8).reshape(rows, columns)

    def cifar_image(self, path: str, index: int) -> np.ndarray:
        data = self._read(path, index * CIFAR_RECORD_BYTES + 1, CIFAR_RECORD_BYTES - 1)
        planes = np.frombuffer(data, dtype=np.uint8).reshape(3, _CIFAR_SIDE, _CIFAR_SIDE)
        return np.ascontiguousarray(planes.transpose(1, 2, 0))

    def close(self) -> None:
        for stream in self._files.values():
            stream.close()
        self._files.clear()


def _failed(sample: Sample, path: Optional[str], exc: Exception) -> DatasetError:
    return DatasetError(f"sample {sample.id}: cannot read {path}: {exc}")


def _decode(sample: Sample, layout: str, records: _RecordReader) -> DecodedSample:
    try:
        if layout == "mnist-idx":
            image = records.mnist_image(sample.source, sample.index)
        elif layout == "cifar10-bin":
            image = records.cifar_image(sample.source, sample.index)
        else:
            image = load_image(sample.image)
    except _READ_ERRORS as exc:
        raise _failed(sample, sample.image or sample.source, exc) from exc
    try:
        mask = load_mask(sample.mask) if sample.mask else None
    except _READ_ERRORS as exc:
        raise _failed(sample, sample.mask, exc) from exc
    return DecodedSample(id=sample.id, image=image, label=sample.label, mask=mask)


def decode_samples(samples: Iterable[Sample], layout: str) -> Iterator[DecodedSample]:
    """Each of ``samples`` (of a ``layout`` dataset) decoded, lazily, in order. Raises
    DatasetError naming the sample that fails."""
    records = _RecordReader()
    try:
        for sample in samples:
            yield _decode(sample, layout, records)
    finally:
        records.close()
