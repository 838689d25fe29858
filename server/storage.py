"""Content-addressed artifact storage (models and dataset archives).

Artifacts are written through ``ArtifactWriter`` in chunks, hashed as they
arrive and stored under their sha256; nothing holds a whole file in memory.
``ArtifactStore`` is the interface an S3-compatible store can implement later;
``LocalArtifactStore`` keeps files in the data directory.

A full disk never leaves a partial file: when the store runs out of space the
upload's temporary file is removed at once, the rest of the upload is counted
but not written, and ``finish``/``commit`` raise ``StorageFull``, which the
services answer as 507; files stored before are untouched.
"""

import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Optional, Protocol


class ArtifactTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"the upload is larger than the limit of {limit} bytes")
        self.limit = limit


class StorageFull(Exception):
    """The artifact store has no space left for an upload (ENOSPC or a quota)."""


def is_no_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class ArtifactWriter(Protocol):
    sha256: str
    size: int

    def write(self, chunk: bytes) -> None: ...
    def commit(self) -> str: ...
    def abort(self) -> None: ...
    @property
    def temp_path(self) -> Path: ...


class ArtifactStore(Protocol):
    def writer(self, max_bytes: Optional[int] = None) -> ArtifactWriter: ...
    def exists(self, sha256: str) -> bool: ...
    def open(self, sha256: str) -> BinaryIO: ...
    def local_path(self, sha256: str) -> Optional[Path]: ...
    def delete(self, sha256: str) -> None: ...


class LocalWriter:
    """Streams one upload into a temporary file, hashing and counting as it goes."""

    def __init__(self, store: "LocalArtifactStore", max_bytes: Optional[int]):
        self._store = store
        self._max = max_bytes
        self._hash = hashlib.sha256()
        self.size = 0
        self.sha256 = ""
        self._full: Optional[OSError] = None
        self._file: Optional[BinaryIO] = None
        try:
            fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="upload-")
        except OSError as exc:
            if not is_no_space(exc):
                raise
            self._full, self._path = exc, store.tmp_dir / "upload-not-created"
            return
        self._file = os.fdopen(fd, "wb")
        self._path = Path(name)

    @property
    def temp_path(self) -> Path:
        return self._path

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._max is not None and self.size > self._max:
            raise ArtifactTooLarge(self._max)
        if self._full is not None:
            return  # the disk is full: the rest of the upload is read, not kept
        self._hash.update(chunk)
        try:
            self._file.write(chunk)
        except OSError as exc:
            self._give_up(exc)

    def _give_up(self, exc: OSError) -> None:
        """Out of space: drop the partial temporary file now (other errors propagate)."""
        if not is_no_space(exc):
            raise exc
        self._full = exc
        self._discard()

    def _discard(self) -> None:
        if self._file is not None and not self._file.closed:
            try:
                self._file.close()
            except OSError:
                pass  # flushing the buffer failed too; the file goes anyway
        self._path.unlink(missing_ok=True)

    def _raise_if_full(self) -> None:
        if self._full is not None:
            raise StorageFull(
                f"the artifact store has no space left ({os.strerror(self._full.errno)}) "
                f"after {self.size} bytes of this upload; nothing of it was kept"
            )

    def finish(self) -> str:
        """Close the temp file and fix the digest; the file stays at temp_path."""
        self._raise_if_full()
        if not self._file.closed:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
            except OSError as exc:
                self._give_up(exc)
                self._raise_if_full()
            self.sha256 = self._hash.hexdigest()
        return self.sha256

    def commit(self) -> str:
        sha = self.finish()
        target = self._store.path_for(sha)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                self._path.unlink(missing_ok=True)
            else:
                os.replace(self._path, target)
        except OSError as exc:
            self._give_up(exc)
            self._raise_if_full()
        return sha

    def abort(self) -> None:
        self._discard()


class LocalArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def writer(self, max_bytes: Optional[int] = None) -> LocalWriter:
        return LocalWriter(self, max_bytes)

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        return open(self.path_for(sha256), "rb")

    def local_path(self, sha256: str) -> Optional[Path]:
        path = self.path_for(sha256)
        return path if path.is_file() else None

    def delete(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)
