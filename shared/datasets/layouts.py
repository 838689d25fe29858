"""Dataset layouts: which evaluation datasets EdgeFarm understands, and safe handling of
their archives.

This module owns:

* ``LAYOUTS``: the five layout names a dataset is uploaded or registered with
  (voc-seg, imagenet-val, imagefolder, mnist-idx, cifar10-bin).
* ``validate_archive`` / ``validate_directory``: check that a zip or tar archive (or an
  extracted folder) holds a complete dataset of the named layout and summarise it
  (``ArchiveSummary``). Archives are never extracted for this: only member names and
  sizes are read, plus the few small files a layout needs (split lists, labels files,
  class lists, the 16-byte headers of IDX files).
* Archive safety: members with absolute paths, drive letters, ``..`` components, NUL
  bytes or backslashes, links, device files, FIFOs and duplicate names are refused, and
  so are archives over a member-count or uncompressed-size limit and zip members
  compressed more than 1000:1 (zip bombs). ``__MACOSX/``, ``.DS_Store`` and AppleDouble
  ``._*`` members are ignored.
* ``safe_extract``: extraction after the same checks, into a staging folder beside the
  destination that is renamed into place only when everything was written.
* ``list_samples``: the samples of an extracted dataset, in evaluation order.
* ``pack_directory``: a deterministic uncompressed .tar of a folder, so one folder always
  gives the same sha256.
* ``DatasetError``: raised with a message meant for a person, naming the offending
  member, file or sample id.

The layouts
-----------
voc-seg
    PASCAL VOC 2012 segmentation: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png``
    (palette masks, 255 = void) and ``ImageSets/Segmentation/<split>.txt`` (ids, one per
    line; split ``val`` by default). The root is the folder holding ``JPEGImages`` and
    ``SegmentationClass``. Samples follow the split file's order.
imagenet-val
    Images (.jpg, .jpeg, .png) in one folder plus ``labels.txt``, ``val.txt`` or
    ``ground_truth.txt`` beside them (or beside their folder), either
    ``<filename> <class_index>`` lines or one class index per line for the images in
    sorted file-name order (the TFLite ImageNet evaluation tool's format). Optional
    class names in ``synsets.txt`` or ``classes.txt``. Samples are in sorted file-name
    order.
imagefolder
    ``<root>/<class_name>/<image>``: one folder per class (images may sit in
    subfolders of it), class index = position of the folder name in sorted order;
    optionally under a single top folder. Samples are ordered by class, then path.
mnist-idx
    ``t10k-images-idx3-ubyte`` + ``t10k-labels-idx1-ubyte`` and/or the ``train-`` pair,
    optionally gzipped (``.gz``). Samples are records: t10k first, then train.
cifar10-bin
    The CIFAR-10 binary version: ``test_batch.bin`` and/or ``data_batch_N.bin``
    (records of 1 label byte + 3072 pixel bytes), optional ``batches.meta.txt`` class
    names, possibly under ``cifar-10-batches-bin/``. Samples are records: test_batch
    first, then data_batch_1, 2, ...

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
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import IO, Callable, Dict, List, Optional, Set, Tuple

try:  # tarfile reads .tar.xz through lzma, which some Python builds lack
    import lzma

    _LZMA_ERRORS: Tuple[type, ...] = (lzma.LZMAError,)
except ImportError:  # pragma: no cover
    _LZMA_ERRORS = ()

LAYOUTS = ("voc-seg", "imagenet-val", "imagefolder", "mnist-idx", "cifar10-bin")

DEFAULT_MAX_MEMBERS = 2_000_000
DEFAULT_MAX_TOTAL_BYTES = 64 * 2**30
MAX_COMPRESSION_RATIO = 1000
MAX_TEXT_BYTES = 64 * 2**20  # largest split list, labels file or class list read into memory

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
LABEL_FILE_NAMES = ("labels.txt", "val.txt", "ground_truth.txt")  # in order of preference
CLASS_FILE_NAMES = ("synsets.txt", "classes.txt")
CIFAR_META_NAME = "batches.meta.txt"
CIFAR_RECORD_BYTES = 1 + 32 * 32 * 3
CIFAR_CLASS_COUNT = 10
MNIST_CLASS_COUNT = 10
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
VOC_DEFAULT_SPLIT = "val"
_MAX_LISTED_PROBLEMS = 5
_IDX_HEAD_BYTES = 16

_IDX_FILE = re.compile(r"(t10k|train)-(images[-.]idx3|labels[-.]idx1)-ubyte(\.gz)?")
_CIFAR_FILE = re.compile(r"test_batch\.bin|data_batch_([1-9][0-9]*)\.bin")
_CLASS_INDEX = re.compile(r"[0-9]+")
_SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_DRIVE_LETTER = re.compile(r"[A-Za-z]:")
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_COPY_CHUNK = 1 << 20

# What a damaged archive raises while it is read (bz2 reports damage as OSError).
_DAMAGED_ARCHIVE_ERRORS = (
    zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile,
) + _LZMA_ERRORS


class DatasetError(ValueError):
    """The archive or folder is unsafe or does not hold the named layout; the message says why."""


class _LayoutNotFound(DatasetError):
    """The files are not of the layout at all (rather than a damaged dataset of it), so the
    message may suggest another layout they do form."""


@dataclass
class Sample:
    """One evaluation sample. Paths are inside the folder given to ``list_samples``."""

    id: str
    image: Optional[str] = None  # image file (voc-seg, imagenet-val, imagefolder)
    label: Optional[int] = None  # class index (all but voc-seg)
    mask: Optional[str] = None  # segmentation mask file (voc-seg)
    index: Optional[int] = None  # record index inside ``source`` (mnist-idx, cifar10-bin)
    source: Optional[str] = None  # file holding the record (mnist-idx, cifar10-bin)


@dataclass
class ArchiveSummary:
    """What ``validate_archive`` / ``validate_directory`` found."""

    layout: str
    sample_count: int
    root: str  # folder inside the archive that holds the layout ("" when at top)
    split: Optional[str]  # voc-seg split used
    classes: Optional[List[str]]  # class names when known
    num_classes: Optional[int]
    members: int  # number of regular files (junk members not counted)
    total_bytes: int  # uncompressed size of those files


@dataclass
class _Plan:
    """What a layout found: samples with paths relative to the archive top ("/"-separated)."""

    root: str
    samples: List[Sample]
    split: Optional[str] = None
    classes: Optional[List[str]] = None
    num_classes: Optional[int] = None
    # data file -> (file holding its labels, offset of the first label, bytes between labels)
    record_labels: Dict[str, Tuple[str, int, int]] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def validate_archive(
    path,
    layout: str,
    split: Optional[str] = None,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> ArchiveSummary:
    """Check that the zip or tar archive at ``path`` is safe and holds a ``layout`` dataset.

    ``max_members`` limits the number of entries of any kind (files, folders, junk).
    ``split`` selects the voc-seg split list and is ignored by the other layouts.
    Raises DatasetError; nothing is extracted.
    """
    _check_layout_name(layout)
    tree = _scan_archive(path, max_members, max_total_bytes)
    return _summarize(tree, layout, split)


def validate_directory(path, layout: str, split: Optional[str] = None) -> ArchiveSummary:
    """The checks of ``validate_archive`` on an extracted folder (symlinks are refused too)."""
    _check_layout_name(layout)
    return _summarize(_scan_directory(path), layout, split)


def safe_extract(archive_path, dest_dir) -> None:
    """Extract a checked archive to ``dest_dir``, which must not exist yet.

    Files are written to a staging folder beside ``dest_dir`` that is renamed to it once
    complete; on any error the staging folder is removed and ``dest_dir`` stays absent.
    Junk members are not extracted; archive permissions and owners are not applied.
    """
    dest = os.path.abspath(os.fspath(dest_dir))
    if os.path.lexists(dest):
        raise FileExistsError(f"{dest} already exists; refusing to extract over it")
    _scan_archive(archive_path, DEFAULT_MAX_MEMBERS, DEFAULT_MAX_TOTAL_BYTES)
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


def list_samples(root_dir, layout: str, split: Optional[str] = None) -> List[Sample]:
    """The samples of the extracted ``layout`` dataset in ``root_dir``, in evaluation order.

    Paths in the samples are ``root_dir`` joined with the file's path inside the dataset.
    Labels of mnist-idx and cifar10-bin records are read from their files.
    """
    _check_layout_name(layout)
    plan = _plan(_scan_directory(root_dir), layout, split)
    root = os.fspath(root_dir)
    labels = _read_record_labels(root, plan)
    samples = []
    for sample in plan.samples:
        if sample.source in labels:
            sample = replace(sample, label=labels[sample.source][sample.index])
        samples.append(replace(
            sample, image=_local_path(root, sample.image), mask=_local_path(root, sample.mask),
            source=_local_path(root, sample.source),
        ))
    return samples


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
    tree = _scan_directory(src)
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


def _write_tar(stream: IO[bytes], src: str, tree: _Tree) -> None:
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


class _Tree:
    """The regular files of an archive or folder by "/"-separated path, with their sizes,
    and the small files the layouts read (``blobs``), read while scanning."""

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
    """Checks the entries of one archive or folder, one by one, and collects a _Tree."""

    def __init__(self, noun: str, container: str, max_members: int, max_total_bytes: int):
        self.noun = noun  # "archive member" or "file", for messages
        self.max_members = max_members
        self.max_total_bytes = max_total_bytes
        self.tree = _Tree(container)
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
        if not path or _is_junk(path):
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

    def finish(self) -> _Tree:
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


def _is_junk(path: str) -> bool:
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


def _blob_kind(path: str) -> Optional[str]:
    """"text" for split lists, labels files and class lists, "head" for IDX files, else None."""
    parts = path.split("/")
    name = parts[-1]
    if _IDX_FILE.fullmatch(name):
        return "head"
    if name.lower() in LABEL_FILE_NAMES + CLASS_FILE_NAMES + (CIFAR_META_NAME,):
        return "text"
    if name.endswith(".txt") and parts[-3:-1] == ["ImageSets", "Segmentation"]:
        return "text"
    return None


def _prefetch(tree: _Tree, path: str, size: int, open_stream: Callable[[], IO[bytes]]) -> None:
    """Keep the content (or IDX header) of a file a layout may read."""
    kind = _blob_kind(path)
    if kind is None or (kind == "text" and size > MAX_TEXT_BYTES):
        return
    with open_stream() as stream:
        if kind == "text":
            tree.blobs[path] = stream.read(MAX_TEXT_BYTES + 1)
        elif path.endswith(".gz"):
            tree.blobs[path] = _gzip_head(stream, path)
        else:
            tree.blobs[path] = stream.read(_IDX_HEAD_BYTES)


def _gzip_head(stream: IO[bytes], path: str) -> bytes:
    try:
        return gzip.GzipFile(fileobj=stream, mode="rb").read(_IDX_HEAD_BYTES)
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
    if tarfile.is_tarfile(path):
        return "tar"
    raise DatasetError("not a zip or tar archive")


def _scan_archive(path, max_members: int, max_total_bytes: int) -> _Tree:
    kind = _archive_kind(path)
    scan = _Scan("archive member", "archive", max_members, max_total_bytes)
    try:
        if kind == "zip":
            _scan_zip(path, scan)
        else:
            _scan_tar(path, scan)
    except _DAMAGED_ARCHIVE_ERRORS + (OSError,) as exc:
        raise DatasetError(f"damaged {kind} archive: {exc}") from exc
    return scan.finish()


def _scan_zip(path, scan: _Scan) -> None:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            kind = _zip_entry_kind(info, scan.noun)
            member = scan.admit(info.filename, kind, info.file_size)
            if member and kind == "file":
                opener = functools.partial(archive.open, info)
                _prefetch(scan.tree, member, info.file_size, opener)


def _scan_tar(path, scan: _Scan) -> None:
    with tarfile.open(path, "r|*") as archive:
        for info in archive:
            kind = _tar_entry_kind(info, scan.noun)
            member = scan.admit(info.name, kind, info.size if kind == "file" else 0)
            if member and kind == "file":
                opener = functools.partial(archive.extractfile, info)
                _prefetch(scan.tree, member, info.size, opener)


def _scan_directory(root_dir) -> _Tree:
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
                _prefetch(scan.tree, path, size, functools.partial(open, full_path, "rb"))
        subfolders[:] = [name for name in subfolders if not _is_junk(name)]
    return scan.finish()


def _extract_archive(archive_path, staging: str) -> None:
    kind = _archive_kind(archive_path)
    scan = _Scan("archive member", "archive", DEFAULT_MAX_MEMBERS, DEFAULT_MAX_TOTAL_BYTES)
    try:
        if kind == "zip":
            _extract_zip(archive_path, staging, scan)
        else:
            _extract_tar(archive_path, staging, scan)
    except _DAMAGED_ARCHIVE_ERRORS as exc:
        raise DatasetError(f"damaged {kind} archive: {exc}") from exc
    scan.finish()


def _extract_zip(archive_path, staging: str, scan: _Scan) -> None:
    with zipfile.ZipFile(archive_path) as archive:
        for info in archive.infolist():
            kind = _zip_entry_kind(info, scan.noun)
            member = scan.admit(info.filename, kind, info.file_size)
            if member:
                _write_member(staging, member, kind, functools.partial(archive.open, info))


def _extract_tar(archive_path, staging: str, scan: _Scan) -> None:
    with tarfile.open(archive_path, "r|*") as archive:
        for info in archive:
            kind = _tar_entry_kind(info, scan.noun)
            member = scan.admit(info.name, kind, info.size if kind == "file" else 0)
            if member:
                _write_member(staging, member, kind, functools.partial(archive.extractfile, info))


def _write_member(staging: str, member: str, kind: str, open_stream) -> None:
    """Create a checked member below ``staging``; never follows or creates links."""
    target = os.path.join(staging, *member.split("/"))
    if kind == "dir":
        os.makedirs(target, exist_ok=True)
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open_stream() as source, open(target, "xb") as destination:
        shutil.copyfileobj(source, destination, _COPY_CHUNK)


# ---------------------------------------------------------------------------
# Layouts: shared helpers
# ---------------------------------------------------------------------------


def _check_layout_name(layout: str) -> None:
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")


def _summarize(tree: _Tree, layout: str, split: Optional[str]) -> ArchiveSummary:
    plan = _plan(tree, layout, split)
    return ArchiveSummary(
        layout=layout, sample_count=len(plan.samples), root=plan.root, split=plan.split,
        classes=plan.classes, num_classes=plan.num_classes, members=len(tree.files),
        total_bytes=tree.total_bytes,
    )


def _plan(tree: _Tree, layout: str, split: Optional[str]) -> _Plan:
    if not tree.files:
        raise DatasetError(f"{tree.container} is empty: it holds no files")
    try:
        plan = _PLANNERS[layout](tree, split)
    except _LayoutNotFound as exc:
        raise DatasetError(f"{exc}{_other_layout_hint(tree, layout)}") from None
    if not plan.samples:
        raise DatasetError(f"{layout}: the dataset holds no samples")
    return plan


def _other_layout_hint(tree: _Tree, layout: str) -> str:
    """A suggestion when the files form a valid dataset of another layout."""
    for other in LAYOUTS:
        if other == layout:
            continue
        try:
            _PLANNERS[other](tree, None)
        except DatasetError:
            continue
        return f"; its files form a valid {other} dataset: did you mean layout '{other}'?"
    return ""


def _top_level(tree: _Tree) -> str:
    folders, files = tree.listing("")
    names = [name + "/" for name in folders] + files
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return f"found top-level: {shown}"


def _shown(folder: str) -> str:
    return f"{folder}/" if folder else "the top level"


def _depth(folder: str) -> int:
    return folder.count("/") + 1 if folder else 0


def _shallowest(folders: List[str], what: str) -> str:
    """The one shallowest folder; DatasetError when several share the smallest depth."""
    least = min(_depth(folder) for folder in folders)
    candidates = sorted(folder for folder in folders if _depth(folder) == least)
    if len(candidates) > 1:
        shown = ", ".join(_shown(folder) for folder in candidates)
        raise DatasetError(
            f"{what} found in several folders ({shown}); keep one dataset per archive"
        )
    return candidates[0]


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _problem_list(problems: List[str]) -> str:
    shown = "; ".join(problems[:_MAX_LISTED_PROBLEMS])
    more = len(problems) - _MAX_LISTED_PROBLEMS
    return f"{shown}; and {more} more" if more > 0 else shown


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _relative(path: str, folder: str) -> str:
    return path[len(folder) + 1:] if folder else path


def _text_lines(text: str) -> List[Tuple[int, str]]:
    """(line number, stripped line) of the non-blank lines."""
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)
            if line.strip()]


def _class_names(tree: _Tree, path: str) -> List[str]:
    names = [line for _, line in _text_lines(tree.text(path))]
    if not names:
        raise DatasetError(f"class list {path} is empty")
    return names


def _local_path(root: str, path: Optional[str]) -> Optional[str]:
    return os.path.join(root, *path.split("/")) if path is not None else None


# ---------------------------------------------------------------------------
# voc-seg
# ---------------------------------------------------------------------------


def _plan_voc(tree: _Tree, split: Optional[str]) -> _Plan:
    split = split or VOC_DEFAULT_SPLIT
    if not _SPLIT_NAME.fullmatch(split):
        raise DatasetError(f"voc-seg: invalid split name {split!r}")
    roots = [folder for folder in tree.folders()
             if {"JPEGImages", "SegmentationClass"} <= set(tree.listing(folder)[0])]
    if not roots:
        raise _LayoutNotFound(
            "no voc-seg layout found: expected JPEGImages/ and SegmentationClass/ folders "
            f"({_top_level(tree)})"
        )
    root = _shallowest(roots, "voc-seg datasets (JPEGImages/ and SegmentationClass/)")
    ids = _voc_split_ids(tree, root, split)
    _check_voc_files(tree, root, ids)
    samples = [
        Sample(id=image_id, image=posixpath.join(root, "JPEGImages", f"{image_id}.jpg"),
               mask=posixpath.join(root, "SegmentationClass", f"{image_id}.png"))
        for image_id in ids
    ]
    return _Plan(root=root, samples=samples, split=split)


def _voc_split_ids(tree: _Tree, root: str, split: str) -> List[str]:
    rel = f"ImageSets/Segmentation/{split}.txt"
    path = posixpath.join(root, rel)
    if path not in tree.files:
        names = tree.listing(posixpath.join(root, "ImageSets/Segmentation"))[1]
        available = [name[:-4] for name in names if name.endswith(".txt")]
        if available:
            raise DatasetError(f"voc-seg: split '{split}' not found: there is no {rel} "
                               f"(available splits: {', '.join(available)})")
        raise DatasetError(f"voc-seg: no split list {rel} listing the image ids of split "
                           f"'{split}', one per line")
    ids: List[str] = []
    for number, line in _text_lines(tree.text(path)):
        if len(line.split()) != 1:
            raise DatasetError(f"voc-seg: {rel} line {number}: expected one image id, got {line!r}")
        if line in ids:
            raise DatasetError(f"voc-seg: {rel} lists image '{line}' twice")
        ids.append(line)
    if not ids:
        raise DatasetError(f"voc-seg: {rel} lists no image ids")
    return ids


def _check_voc_files(tree: _Tree, root: str, ids: List[str]) -> None:
    problems = []
    for image_id in ids:
        image = f"JPEGImages/{image_id}.jpg"
        mask = f"SegmentationClass/{image_id}.png"
        if posixpath.join(root, image) not in tree.files:
            problems.append(f"image '{image_id}' has no {image}")
        if posixpath.join(root, mask) not in tree.files:
            problems.append(f"image '{image_id}' has no mask {mask}")
    if problems:
        raise DatasetError(f"voc-seg: {_problem_list(problems)}")


# ---------------------------------------------------------------------------
# imagenet-val
# ---------------------------------------------------------------------------


def _plan_imagenet(tree: _Tree, split: Optional[str]) -> _Plan:
    labels_path = _imagenet_labels_file(tree)
    root = posixpath.dirname(labels_path)
    image_dir = _imagenet_image_dir(tree, root, labels_path)
    names = [name for name in tree.listing(image_dir)[1] if _is_image(name)]
    entries = _parse_labels(tree.text(labels_path), labels_path)
    if entries[0][0] is None:
        labels = _labels_by_position(entries, names, labels_path, image_dir)
    else:
        labels = _labels_by_name(entries, names, labels_path, _relative(image_dir, root))
    classes = _imagenet_classes(tree, root, image_dir)
    if classes is not None:
        _check_label_range(names, labels, len(classes))
    samples = [Sample(id=name, image=posixpath.join(image_dir, name), label=label)
               for name, label in zip(names, labels)]
    return _Plan(root=root, samples=samples, classes=classes,
                 num_classes=len(classes) if classes else None)


def _imagenet_labels_file(tree: _Tree) -> str:
    candidates = [path for path in tree.files
                  if posixpath.basename(path).lower() in LABEL_FILE_NAMES
                  and "ImageSets" not in path.split("/")]
    if not candidates:
        raise _LayoutNotFound(
            "no imagenet-val layout found: expected a labels file (labels.txt, val.txt or "
            f"ground_truth.txt) beside the images ({_top_level(tree)})"
        )
    folders = sorted({posixpath.dirname(path) for path in candidates})
    folder = _shallowest(folders, "imagenet-val labels files")
    in_folder = [path for path in candidates if posixpath.dirname(path) == folder]
    return min(in_folder, key=lambda path: LABEL_FILE_NAMES.index(posixpath.basename(path).lower()))


def _imagenet_image_dir(tree: _Tree, root: str, labels_path: str) -> str:
    subfolders, files = tree.listing(root)
    if any(_is_image(name) for name in files):
        return root
    with_images = [posixpath.join(root, name) for name in subfolders
                   if any(_is_image(f) for f in tree.listing(posixpath.join(root, name))[1])]
    if len(with_images) == 1:
        return with_images[0]
    if not with_images:
        raise _LayoutNotFound(f"imagenet-val: no images ({', '.join(IMAGE_EXTENSIONS)}) beside "
                           f"{labels_path} or in a folder next to it")
    shown = ", ".join(_shown(folder) for folder in with_images)
    raise DatasetError(f"imagenet-val: images in several folders beside {labels_path} ({shown}); "
                       "put all images in one folder")


def _parse_labels(text: str, labels_path: str) -> List[Tuple[Optional[str], int]]:
    """(file name or None, class index) per non-blank line of a labels file."""
    entries = [_parse_label_line(line, labels_path, number) for number, line in _text_lines(text)]
    if not entries:
        raise DatasetError(f"imagenet-val: {labels_path} holds no labels")
    if len({name is None for name, _ in entries}) > 1:
        raise DatasetError(f"imagenet-val: {labels_path} mixes '<filename> <class_index>' lines "
                           "with lines holding only a class index")
    return entries


def _parse_label_line(line: str, labels_path: str, number: int) -> Tuple[Optional[str], int]:
    parts = line.rsplit(None, 1)
    if len(parts) == 1 and _CLASS_INDEX.fullmatch(parts[0]):
        return None, int(parts[0])
    if len(parts) == 2 and _CLASS_INDEX.fullmatch(parts[1]):
        return parts[0], int(parts[1])
    raise DatasetError(f"imagenet-val: {labels_path} line {number}: expected "
                       f"'<filename> <class_index>' or '<class_index>', got {line!r}")


def _labels_by_position(entries, names: List[str], labels_path: str, image_dir: str) -> List[int]:
    if len(entries) != len(names):
        raise DatasetError(
            f"imagenet-val: {labels_path} has {_counted(len(entries), 'label')} but "
            f"{_shown(image_dir)} holds {_counted(len(names), 'image')}; with one class index "
            "per line there must be one "
            "label per image, in sorted file-name order"
        )
    return [label for _, label in entries]


def _labels_by_name(entries, names: List[str], labels_path: str, image_prefix: str) -> List[int]:
    """Labels of ``names`` from '<filename> <class_index>' entries; file names may also carry
    the image folder's path relative to the labels file."""
    by_name: Dict[str, int] = {}
    for name, label in entries:
        if image_prefix and name.startswith(image_prefix + "/"):
            name = name[len(image_prefix) + 1:]
        if name in by_name:
            raise DatasetError(f"imagenet-val: {labels_path} labels image '{name}' twice")
        by_name[name] = label
    present = set(names)
    problems = [f"image '{name}' has no label in {labels_path}"
                for name in names if name not in by_name]
    problems += [f"{labels_path} labels '{name}', which is not among the images"
                 for name in by_name if name not in present]
    if problems:
        raise DatasetError(f"imagenet-val: {_problem_list(problems)}")
    return [by_name[name] for name in names]


def _imagenet_classes(tree: _Tree, root: str, image_dir: str) -> Optional[List[str]]:
    for folder in (root, image_dir):
        for name in CLASS_FILE_NAMES:
            path = posixpath.join(folder, name)
            if path in tree.files:
                return _class_names(tree, path)
    return None


def _check_label_range(names: List[str], labels: List[int], class_count: int) -> None:
    problems = [f"image '{name}' has class index {label}"
                for name, label in zip(names, labels) if label >= class_count]
    if problems:
        raise DatasetError(f"imagenet-val: the class list names {class_count} classes "
                           f"(indexes 0 to {class_count - 1}) but {_problem_list(problems)}")


# ---------------------------------------------------------------------------
# imagefolder
# ---------------------------------------------------------------------------


def _plan_imagefolder(tree: _Tree, split: Optional[str]) -> _Plan:
    _refuse_other_layout_files(tree)
    root = _imagefolder_root(tree)
    classes, files = tree.listing(root)
    loose = [name for name in files if _is_image(name)]
    if loose:
        raise _LayoutNotFound(f"imagefolder: images must sit in one folder per class, but "
                              f"{_shown(root)} holds images directly (e.g. '{loose[0]}')")
    if not classes:
        raise _LayoutNotFound("no imagefolder layout found: expected one folder per class with "
                              f"images inside ({_top_level(tree)})")
    if len(classes) == 1:
        _refuse_labels_file(tree, root, classes[0])
    samples = []
    for index, name in enumerate(classes):
        images = _images_below(tree, posixpath.join(root, name))
        if not images:
            raise _LayoutNotFound(f"imagefolder: class folder '{name}/' holds no images "
                                  f"({', '.join(IMAGE_EXTENSIONS)})")
        samples += [Sample(id=_relative(image, root), image=image, label=index) for image in images]
    return _Plan(root=root, samples=samples, classes=classes, num_classes=len(classes))


def _refuse_labels_file(tree: _Tree, root: str, only_class: str) -> None:
    """One image folder with a labels file beside or inside it is an imagenet-val dataset."""
    for folder in (root, posixpath.join(root, only_class)):
        for name in tree.listing(folder)[1]:
            if name.lower() in LABEL_FILE_NAMES:
                raise _LayoutNotFound(
                    f"imagefolder: found {posixpath.join(folder, name)} beside a single image "
                    "folder, the shape of an imagenet-val dataset rather than one folder per class"
                )


def _imagefolder_root(tree: _Tree) -> str:
    """The top level, or its only folder when that holds folders and no images itself."""
    folders, files = tree.listing("")
    if len(folders) == 1 and not files:
        subfolders, inner_files = tree.listing(folders[0])
        if subfolders and not any(_is_image(name) for name in inner_files):
            return folders[0]
    return ""


def _images_below(tree: _Tree, folder: str) -> List[str]:
    """Images in ``folder`` (sorted), then those of its subfolders (in sorted order)."""
    subfolders, files = tree.listing(folder)
    images = [posixpath.join(folder, name) for name in files if _is_image(name)]
    for name in subfolders:
        images += _images_below(tree, posixpath.join(folder, name))
    return images


def _refuse_other_layout_files(tree: _Tree) -> None:
    """imagefolder accepts almost any image tree, so refuse the files of the other layouts."""
    for folder in tree.folders():
        if {"JPEGImages", "SegmentationClass"} <= set(tree.listing(folder)[0]):
            prefix = f"{folder}/" if folder else ""
            raise _LayoutNotFound(f"imagefolder: found {prefix}JPEGImages/ and "
                                  f"{prefix}SegmentationClass/, the folders of a voc-seg dataset")
    for path in sorted(tree.files):
        name = posixpath.basename(path)
        if _IDX_FILE.fullmatch(name) or _CIFAR_FILE.fullmatch(name):
            layout = "mnist-idx" if _IDX_FILE.fullmatch(name) else "cifar10-bin"
            raise _LayoutNotFound(f"imagefolder: found {path}, a file of a {layout} dataset")
    try:
        plan = _plan_imagenet(tree, None)
    except DatasetError:
        return
    raise _LayoutNotFound(f"imagefolder: the images of {_shown(plan.root)} are labelled by a "
                          "labels file, as in an imagenet-val dataset")


# ---------------------------------------------------------------------------
# mnist-idx
# ---------------------------------------------------------------------------


def _plan_mnist(tree: _Tree, split: Optional[str]) -> _Plan:
    found = [path for path in tree.files if _IDX_FILE.fullmatch(posixpath.basename(path))]
    if not found:
        raise _LayoutNotFound(
            "no mnist-idx layout found: expected t10k-images-idx3-ubyte and "
            "t10k-labels-idx1-ubyte (or the train- pair, optionally .gz) "
            f"({_top_level(tree)})"
        )
    root = _shallowest(sorted({posixpath.dirname(path) for path in found}), "mnist-idx files")
    samples: List[Sample] = []
    record_labels = {}
    for prefix, images, labels in _mnist_pairs(tree, root):
        count = _check_idx_pair(tree, images, labels)
        samples += [Sample(id=f"{prefix}-{index}", index=index, source=images)
                    for index in range(count)]
        record_labels[images] = (labels, 8, 1)
    return _Plan(root=root, samples=samples, num_classes=MNIST_CLASS_COUNT,
                 record_labels=record_labels)


def _mnist_pairs(tree: _Tree, root: str) -> List[Tuple[str, str, str]]:
    """(prefix, images file, labels file) for t10k and train; plain files win over .gz."""
    found: Dict[Tuple[str, str], str] = {}
    for name in tree.listing(root)[1]:
        match = _IDX_FILE.fullmatch(name)
        if match:
            key = (match.group(1), match.group(2)[:6])
            if key not in found or not name.endswith(".gz"):
                found[key] = posixpath.join(root, name)
    pairs = []
    for prefix in ("t10k", "train"):
        images, labels = found.get((prefix, "images")), found.get((prefix, "labels"))
        if images and labels:
            pairs.append((prefix, images, labels))
        elif images or labels:
            missing = f"{prefix}-labels-idx1-ubyte" if images else f"{prefix}-images-idx3-ubyte"
            raise DatasetError(f"mnist-idx: found {images or labels} but no matching {missing}")
    return pairs


def _check_idx_pair(tree: _Tree, images: str, labels: str) -> int:
    image_count, rows, columns = _idx_header(tree, images, IDX_IMAGES_MAGIC, 3)
    (label_count,) = _idx_header(tree, labels, IDX_LABELS_MAGIC, 1)
    if image_count != label_count:
        raise DatasetError(f"mnist-idx: {images} holds {_counted(image_count, 'image')} but "
                           f"{labels} holds {_counted(label_count, 'label')}")
    _check_idx_size(tree, images, 16 + image_count * rows * columns,
                    f"{image_count} images of {rows}x{columns} pixels")
    _check_idx_size(tree, labels, 8 + label_count, f"{label_count} labels")
    return image_count


def _idx_header(tree: _Tree, path: str, magic: int, dimensions: int) -> Tuple[int, ...]:
    head = tree.head(path)
    if len(head) < 4 + 4 * dimensions:
        raise DatasetError(f"mnist-idx: {path} is too short for an IDX header")
    found = int.from_bytes(head[:4], "big")
    if found != magic:
        kind = "images" if magic == IDX_IMAGES_MAGIC else "labels"
        raise DatasetError(f"mnist-idx: {path} starts with magic number 0x{found:08x}, "
                           f"not 0x{magic:08x} (IDX {kind} file)")
    return tuple(int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(dimensions))


def _check_idx_size(tree: _Tree, path: str, expected: int, what: str) -> None:
    """Uncompressed files only: a .gz file's expanded size is not known without reading it."""
    if not path.endswith(".gz") and tree.files[path] != expected:
        raise DatasetError(f"mnist-idx: {path} is {tree.files[path]} bytes but its header "
                           f"announces {what} ({expected} bytes)")


# ---------------------------------------------------------------------------
# cifar10-bin
# ---------------------------------------------------------------------------


def _plan_cifar(tree: _Tree, split: Optional[str]) -> _Plan:
    found = [path for path in tree.files if _CIFAR_FILE.fullmatch(posixpath.basename(path))]
    if not found:
        raise _LayoutNotFound("no cifar10-bin layout found: expected test_batch.bin or "
                           f"data_batch_N.bin of the CIFAR-10 binary version ({_top_level(tree)})")
    root = _shallowest(sorted({posixpath.dirname(path) for path in found}), "cifar10-bin batches")
    batches = sorted((name for name in tree.listing(root)[1] if _CIFAR_FILE.fullmatch(name)),
                     key=_cifar_batch_order)
    samples: List[Sample] = []
    record_labels = {}
    for name in batches:
        path = posixpath.join(root, name)
        size = tree.files[path]
        if size == 0 or size % CIFAR_RECORD_BYTES:
            raise DatasetError(f"cifar10-bin: {path} is {size} bytes, not a whole number of "
                               f"{CIFAR_RECORD_BYTES}-byte records (1 label byte + 3072 pixels)")
        samples += [Sample(id=f"{name[:-4]}-{index}", index=index, source=path)
                    for index in range(size // CIFAR_RECORD_BYTES)]
        record_labels[path] = (path, 0, CIFAR_RECORD_BYTES)
    meta = posixpath.join(root, CIFAR_META_NAME)
    classes = _class_names(tree, meta) if meta in tree.files else None
    return _Plan(root=root, samples=samples, classes=classes,
                 num_classes=len(classes) if classes else CIFAR_CLASS_COUNT,
                 record_labels=record_labels)


def _cifar_batch_order(name: str) -> Tuple[int, int]:
    """test_batch first, then data_batch_1, data_batch_2, ... by number."""
    match = _CIFAR_FILE.fullmatch(name)
    number = match.group(1) if match else None
    return (1, int(number)) if number else (0, 0)


# ---------------------------------------------------------------------------
# Record labels (list_samples on mnist-idx and cifar10-bin)
# ---------------------------------------------------------------------------


def _read_record_labels(root: str, plan: _Plan) -> Dict[str, bytes]:
    """Label bytes per data file, checked against the dataset's number of classes."""
    counts = Counter(
        sample.source for sample in plan.samples if sample.source in plan.record_labels
    )
    labels = {}
    for source, (label_file, offset, stride) in plan.record_labels.items():
        values = _read_whole_file(_local_path(root, label_file))[offset::stride][:counts[source]]
        if len(values) < counts[source]:
            raise DatasetError(f"{label_file} is truncated: it holds {len(values)} of "
                               f"{counts[source]} labels")
        _check_record_labels(source, values, plan.num_classes)
        labels[source] = values
    return labels


def _read_whole_file(path: str) -> bytes:
    """The file's bytes, decompressed when its name ends with .gz."""
    if not path.endswith(".gz"):
        with open(path, "rb") as stream:
            return stream.read()
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path} is not a valid gzip file ({exc})") from None


def _check_record_labels(source: str, values: bytes, class_count: Optional[int]) -> None:
    if class_count is None:
        return
    bad = [f"record {index} has label {value}" for index, value in enumerate(values)
           if value >= class_count]
    if bad:
        raise DatasetError(f"{source}: {_problem_list(bad)} (expected 0 to {class_count - 1})")


_PLANNERS: Dict[str, Callable[[_Tree, Optional[str]], _Plan]] = {
    "voc-seg": _plan_voc,
    "imagenet-val": _plan_imagenet,
    "imagefolder": _plan_imagefolder,
    "mnist-idx": _plan_mnist,
    "cifar10-bin": _plan_cifar,
}
