"""A full disk under the artifact store: model and dataset uploads are refused
with a 507 problem+json, no partial file is left behind, what was stored before
still downloads intact, reports (stored in the database) keep working, and once
space is freed uploads succeed again.

The artifact folder is a 4 MiB tmpfs mounted for the test (root only; skipped
with the reason otherwise); the database lives outside it."""

import hashlib
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.support.archives import archive_bytes, voc_files
from tests.support.servers import Farm, ServerProcess, sample_result


@contextmanager
def small_disk(mount: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted at ``mount`` (root only: skips the test otherwise)."""
    mount.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.fixture
def small_artifact_disk(tmp_path):
    """``tmp_path/data0/artifacts`` (where the first farm of ``start_farm`` keeps its
    files) on a small tmpfs, unmounted after the farm has stopped."""
    with small_disk(tmp_path / "data0" / "artifacts") as mount:
        yield mount


def fill(disk: Path) -> Path:
    """Write zeros until the disk refuses more; returns the filler file."""
    filler = disk / "filler.bin"
    chunk = bytes(64 * 1024)
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError:
            pass
    with open(filler, "ab", buffering=0) as out:  # the last few bytes of a page, if any
        try:
            while True:
                out.write(b"\0")
        except OSError:
            pass
    return filler


def stored_files(disk: Path):
    return sorted(str(p.relative_to(disk)) for p in disk.rglob("*")
                  if p.is_file() and p.name != "filler.bin")


def assert_insufficient_storage(response):
    assert response.status_code == 507, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["title"] == "Insufficient storage" and "no space left" in body["detail"]


def test_full_artifact_disk_refuses_uploads_and_keeps_what_is_stored(
        small_artifact_disk, start_farm, tmp_path):
    farm = start_farm()
    first = tmp_path / "first.tflite"
    first.write_bytes(tiny_tflite(seed=0))
    model = farm.push_model(first, name="first", task="classification")
    filler = fill(small_artifact_disk)
    before = (stored_files(small_artifact_disk), farm.user.get("/api/v1/models").json(),
              farm.user.get("/api/v1/datasets").json())

    second = tiny_tflite(seed=1)
    assert_insufficient_storage(
        farm.user.post("/api/v1/models", files={"file": ("second.tflite", second)}))
    assert_insufficient_storage(farm.user.post(
        "/api/v1/datasets", files={"file": ("voc.tar", archive_bytes("tar", voc_files()))},
        data={"name": "voc", "layout": "voc-seg"}))
    after = (stored_files(small_artifact_disk), farm.user.get("/api/v1/models").json(),
             farm.user.get("/api/v1/datasets").json())
    assert after == before  # no partial blob, no temporary file, no row

    download = farm.user.get(f"/api/v1/models/{model['id']}/file")
    assert hashlib.sha256(download.content).hexdigest() == model["sha256"]
    agent = farm.enroll("pc-1")
    farm.submit(models=[model["id"]], devices="all")
    lease = agent.lease()
    assert agent.http.get(lease["model"]["download_url"]).status_code == 200
    assert agent.report(lease).status_code == 200  # the database is not on the full disk

    filler.unlink()
    again = farm.user.post("/api/v1/models", files={"file": ("second.tflite", second)})
    assert again.status_code == 201, again.text
    assert again.json()["sha256"] == hashlib.sha256(second).hexdigest()


def test_report_to_a_full_sqlite_disk_is_refused_then_accepted_once_space_is_freed(tmp_path):
    """The default layout: the SQLite database inside the (full) data directory."""
    with small_disk(tmp_path / "data") as disk:
        server = ServerProcess(disk, f"sqlite:///{disk}/edgefarm.db").start()
        farm = Farm(server)
        try:
            path = tmp_path / "m.tflite"
            path.write_bytes(tiny_tflite())
            model = farm.push_model(path, name="m")
            agent = farm.enroll("pc-1")
            job = farm.submit(models=[model["id"]], devices="all")
            lease = agent.lease()
            filler = fill(disk)
            result = sample_result()
            result["latency_ms"]["samples"] = [10.0 + i / 1000 for i in range(20_000)]
            refused = agent.report(lease, result=result)
            assert_database_full(refused)
            assert farm.user.get(f"/api/v1/runs/{lease['run_id']}").json()["state"] == "leased"
            assert farm.user.get("/api/v1/results").json() == []
            filler.unlink()
            accepted = agent.report(lease, result=result)
            assert accepted.status_code == 200, accepted.text
            assert farm.user.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "succeeded"
            download = farm.user.get(f"/api/v1/models/{model['id']}/file")
            assert hashlib.sha256(download.content).hexdigest() == model["sha256"]
        finally:
            farm.close()
            server.stop()


def assert_database_full(response):
    assert response.status_code == 507, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "database has no disk space left" in response.json()["detail"]
