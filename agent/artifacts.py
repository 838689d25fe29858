"""The agent's content-addressed artifact cache.

Blobs live at ``<cache>/blobs/<sha[:2]>/<sha>`` and are only ever placed there
after their sha256 was checked; a disk can still damage or truncate them later,
so every use checks the blob again (its size, then its sha256: 3-4 ms for the
2.8 MB DeepLab model) and a blob that fails is removed and downloaded again. Extracted
dataset archives live at
``<cache>/datasets/<sha>/`` and are extracted once, safely (no absolute paths,
no ``..``, no links). Every use touches the entry, and ``evict`` removes the
least recently used entries until the cache fits its size cap. Datasets that
are registered on the device (not downloaded) are verified against their
expected sha256 once and remembered.
"""

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from edgefarm.shared.contract.digests import sha256_file
from edgefarm.shared.datasets import pack_directory, safe_extract

log = logging.getLogger("edgefarm.agent")

Fetch = Callable[[str, Path, str], None]  # (url, destination, expected sha256)


class CacheError(RuntimeError):
    """An artifact could not be made available (wrong checksum, missing path)."""


def tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


class ArtifactCache:
    def __init__(self, root: Path, max_bytes: int):
        self.root, self.max_bytes = Path(root), max_bytes
        for sub in ("blobs", "datasets", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._verified_path = self.root / "verified.json"

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256

    def partial_path(self, sha256: str) -> Path:
        return self.root / "tmp" / f"{sha256}.part"

    def get_blob(self, sha256: str, url: str, fetch: Fetch, size: Optional[int] = None) -> Path:
        """The verified file for ``sha256``, downloading it (resumably) when absent or
        when the cached copy no longer has ``size`` bytes or that sha256."""
        path = self.blob_path(sha256)
        if path.exists():
            problem = blob_problem(path, sha256, size)
            if problem is None:
                self._touch(path)
                return path
            log.warning("cached %s %s; removed, downloading it again", path.name, problem)
            path.unlink()
        partial = self.partial_path(sha256)
        fetch(url, partial, sha256)  # checks the digest; leaves a partial file to resume on failure
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, path)
        self.evict(keep={path})
        return path

    def get_dataset_dir(self, sha256: str, url: str, fetch: Fetch, size: Optional[int] = None) -> Path:
        """A downloaded dataset archive, extracted once into its own folder."""
        target = self.root / "datasets" / sha256
        if target.is_dir():
            self._touch(target)
            return target
        archive = self.get_blob(sha256, url, fetch, size)
        try:
            safe_extract(archive, target)
        except FileExistsError:
            pass  # extracted concurrently
        self._touch(target)
        self.evict(keep={target, archive})
        return target

    def verify_registered(self, path: Path, sha256: str) -> Path:
        """A dataset already on the device: check its sha256 once, then trust the record."""
        path = Path(path)
        if not path.exists():
            raise CacheError(f"registered dataset path {path} does not exist on this device")
        key = f"{path.resolve()}:{_fingerprint(path)}"
        known = self._load_verified()
        if known.get(key) != sha256:
            digest = sha256_file(path) if path.is_file() else self._directory_digest(path)
            if digest != sha256:
                raise CacheError(f"registered dataset at {path} has sha256 {digest}, expected {sha256}")
            known[key] = sha256
            self._save_verified(known)
        if path.is_file():
            return self.get_dataset_dir(sha256, "", lambda url, dest, sha: shutil.copyfile(path, dest))
        return path

    def _directory_digest(self, path: Path) -> str:
        """sha256 of the deterministic tar of a folder (what ``edgefarm datasets push`` uploads)."""
        with tempfile.TemporaryDirectory(dir=self.root / "tmp") as tmp:
            archive = Path(tmp) / "dataset.tar"
            pack_directory(path, archive)
            return sha256_file(archive)

    def _load_verified(self) -> Dict[str, str]:
        try:
            return json.loads(self._verified_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _save_verified(self, known: Dict[str, str]) -> None:
        tmp = self._verified_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, self._verified_path)

    @staticmethod
    def _touch(path: Path) -> None:
        now = time.time()
        os.utime(path, (now, now))

    def entries(self) -> List[Tuple[float, int, Path]]:
        found = []
        for blob in (self.root / "blobs").glob("*/*"):
            stat = blob.stat()
            found.append((stat.st_mtime, stat.st_size, blob))
        for folder in (self.root / "datasets").iterdir():
            found.append((folder.stat().st_mtime, tree_size(folder), folder))
        return sorted(found)

    def size(self) -> int:
        return sum(size for _, size, _ in self.entries())

    def evict(self, keep=frozenset()) -> List[Path]:
        """Remove least recently used entries until the cache is under its cap."""
        removed = []
        with self._lock:
            entries = self.entries()
            total = sum(size for _, size, _ in entries)
            for _, size, path in entries:
                if total <= self.max_bytes:
                    break
                if path in keep:
                    continue
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                total -= size
                removed.append(path)
        return removed


def blob_problem(path: Path, sha256: str, size: Optional[int] = None) -> Optional[str]:
    """Why the file at ``path`` is not the blob ``sha256`` of ``size`` bytes, or None."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"has {actual} bytes, expected {size}"
    digest = sha256_file(path)
    if digest != sha256:
        return f"has sha256 {digest}"
    return None


def _fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{int(stat.st_mtime)}"
