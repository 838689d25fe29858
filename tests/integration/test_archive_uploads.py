"""Unsafe dataset archives uploaded to a real server: a gzip bomb (1 GiB of zeros
in about 1 MB) and archives cut short are refused with a 4xx problem+json, and
nothing is stored (no row, no file, no temporary file)."""

import io
import tarfile

import pytest

from tests.support.archives import archive_bytes, voc_files, write_zero_bomb

GIB = 2**30


def stored(farm):
    artifacts = farm.server.data_dir / "artifacts"
    return {"datasets": farm.user.get("/api/v1/datasets").json(),
            "files": sorted(str(p.relative_to(artifacts)) for p in artifacts.rglob("*") if p.is_file())}


def upload(farm, name, payload, filename):
    return farm.user.post("/api/v1/datasets", files={"file": (filename, payload)},
                          data={"name": name, "layout": "voc-seg"})


def assert_refused(response, *words):
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail = response.json()["detail"]
    assert all(word in detail for word in words), detail


@pytest.fixture
def farm_with_a_dataset(farm):
    ok = upload(farm, "good", archive_bytes("tar.gz", voc_files()), "good.tar.gz")
    assert ok.status_code == 201, ok.text
    return farm


def test_gzip_bomb_upload_is_refused_and_nothing_stored(farm_with_a_dataset, tmp_path):
    farm = farm_with_a_dataset
    bomb = tmp_path / "bomb.tar.gz"
    write_zero_bomb(bomb, GIB)
    before = stored(farm)
    with open(bomb, "rb") as handle:
        assert_refused(upload(farm, "bomb", handle, "bomb.tar.gz"), "decompression bomb")
    assert stored(farm) == before


def truncated_archives():
    whole_gz = archive_bytes("tar.gz", voc_files())
    whole_tar = archive_bytes("tar", voc_files())
    with tarfile.open(fileobj=io.BytesIO(whole_tar)) as archive:
        last = archive.getmembers()[-1]
    end = last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    return [("cut.tar.gz", whole_gz[:-4]), ("cut.tar", whole_tar[:end])]


def test_truncated_archive_uploads_are_refused_and_nothing_stored(farm_with_a_dataset):
    farm = farm_with_a_dataset
    before = stored(farm)
    for index, (filename, payload) in enumerate(truncated_archives()):
        response = upload(farm, f"cut{index}", payload, filename)
        assert_refused(response)
        assert "truncated" in response.json()["detail"] or "ended" in response.json()["detail"]
    assert stored(farm) == before
