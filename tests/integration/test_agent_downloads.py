"""The agent's real download and cache code against a local HTTP server that
supports Range and can cut a transfer short, as a flaky network does."""

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from edgefarm.agent.artifacts import ArtifactCache, CacheError
from edgefarm.shared.client import AgentSession, TransientError
from edgefarm.shared.datasets import pack_directory


class FlakyHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    cut_after = None  # bytes sent before the first response is cut
    requests = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        start = 0
        header = self.headers.get("Range")
        type(self).requests.append(header)
        if header:
            start = int(header.split("=")[1].split("-")[0])
        body = self.payload[start:]
        self.send_response(206 if header else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = type(self).cut_after
        if cut is not None:
            type(self).cut_after = None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    FlakyHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_interrupted_download_resumes_with_range_and_is_verified(http_server, tmp_path):
    payload = bytes(range(256)) * 4096  # 1 MiB
    FlakyHandler.payload, FlakyHandler.cut_after = payload, 300_000
    sha = hashlib.sha256(payload).hexdigest()
    cache = ArtifactCache(tmp_path / "cache", max_bytes=10 * 1024**2)
    client = AgentSession(http_server)
    path = cache.get_blob(sha, f"{http_server}/model", client.download)
    assert path.read_bytes() == payload
    assert FlakyHandler.requests[0] is None and FlakyHandler.requests[1] == "bytes=300000-"
    FlakyHandler.requests = []
    assert cache.get_blob(sha, f"{http_server}/model", client.download) == path
    assert FlakyHandler.requests == []  # served from the cache


def test_wrong_checksum_is_discarded(http_server, tmp_path):
    FlakyHandler.payload, FlakyHandler.cut_after = b"not what you asked for", None
    cache = ArtifactCache(tmp_path / "cache", max_bytes=10**6)
    client = AgentSession(http_server)
    with pytest.raises(TransientError, match="expected"):
        cache.get_blob("0" * 64, f"{http_server}/x", client.download)
    assert not cache.blob_path("0" * 64).exists()
    assert not cache.partial_path("0" * 64).exists()


def test_unreachable_server_is_retryable(tmp_path):
    client = AgentSession("http://127.0.0.1:9")
    with pytest.raises(TransientError, match="cannot reach|interrupted"):
        client.download("http://127.0.0.1:9/x", tmp_path / "x", "0" * 64, attempts=1)


def test_lru_eviction_keeps_the_cache_under_its_cap(tmp_path):
    cache = ArtifactCache(tmp_path / "cache", max_bytes=2500)
    blobs = [bytes([i]) * 1000 for i in range(3)]
    shas = [hashlib.sha256(b).hexdigest() for b in blobs]

    def fetcher(data):
        return lambda url, dest, sha: Path(dest).write_bytes(data)

    first = cache.get_blob(shas[0], "", fetcher(blobs[0]))
    second = cache.get_blob(shas[1], "", fetcher(blobs[1]))
    import os
    import time

    os.utime(first, (time.time() + 10, time.time() + 10))  # first was used more recently
    cache.get_blob(shas[2], "", fetcher(blobs[2]))
    assert first.exists() and not second.exists()
    assert cache.size() <= 2500


def test_dataset_archive_extracted_once(tmp_path):
    folder = tmp_path / "data" / "cls_a"
    folder.mkdir(parents=True)
    (folder / "1.png").write_bytes(b"\x89PNG fake")
    archive = tmp_path / "d.tar"
    pack_directory(tmp_path / "data", archive)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    calls = []

    def fetch(url, dest, digest):
        calls.append(url)
        Path(dest).write_bytes(archive.read_bytes())

    cache = ArtifactCache(tmp_path / "cache", max_bytes=10**7)
    target = cache.get_dataset_dir(sha, "u", fetch)
    assert (target / "cls_a" / "1.png").exists()
    assert cache.get_dataset_dir(sha, "u", fetch) == target and calls == ["u"]


def test_registered_dataset_is_verified_against_its_sha(tmp_path):
    folder = tmp_path / "data" / "cls_a"
    folder.mkdir(parents=True)
    (folder / "1.png").write_bytes(b"\x89PNG fake")
    archive = tmp_path / "d.tar"
    pack_directory(tmp_path / "data", archive)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    cache = ArtifactCache(tmp_path / "cache", max_bytes=10**7)
    assert cache.verify_registered(tmp_path / "data", sha) == tmp_path / "data"
    with pytest.raises(CacheError, match="expected"):
        cache.verify_registered(tmp_path / "data", "f" * 64)
    with pytest.raises(CacheError, match="does not exist"):
        cache.verify_registered(tmp_path / "nowhere", sha)
