"""Tar archives read as streams with their limits kept while reading: a gzip bomb
(1 GiB of zeros in about 1 MB) is stopped after a small part of it, a pax header
larger than the size limit allows is refused before it is held, and an archive cut
short at any byte is refused instead of being read as a smaller dataset."""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import time

import pytest

from edgefarm.shared.datasets import DatasetError, validate_archive
from edgefarm.shared.datasets.archives import safe_extract, scan_archive
from tests.support.archives import archive_bytes, voc_files, write_zero_bomb

GIB = 2**30


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
    assert elapsed < 20, elapsed  # the whole gigabyte takes a minute or more
    with pytest.raises(DatasetError, match="decompression bomb"):
        safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_bomb_is_a_well_formed_tar_gz(tmp_path):
    path = tmp_path / "small.tar.gz"
    write_zero_bomb(path, 3 * 2**20)
    with tarfile.open(path, "r:gz") as archive:
        member = archive.getmember("JPEGImages/zeros.jpg")
        assert member.size == 3 * 2**20
        assert archive.extractfile(member).read() == bytes(3 * 2**20)
    assert len(gzip.decompress(path.read_bytes())) % tarfile.BLOCKSIZE == 0


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
