"""The files of a dataset archive or folder, read safely: the one place that opens zip
and tar members and walks dataset folders.

This module owns:

* ``scan_archive`` / ``scan_directory``: every entry checked and the regular files
  collected as a ``Tree`` (paths "/"-separated, with sizes), plus the few small files
  the caller asks to keep (``Keep``: a list file's whole text, or an IDX file's
  16-byte head). Archives are never extracted for this.
* The safety rules: members with absolute paths, drive letters, ``..`` components,
  NUL bytes or backslashes, links, device files, FIFOs and duplicate names are
  refused, and so are archives over a member-count or uncompressed-size limit and zip
  members compressed more than 1000:1 (zip bombs). A tar archive's decompressed stream
  is counted as it is read: past its first MiB it may not expand more than 200:1 over
  the compressed bytes read so far, nor beyond the size limit plus room for headers, so a bomb is
  stopped early. It is read to its end: a tar archive without its end-of-archive
  block, or a gzip, bzip2 or xz stream cut short, is refused as truncated. ``__MACOSX/``, ``.DS_Store`` and
  AppleDouble ``._*`` members are junk: ignored, never extracted or packed.
* ``safe_extract``: extraction after the same checks, into a staging folder beside
  the destination that is renamed into place only when everything was written.
* ``pack_directory``: a deterministic uncompressed .tar of a folder, so one folder
  always gives the same sha256.

Pure standard library; runs on Python 3.9 and later.
"""

from __future__ import annotations

import functools
import gzip
import os
import posixpath
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import zipfile
import zlib
from typing import IO, Callable, Dict, List, Optional, Set, Tuple

from .errors import DatasetError

try:  # tarfile reads .tar.xz through lzma, which some Python builds lack
    import lzma

    _LZMA_ERRORS: Tuple[type, ...] = (lzma.LZMAError,)
except ImportError:  # pragma: no cover
    _LZMA_ERRORS = ()

DEFAULT_MAX_MEMBERS = 2_000_000
DEFAULT_MAX_TOTAL_BYTES = 64 * 2**30
MAX_COMPRESSION_RATIO = 1000
MAX_STREAM_RATIO = 200  # a whole tar stream: images barely compress, text some 10:1
MAX_TEXT_BYTES = 64 * 2**20  # largest split list, labels file or class list read into memory
HEAD_BYTES = 16  # what a "head" keeps: an IDX file's header

#: What a scan keeps of the file at a path: "text" (the whole file, up to
#: MAX_TEXT_BYTES), "head" (its first HEAD_BYTES, decompressed for .gz) or None.
Keep = Callable[[str], Optional[str]]

_DRIVE_LETTER = re.compile(r"[A-Za-z]:")
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_COPY_CHUNK = 1 << 20

# What a damaged archive raises while it is read (bz2 reports damage as OSError).
_DAMAGED_ARCHIVE_ERRORS = (
    zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile,
) + _LZMA_ERRORS


def _keep_nothing(path: str) -> Optional[str]:
    return None


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def safe_extract(archive_path, dest_dir) -> None:
    """Extract a checked archive to ``dest_dir``, which must not exist yet.

    Files are written to a staging folder beside ``dest_dir`` that is renamed to it once
    complete; on any error the staging folder is removed and ``dest_dir`` stays absent.
    Junk members are not extracted; archive permissions and owners are not applied.
    """
    dest = os.path.abspath(os.fspath(dest_dir))
    if os.path.lexists(dest):
        raise FileExistsError(f"{dest} already exists; refusing to extract over it")
    scan_archive(archive_path, DEFAULT_MAX_MEMBERS, DEFAULT_MAX_TOTAL_BYTES)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.extracting-", dir=parent)
    try:
        os.chmod(staging, 0o755)
        _extract_archive(archive_path, staging)
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def pack_directory(src_dir, dest_archive_path) -> None:
    """Write the folder's files to an uncompressed .tar that depends only on their paths and
    bytes: sorted members, mtime 0, mode 0644, uid/gid 0, no owner names, no folder entries.

    The folder gets the checks of ``validate_directory`` except the layout (unsafe names,
    symlinks and special files are refused; junk files are left out). The archive is
    written beside ``dest_archive_path`` and renamed into place.
    """
    src = os.path.realpath(os.fspath(src_dir))
    dest = os.path.realpath(os.fspath(dest_archive_path))
    if os.path.commonpath([src, dest]) == src:
        raise ValueError(f"the archive {dest} would be written inside the folder it packs")
    tree = scan_directory(src)
    if not tree.files:
        raise DatasetError(f"folder {src} holds no files to pack")
    fd, partial = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", dir=os.path.dirname(dest))
    try:
        with os.fdopen(fd, "wb") as stream:
            _write_tar(stream, src, tree)
        os.chmod(partial, 0o644)
        os.replace(partial, dest)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise


def _write_tar(stream: IO[bytes], src: str, tree: Tree) -> None:
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(tree.files):
            info = tarfile.TarInfo(path)
            info.size = tree.files[path]
            info.mtime, info.mode, info.uid, info.gid = 0, 0o644, 0, 0
            info.uname = info.gname = ""
            with open(os.path.join(src, *path.split("/")), "rb") as data:
                tar.addfile(info, data)


# ---------------------------------------------------------------------------
# The files of an archive or folder
# ---------------------------------------------------------------------------


class Tree:
    """The regular files of an archive or folder by "/"-separated path, with their sizes,
    and the small files kept while scanning (``blobs``)."""

    def __init__(self, container: str) -> None:
        self.container = container  # "archive" or "folder", for messages
        self.files: Dict[str, int] = {}
        self.blobs: Dict[str, bytes] = {}
        self.total_bytes = 0
        self._index: Optional[Dict[str, Tuple[List[str], List[str]]]] = None

    def listing(self, folder: str) -> Tuple[List[str], List[str]]:
        """Sorted names of the (subfolders, files) directly inside ``folder`` ("" = top)."""
        if self._index is None:
            self._index = _index_folders(self.files)
        return self._index.get(folder, ([], []))

    def folders(self) -> List[str]:
        self.listing("")
        return sorted(self._index or {})

    def text(self, path: str) -> str:
        blob = self.blobs.get(path)
        if blob is None:
            raise DatasetError(
                f"{path} is too large ({self.files[path]} bytes) for a list file "
                f"(limit {MAX_TEXT_BYTES} bytes)"
            )
        try:
            return blob.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise DatasetError(f"{path} is not UTF-8 text") from None

    def head(self, path: str) -> bytes:
        return self.blobs[path]


def _index_folders(files: Dict[str, int]) -> Dict[str, Tuple[List[str], List[str]]]:
    subfolders: Dict[str, Set[str]] = {"": set()}
    names: Dict[str, List[str]] = {}
    for path in files:
        parent, name = posixpath.split(path)
        names.setdefault(parent, []).append(name)
        folder = parent
        while folder:  # register the folder chain up to the top, stopping at a known one
            grandparent, folder_name = posixpath.split(folder)
            siblings = subfolders.setdefault(grandparent, set())
            if folder_name in siblings:
                break
            siblings.add(folder_name)
            folder = grandparent
        subfolders.setdefault(parent, set())
    return {
        folder: (sorted(subfolders[folder]), sorted(names.get(folder, [])))
        for folder in subfolders
    }


class _Scan:
    """Checks the entries of one archive or folder, one by one, and collects a Tree."""

    def __init__(self, noun: str, container: str, max_members: int, max_total_bytes: int):
        self.noun = noun  # "archive member" or "file", for messages
        self.max_members = max_members
        self.max_total_bytes = max_total_bytes
        self.tree = Tree(container)
        self.entries = 0
        self.seen: Set[str] = set()
        self.folders: Set[str] = set()

    def admit(self, raw_name: str, kind: str, size: int) -> Optional[str]:
        """Check one entry ("file" or "dir"); return its normalized path, or None when it is
        junk or the top folder itself."""
        self.entries += 1
        if self.entries > self.max_members:
            raise DatasetError(
                f"{self.tree.container} has more than {self.max_members} members; refusing it"
            )
        path = _checked_name(raw_name, self.noun)
        if not path or is_junk(path):
            return None
        if path in self.seen:
            raise DatasetError(f"{self.noun} {raw_name!r} appears more than once")
        self.seen.add(path)
        if kind == "dir":
            self.folders.add(path)
            return path
        self.tree.total_bytes += size
        if self.tree.total_bytes > self.max_total_bytes:
            raise DatasetError(
                f"{self.tree.container} holds more than {self.max_total_bytes} bytes once "
                f"uncompressed (reached at {raw_name!r}); refusing it"
            )
        self.tree.files[path] = size
        return path

    def finish(self) -> Tree:
        """Refuse files that other members would have to be written inside of."""
        for path in list(self.tree.files) + sorted(self.folders):
            parent = posixpath.dirname(path)
            while parent:
                if parent in self.tree.files:
                    raise DatasetError(
                        f"{self.noun} {path!r} lies inside {parent!r}, which is a file"
                    )
                parent = posixpath.dirname(parent)
        return self.tree


def _checked_name(raw: str, noun: str) -> str:
    """The member name without "." and empty components; DatasetError when it is unsafe."""
    if "\x00" in raw:
        raise DatasetError(f"{noun} {raw!r} contains a NUL byte")
    if "\\" in raw:
        raise DatasetError(f"{noun} {raw!r} contains a backslash; folders must be separated by '/'")
    if raw.startswith("/"):
        raise DatasetError(f"{noun} {raw!r} has an absolute path")
    if _DRIVE_LETTER.match(raw):
        raise DatasetError(f"{noun} {raw!r} starts with a drive letter")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise DatasetError(f"{noun} {raw!r} escapes the dataset folder (contains '..')")
    return "/".join(parts)


def is_junk(path: str) -> bool:
    """macOS metadata: __MACOSX/ folders, .DS_Store files and AppleDouble ._* files."""
    parts = path.split("/")
    return "__MACOSX" in parts or parts[-1] == ".DS_Store" or parts[-1].startswith("._")


def _refuse_kind(noun: str, raw: str, what: str) -> DatasetError:
    return DatasetError(f"{noun} {raw!r} is {what}, which a dataset may not contain")


def _tar_entry_kind(member: tarfile.TarInfo, noun: str) -> str:
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        raise _refuse_kind(noun, member.name, f"a symbolic link (to {member.linkname!r})")
    if member.islnk():
        raise _refuse_kind(noun, member.name, f"a hard link (to {member.linkname!r})")
    if member.ischr() or member.isblk():
        raise _refuse_kind(noun, member.name, "a device file")
    if member.isfifo():
        raise _refuse_kind(noun, member.name, "a FIFO (named pipe)")
    raise _refuse_kind(noun, member.name, "neither a regular file nor a folder")


def _zip_entry_kind(info: zipfile.ZipInfo, noun: str) -> str:
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if file_type == stat.S_IFLNK:
        raise _refuse_kind(noun, info.filename, "a symbolic link")
    if file_type in (stat.S_IFCHR, stat.S_IFBLK):
        raise _refuse_kind(noun, info.filename, "a device file")
    if file_type in (stat.S_IFIFO, stat.S_IFSOCK):
        raise _refuse_kind(noun, info.filename, "a FIFO or socket")
    if info.flag_bits & 0x1:
        raise DatasetError(f"{noun} {info.filename!r} is encrypted")
    if info.is_dir():
        return "dir"
    if info.file_size and info.file_size >= MAX_COMPRESSION_RATIO * info.compress_size:
        raise DatasetError(
            f"{noun} {info.filename!r} expands from {info.compress_size} to {info.file_size} "
            f"bytes (ratio of {MAX_COMPRESSION_RATIO}:1 or more); refusing a possible zip bomb"
        )
    return "file"


def _disk_entry_kind(full_path: str, rel: str) -> Tuple[str, int]:
    info = os.lstat(full_path)
    if stat.S_ISLNK(info.st_mode):
        raise _refuse_kind("file", rel, "a symbolic link")
    if stat.S_ISDIR(info.st_mode):
        return "dir", 0
    if stat.S_ISREG(info.st_mode):
        return "file", info.st_size
    raise _refuse_kind("file", rel, "a device file, FIFO or socket")


def _prefetch(tree: Tree, path: str, size: int, keep: Keep,
              open_stream: Callable[[], IO[bytes]]) -> None:
    """Keep the content (or head) of a file the caller asked for."""
    kind = keep(path)
    if kind is None or (kind == "text" and size > MAX_TEXT_BYTES):
        return
    with open_stream() as stream:
        if kind == "text":
            tree.blobs[path] = stream.read(MAX_TEXT_BYTES + 1)
        elif path.endswith(".gz"):
            tree.blobs[path] = _gzip_head(stream, path)
        else:
            tree.blobs[path] = stream.read(HEAD_BYTES)


def _gzip_head(stream: IO[bytes], path: str) -> bytes:
    try:
        return gzip.GzipFile(fileobj=stream, mode="rb").read(HEAD_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path} is not a valid gzip file ({exc})") from None


# ---------------------------------------------------------------------------
# Reading archives and folders
# ---------------------------------------------------------------------------


def _archive_kind(path) -> str:
    with open(path, "rb") as stream:
        magic = stream.read(4)
    if magic in _ZIP_MAGICS:
        return "zip"
    try:
        is_tar = tarfile.is_tarfile(path)
    except _DAMAGED_ARCHIVE_ERRORS as exc:  # compressed, but cut short or corrupt
        raise DatasetError(f"damaged tar archive: {exc}") from exc
    if is_tar:
        return "tar"
    raise DatasetError("not a zip or tar archive")


#: What is done with each admitted member: ``(path, "file" or "dir", size, open_stream)``.
_MemberAction = Callable[[str, str, int, Callable[[], IO[bytes]]], None]


def scan_archive(path, max_members: int, max_total_bytes: int, keep: Keep = _keep_nothing) -> Tree:
    """The checked files of the zip or tar archive at ``path``; nothing is extracted."""
    scan = _Scan("archive member", "archive", max_members, max_total_bytes)

    def prefetch(member: str, kind: str, size: int, open_stream: Callable[[], IO[bytes]]) -> None:
        if kind == "file":
            _prefetch(scan.tree, member, size, keep, open_stream)

    return _read_archive(path, scan, prefetch, _DAMAGED_ARCHIVE_ERRORS + (OSError,))


def _read_archive(path, scan: _Scan, act: _MemberAction, damaged: Tuple[type, ...]) -> Tree:
    """Every member of the archive checked by ``scan``, then handed to ``act``; the
    ``damaged`` errors are reported as a damaged archive."""
    kind = _archive_kind(path)
    try:
        if kind == "zip":
            _zip_members(path, scan, act)
        else:
            _tar_members(path, scan, act)
    except damaged as exc:
        raise DatasetError(f"damaged {kind} archive: {exc}") from exc
    return scan.finish()


def _zip_members(path, scan: _Scan, act: _MemberAction) -> None:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            kind = _zip_entry_kind(info, scan.noun)
            member = scan.admit(info.filename, kind, info.file_size)
            if member:
                act(member, kind, info.file_size, functools.partial(archive.open, info))


def _tar_members(path, scan: _Scan, act: _MemberAction) -> None:
    with open(path, "rb") as raw_file:
        raw = _CountingReader(raw_file)
        stream = _TarStream(_decompressed(raw), raw, scan.max_total_bytes, scan.max_members)
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for info in archive:
                kind = _tar_entry_kind(info, scan.noun)
                size = info.size if kind == "file" else 0
                member = scan.admit(info.name, kind, size)
                if member:
                    act(member, kind, size, functools.partial(archive.extractfile, info))
            stream.check_end_block(archive.offset)
        stream.drain()


_GZIP_MAGIC, _BZIP2_MAGIC, _XZ_MAGIC = b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"
_HEADER_ROOM = 4096  # stream bytes allowed per member beyond its data: headers, padding
_RATIO_FLOOR = 1 << 20  # decompressed bytes always allowed, whatever the ratio


class _CountingReader:
    """A file read forwards, counting the bytes read."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        return data


def _decompressed(raw: _CountingReader) -> IO[bytes]:
    """The tar stream inside ``raw``, decompressed by the stream's own magic bytes;
    these readers check the end of the compressed stream (a gzip trailer's CRC and
    length), which tarfile's own stream reader does not."""
    magic = raw.read(6)
    source = _Prefixed(magic, raw)
    if magic.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=source, mode="rb")  # type: ignore[arg-type]
    if magic.startswith(_BZIP2_MAGIC):
        import bz2

        return bz2.BZ2File(source, mode="rb")  # type: ignore[arg-type]
    if magic.startswith(_XZ_MAGIC):
        import lzma as lzma_module

        return lzma_module.LZMAFile(source, mode="rb")  # type: ignore[arg-type]
    return source  # type: ignore[return-value]


class _Prefixed:
    """``head`` (already read) followed by the rest of ``rest``."""

    def __init__(self, head: bytes, rest: _CountingReader) -> None:
        self._head, self._rest = head, rest

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._rest.read(size)
        if size is None or size < 0:
            data, self._head = self._head + self._rest.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        if len(data) < size:
            data += self._rest.read(size - len(data))
        return data


class _TarStream:
    """The decompressed tar stream as tarfile reads it: every byte counted against the
    compression-ratio and size limits (a bomb stops early), and the last bytes kept to
    check that the archive ends with its end-of-archive block."""

    def __init__(self, stream: IO[bytes], raw: _CountingReader, max_total_bytes: int,
                 max_members: int) -> None:
        self._stream, self._raw = stream, raw
        self._limit = max_total_bytes + _HEADER_ROOM * (max_members + 1) + tarfile.RECORDSIZE
        self.count = 0
        self._tail = b""
        self._tail_start = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        self._check_limits()
        keep = 2 * tarfile.RECORDSIZE + tarfile.BLOCKSIZE
        self._tail = (self._tail + data)[-keep:]
        self._tail_start = self.count - len(self._tail)
        return data

    def _check_limits(self) -> None:
        if self.count > MAX_STREAM_RATIO * self._raw.count + _RATIO_FLOOR:
            raise DatasetError(
                f"archive expands from {self._raw.count} to more than {self.count} bytes "
                f"(ratio over {MAX_STREAM_RATIO}:1); refusing a possible decompression bomb"
            )
        if self.count > self._limit:
            raise DatasetError(
                f"archive expands to more than {self._limit} bytes, over the size limit; refusing it"
            )

    def check_end_block(self, offset: int) -> None:
        """The member listing stopped at ``offset``: refuse it unless a zeroed block sits
        there (the end-of-archive marker), i.e. the archive was not cut short."""
        start = offset - self._tail_start
        if offset + tarfile.BLOCKSIZE > self.count:
            start = -1  # read more so the block is there, if the archive holds it
            more = self.read(tarfile.BLOCKSIZE + offset - self.count)
            if more:
                start = offset - self._tail_start
        block = self._tail[start:start + tarfile.BLOCKSIZE] if start >= 0 else b""
        if len(block) != tarfile.BLOCKSIZE or block.count(0) != tarfile.BLOCKSIZE:
            raise DatasetError(
                f"tar archive ends at byte {offset} without its end-of-archive block: "
                "it is truncated or damaged"
            )

    def drain(self) -> None:
        """Read the stream to its end (the decompressor then checks the compressed
        stream's end, which a truncated file lacks)."""
        while self.read(_COPY_CHUNK):
            pass


def scan_directory(root_dir, keep: Keep = _keep_nothing) -> Tree:
    """The checked files of the folder ``root_dir`` (symlinks and special files refused)."""
    root = os.fspath(root_dir)
    if not os.path.isdir(root):
        raise DatasetError(f"{root} is not a folder")
    scan = _Scan("file", "folder", sys.maxsize, sys.maxsize)
    for folder, subfolders, filenames in os.walk(root):
        subfolders.sort()
        for name in subfolders + sorted(filenames):
            full_path = os.path.join(folder, name)
            rel = os.path.relpath(full_path, root).replace(os.sep, "/")
            kind, size = _disk_entry_kind(full_path, rel)
            path = scan.admit(rel, kind, size)
            if path and kind == "file":
                _prefetch(scan.tree, path, size, keep, functools.partial(open, full_path, "rb"))
        subfolders[:] = [name for name in subfolders if not is_junk(name)]
    return scan.finish()


def _extract_archive(archive_path, staging: str) -> None:
    """Write every checked member below ``staging`` (an OSError while writing is not damage)."""
    scan = _Scan("archive member", "archive", DEFAULT_MAX_MEMBERS, DEFAULT_MAX_TOTAL_BYTES)

    def write(member: str, kind: str, size: int, open_stream: Callable[[], IO[bytes]]) -> None:
        _write_member(staging, member, kind, open_stream)

    _read_archive(archive_path, scan, write, _DAMAGED_ARCHIVE_ERRORS)


def _write_member(staging: str, member: str, kind: str, open_stream) -> None:
    """Create a checked member below ``staging``; never follows or creates links."""
    target = os.path.join(staging, *member.split("/"))
    if kind == "dir":
        os.makedirs(target, exist_ok=True)
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open_stream() as source, open(target, "xb") as destination:
        shutil.copyfileobj(source, destination, _COPY_CHUNK)
