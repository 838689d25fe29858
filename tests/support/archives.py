"""Dataset archives built for tests: small VOC segmentation sets in every archive
kind, and a gzip bomb written without holding it in memory."""

import io
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Dict


def voc_files() -> Dict[str, bytes]:
    files = {"ImageSets/Segmentation/val.txt": b"a\nb\n"}
    for image_id in ("a", "b"):
        files[f"JPEGImages/{image_id}.jpg"] = b"\xff\xd8jpeg " + image_id.encode()
        files[f"SegmentationClass/{image_id}.png"] = b"\x89PNG " + image_id.encode()
    return files


def archive_bytes(kind: str, files: Dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in files.items():
                archive.writestr(name, data)
        return buffer.getvalue()
    with tarfile.open(fileobj=buffer, mode={"tar": "w", "tar.gz": "w:gz", "tar.bz2": "w:bz2",
                                             "tar.xz": "w:xz"}[kind]) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tar_entry(name: str, data: bytes, size: int = -1) -> bytes:
    """A member's header (for ``size`` bytes, default ``len(data)``) and padded data."""
    info = tarfile.TarInfo(name)
    info.size = len(data) if size < 0 else size
    padding = -len(data) % tarfile.BLOCKSIZE if data else 0
    return info.tobuf(format=tarfile.PAX_FORMAT) + data + bytes(padding)


def write_zero_bomb(path: Path, size: int) -> None:
    """A valid VOC segmentation .tar.gz (one gzip member, as ``tar czf`` writes) whose
    image ``zeros.jpg`` is ``size`` zero bytes. Each MiB of zeros is compressed after a
    full flush, which resets the compressor, so its compressed bytes are the same every
    time: computed once, written ``size`` / 1 MiB times, the trailer's CRC summed as
    they go; nothing large is ever held in memory."""
    head = (tar_entry("ImageSets/Segmentation/val.txt", b"zeros\n")
            + tar_entry("SegmentationClass/zeros.png", b"\x89PNG")
            + tar_entry("JPEGImages/zeros.jpg", b"", size))
    mib, tail = bytes(2**20), bytes(2 * tarfile.BLOCKSIZE)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate; the gzip frame is ours
    with open(path, "wb") as out:
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff")
        out.write(compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH))
        crc = zlib.crc32(head)
        block = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
        for _ in range(size // len(mib)):
            out.write(block)
            crc = zlib.crc32(mib, crc)
        out.write(compressor.compress(tail) + compressor.flush())
        crc = zlib.crc32(tail, crc)
        total = len(head) + size // len(mib) * len(mib) + len(tail)
        out.write(struct.pack("<II", crc, total & 0xFFFFFFFF))
