"""Getting files to the server: streamed uploads with a progress bar, and
dataset folders packed into a tar archive first.

httpx streams a multipart body when it is given a file object: it reads it in
64 KiB chunks while sending, so a model or dataset of many gigabytes never sits
in memory. ``ProgressReader`` wraps that file object to move a rich progress
bar on stderr as httpx reads; the bar is shown only when stderr is a terminal.
"""

from __future__ import annotations

import tarfile
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator, Tuple

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .errors import EXIT_FAILURE, CliError
from .output import console, say, stderr_is_tty


class ProgressReader:
    """A read-only binary file that reports its position after every read."""

    def __init__(self, handle: IO[bytes], on_progress: Callable[[int], None]):
        self._handle = handle
        self._on_progress = on_progress

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._on_progress(self._handle.tell())
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()

    def fileno(self) -> int:
        return self._handle.fileno()


def existing_file(path: Path, what: str = "file") -> Path:
    """The path when it is a readable regular file; else CliError (exit 2)."""
    if not path.exists():
        raise CliError(f"no such {what}: {path}")
    if not path.is_file():
        raise CliError(f"{path} is not a file")
    return path


@contextmanager
def upload_stream(path: Path, label: str) -> Iterator[IO[bytes]]:
    """The open file, wrapped in a progress bar on stderr when it is a terminal."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}")
    with handle:
        if not stderr_is_tty():
            yield handle
            return
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console(stderr=True), transient=True) as progress:
            task = progress.add_task(label, total=path.stat().st_size)
            yield ProgressReader(handle, lambda pos: progress.update(task, completed=pos))


def is_archive(path: Path) -> bool:
    """A zip or tar (possibly compressed) archive, judged by content."""
    try:
        return zipfile.is_zipfile(path) or tarfile.is_tarfile(str(path))
    except OSError:
        return False


@contextmanager
def dataset_archive(path: Path) -> Iterator[Tuple[Path, str]]:
    """``(archive, upload name)``: an archive as is, or a folder packed into a
    deterministic uncompressed tar in a temporary directory (removed after)."""
    if not path.exists():
        raise CliError(f"no such file or folder: {path}")
    if not path.is_dir():
        if not is_archive(path):
            raise CliError(f"{path} is neither a folder nor a zip or tar archive")
        yield path, path.name
        return
    with tempfile.TemporaryDirectory(prefix="edgefarm-pack-") as tmp:
        dest = Path(tmp) / f"{path.resolve().name or 'dataset'}.tar"
        _pack(path, dest)
        yield dest, dest.name


def _pack(src: Path, dest: Path) -> None:
    try:
        from edgefarm.shared.datasets import pack_directory
    except ImportError as exc:
        raise CliError(f"cannot pack folders with this installation ({exc}); pass a zip or tar archive",
                       EXIT_FAILURE)
    if stderr_is_tty():
        say(f"packing {src} ...")
    try:
        pack_directory(src, dest)
    except OSError as exc:
        raise CliError(f"cannot pack {src}: {exc}", EXIT_FAILURE)
    except ValueError as exc:
        raise CliError(f"cannot pack {src}: {exc}")
