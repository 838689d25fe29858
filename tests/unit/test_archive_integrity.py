"""Tar archives read as streams with their limits kept while reading: a gzip bomb
(1 GiB of zeros in about 1 MB) is stopped after a small part of it, a pax header
larger than the size limit allows is refused before it is held, and an archive cut
short at any byte is refused instead of being read as a smaller dataset."""

from __future__ import annotations

import io
import re
import tarfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Dict

import pytest

from edgefarm.shared.datasets import DatasetError, validate_archive
from edgefarm.shared.datasets.archives import safe_extract, scan_archive

GIB = 2**30


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


def write_zero_bomb(path: Path, size: int) -> None:
    """A .tar.gz whose one member holds ``size`` zero bytes, written as gzip members
    of 1 MiB of zeros each (a gzip file may hold many; every reader joins them), so
    neither the member nor the archive is ever held in memory."""
    header = tarfile.TarInfo("JPEGImages/zeros.jpg")
    header.size = size
    mib_of_zeros = gzip_member(bytes(2**20))
    with open(path, "wb") as out:
        out.write(gzip_member(header.tobuf(format=tarfile.PAX_FORMAT)))
        for _ in range(size // 2**20):
            out.write(mib_of_zeros)
        out.write(gzip_member(bytes(2 * tarfile.BLOCKSIZE)))


def gzip_member(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    return compressor.compress(data) + compressor.flush()


def test_gzip_bomb_is_stopped_early(tmp_path):
    path = tmp_path / "bomb.tar.gz"
    write_zero_bomb(path, GIB)
    compressed = path.stat().st_size
    assert compressed < 2 * 2**20
    started = time.monotonic()
    with pytest.raises(DatasetError, match="decompression bomb") as caught:
        validate_archive(path, "voc-seg")
    elapsed = time.monotonic() - started
    read = int(re.search(r"expands from (\d+) to", str(caught.value)).group(1))
    assert read < compressed // 4, (read, compressed)  # stopped after a quarter at most
    assert elapsed < 5, elapsed
    with pytest.raises(DatasetError, match="decompression bomb"):
        safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_ordinary_compressed_archives_pass_the_ratio_check(tmp_path):
    files = dict(voc_files(), **{"notes/readme.txt": b"x" * 50_000})
    for kind in ("tar", "tar.gz", "tar.bz2", "tar.xz"):
        path = tmp_path / f"voc.{kind}"
        path.write_bytes(archive_bytes(kind, files))
        assert validate_archive(path, "voc-seg").sample_count == 2


def test_oversized_pax_header_is_refused_while_streaming(tmp_path):
    info = tarfile.TarInfo("JPEGImages/a.jpg")
    info.size = 4
    info.pax_headers = {"comment": "x" * 300_000}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(info, io.BytesIO(b"abcd"))
    path = tmp_path / "pax.tar.gz"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(DatasetError, match="over the size limit"):
        scan_archive(path, max_members=10, max_total_bytes=1000)
    assert scan_archive(path, max_members=10, max_total_bytes=10**6).files == {"JPEGImages/a.jpg": 4}


@pytest.mark.parametrize("kind", ["tar.gz", "tar.bz2", "tar.xz", "zip"])
def test_every_cut_of_a_compressed_archive_is_refused(tmp_path, kind):
    whole = archive_bytes(kind, voc_files())
    path = tmp_path / f"cut.{kind}"
    path.write_bytes(whole)
    assert validate_archive(path, "voc-seg").sample_count == 2
    accepted = []
    for cut in range(len(whole)):
        path.write_bytes(whole[:cut])
        try:
            validate_archive(path, "voc-seg")
        except DatasetError:
            continue
        accepted.append(cut)
    assert accepted == [], f"{len(accepted)} of {len(whole)} cut points accepted"


def test_every_cut_of_a_plain_tar_before_its_end_block_is_refused(tmp_path):
    whole = archive_bytes("tar", voc_files())
    with tarfile.open(fileobj=io.BytesIO(whole)) as archive:
        last = archive.getmembers()[-1]
    end = last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    assert whole[end:end + tarfile.BLOCKSIZE] == bytes(tarfile.BLOCKSIZE)  # the end-of-archive block
    path = tmp_path / "cut.tar"
    accepted = []
    block_edges = {edge + d for edge in range(0, end + 1, tarfile.BLOCKSIZE) for d in (-1, 0, 1)}
    cuts = sorted(block_edges | set(range(0, end + tarfile.BLOCKSIZE, 37)))
    for cut in [c for c in cuts if 0 <= c < end + tarfile.BLOCKSIZE]:
        path.write_bytes(whole[:cut])
        try:
            validate_archive(path, "voc-seg")
        except DatasetError:
            continue
        accepted.append(cut)
    assert accepted == [], f"{len(accepted)} cut points accepted, first {accepted[:5]}"
    path.write_bytes(whole[:end + tarfile.BLOCKSIZE])  # the end block kept, padding cut: complete
    assert validate_archive(path, "voc-seg").sample_count == 2
