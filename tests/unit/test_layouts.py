"""edgefarm.shared.datasets: layout validation, archive safety, extraction, sample listing, packing."""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
import warnings
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import pytest

from edgefarm.shared.datasets import (
    LAYOUTS,
    ArchiveSummary,
    DatasetError,
    list_samples,
    pack_directory,
    safe_extract,
    validate_archive,
    validate_directory,
)

try:
    from PIL import Image
except ImportError:  # pragma: no cover - validation never decodes images
    Image = None

VOC_IDS = ["2007_000129", "2007_000032", "2007_000039"]  # split-file order, not sorted


def jpeg_bytes(shade: int = 0) -> bytes:
    if Image is None:  # pragma: no cover
        return b"\xff\xd8\xff\xe0" + bytes([shade]) * 16 + b"\xff\xd9"
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (shade, 128, 255 - shade)).save(buffer, "JPEG")
    return buffer.getvalue()


def mask_bytes() -> bytes:
    """A palette PNG: class 1 in the top rows, 255 (void) on the border."""
    if Image is None:  # pragma: no cover
        return b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    mask = Image.new("P", (8, 6), 0)
    mask.putpalette([0, 0, 0, 128, 0, 0] + [0, 0, 0] * 253 + [224, 224, 192])
    for x in range(8):
        mask.putpixel((x, 0), 255)
        mask.putpixel((x, 1), 1)
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    return buffer.getvalue()


def voc_files(prefix: str = "", ids: Iterable[str] = VOC_IDS,
              splits: Optional[Dict[str, List[str]]] = None) -> Dict[str, bytes]:
    ids = list(ids)
    files = {}
    for index, image_id in enumerate(ids):
        files[f"{prefix}JPEGImages/{image_id}.jpg"] = jpeg_bytes(index * 40)
        files[f"{prefix}SegmentationClass/{image_id}.png"] = mask_bytes()
    for split, listed in (splits or {"val": ids}).items():
        text = "".join(f"{image_id}\n" for image_id in listed)
        files[f"{prefix}ImageSets/Segmentation/{split}.txt"] = text.encode()
    return files


def write_zip(path: Path, files: Dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def write_tar(path: Path, files: Dict[str, bytes], mode: str = "w:gz",
              extra: Iterable[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in extra:
            archive.addfile(info)
    return path


def write_tree(root: Path, files: Dict[str, bytes]) -> Path:
    for name, data in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def error_of(path: Path, layout: str, **kwargs) -> str:
    with pytest.raises(DatasetError) as caught:
        validate_archive(path, layout, **kwargs)
    return str(caught.value)


def idx_images(count: int, rows: int = 2, columns: int = 2, records: Optional[int] = None) -> bytes:
    records = count if records is None else records
    return struct.pack(">IIII", 0x803, count, rows, columns) + bytes(records * rows * columns)


def idx_labels(labels: List[int], magic: int = 0x801) -> bytes:
    return struct.pack(">II", magic, len(labels)) + bytes(labels)


def cifar_records(labels: List[int]) -> bytes:
    return b"".join(bytes([label]) + bytes([label]) * 3072 for label in labels)


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]


# ---------------------------------------------------------------------------
# voc-seg
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("prefix, kind", [
    ("", "zip"), ("VOC2012/", "zip"), ("", "tar.gz"), ("VOCdevkit/VOC2012/", "tar.gz"),
])
def test_voc_archive_validates_with_or_without_top_folder(tmp_path, prefix, kind):
    files = voc_files(prefix)
    path = tmp_path / f"voc.{kind}"
    write_zip(path, files) if kind == "zip" else write_tar(path, files)

    summary = validate_archive(path, "voc-seg")

    assert summary == ArchiveSummary(
        layout="voc-seg", sample_count=3, root=prefix.rstrip("/"), split="val", classes=None,
        num_classes=None, members=7, total_bytes=sum(len(data) for data in files.values()),
    )


def test_voc_named_split_is_used(tmp_path):
    files = voc_files(splits={"val": VOC_IDS, "train": VOC_IDS[:1]})
    summary = validate_archive(write_zip(tmp_path / "voc.zip", files), "voc-seg", split="train")
    assert (summary.split, summary.sample_count) == ("train", 1)


def test_voc_missing_split_names_the_available_ones(tmp_path):
    files = voc_files(splits={"train": VOC_IDS, "trainval": VOC_IDS})
    message = error_of(write_zip(tmp_path / "voc.zip", files), "voc-seg")
    assert message.startswith("voc-seg: split 'val' not found")
    assert "ImageSets/Segmentation/val.txt" in message
    assert "available splits: train, trainval" in message


def test_voc_without_any_split_list_is_refused(tmp_path):
    files = {k: v for k, v in voc_files().items() if not k.startswith("ImageSets")}
    message = error_of(write_zip(tmp_path / "voc.zip", files), "voc-seg", split="test")
    assert "no split list ImageSets/Segmentation/test.txt" in message


def test_voc_image_without_mask_is_named(tmp_path):
    files = voc_files("VOC2012/")
    del files["VOC2012/SegmentationClass/2007_000032.png"]
    message = error_of(write_tar(tmp_path / "voc.tar.gz", files), "voc-seg")
    assert message == "voc-seg: image '2007_000032' has no mask SegmentationClass/2007_000032.png"


def test_voc_lists_at_most_five_problems(tmp_path):
    ids = [f"2008_{n:06d}" for n in range(8)]
    files = {k: v for k, v in voc_files(ids=ids).items() if "SegmentationClass" not in k}
    files["SegmentationClass/unrelated.png"] = mask_bytes()
    message = error_of(write_zip(tmp_path / "voc.zip", files), "voc-seg")
    assert message.count("has no mask") == 5
    assert message.endswith("; and 3 more")


def test_voc_listed_id_without_jpeg_is_named(tmp_path):
    files = voc_files()
    del files["JPEGImages/2007_000039.jpg"]
    message = error_of(write_zip(tmp_path / "voc.zip", files), "voc-seg")
    assert message == "voc-seg: image '2007_000039' has no JPEGImages/2007_000039.jpg"


def test_list_samples_voc_follows_the_split_file(tmp_path):
    root = write_tree(tmp_path / "data", voc_files("VOC2012/"))

    samples = list_samples(root, "voc-seg")

    assert [s.id for s in samples] == VOC_IDS
    first = samples[0]
    assert first.image == str(root / "VOC2012" / "JPEGImages" / "2007_000129.jpg")
    assert first.mask == str(root / "VOC2012" / "SegmentationClass" / "2007_000129.png")
    assert (first.label, first.index, first.source) == (None, None, None)
    assert all(os.path.isfile(s.image) and os.path.isfile(s.mask) for s in samples)
    if Image is not None:
        with Image.open(first.mask) as mask:
            assert mask.mode == "P" and mask.getpixel((0, 0)) == 255


def test_validate_directory_matches_the_archive_summary(tmp_path):
    files = voc_files("VOC2012/")
    from_archive = validate_archive(write_zip(tmp_path / "voc.zip", files), "voc-seg")
    from_folder = validate_directory(write_tree(tmp_path / "data", files), "voc-seg")
    assert from_folder == from_archive


# ---------------------------------------------------------------------------
# Unsafe archives
# ---------------------------------------------------------------------------


def test_parent_directory_member_is_refused(tmp_path):
    files = dict(voc_files(), **{"../evil.txt": b"x"})
    message = error_of(write_zip(tmp_path / "bad.zip", files), "voc-seg")
    assert message == "archive member '../evil.txt' escapes the dataset folder (contains '..')"


def test_nested_parent_directory_member_is_refused(tmp_path):
    path = write_tar(tmp_path / "bad.tar", {"VOC2012/JPEGImages/../../../x": b"x"}, mode="w")
    assert "escapes the dataset folder" in error_of(path, "voc-seg")


def test_absolute_member_is_refused(tmp_path):
    path = write_tar(tmp_path / "bad.tar.gz", {"/etc/evil.txt": b"x"})
    assert error_of(path, "voc-seg") == "archive member '/etc/evil.txt' has an absolute path"


def test_drive_letter_member_is_refused(tmp_path):
    path = write_zip(tmp_path / "bad.zip", {"C:/evil.txt": b"x"})
    assert "starts with a drive letter" in error_of(path, "imagefolder")


def test_backslash_member_is_refused(tmp_path):
    path = write_zip(tmp_path / "bad.zip", {"JPEGImages\\a.jpg": b"x"})
    assert "contains a backslash" in error_of(path, "imagefolder")


@pytest.mark.parametrize("kind, words", [
    (tarfile.SYMTYPE, "a symbolic link"),
    (tarfile.LNKTYPE, "a hard link"),
    (tarfile.CHRTYPE, "a device file"),
    (tarfile.FIFOTYPE, "a FIFO"),
])
def test_special_tar_members_are_refused(tmp_path, kind, words):
    link = tarfile.TarInfo("VOC2012/JPEGImages/link.jpg")
    link.type = kind
    link.linkname = "/etc/passwd"
    path = write_tar(tmp_path / "bad.tar.gz", voc_files("VOC2012/"), extra=[link])
    message = error_of(path, "voc-seg")
    assert message.startswith(f"archive member 'VOC2012/JPEGImages/link.jpg' is {words}")


def test_symlink_zip_member_is_refused(tmp_path):
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("JPEGImages/link.jpg")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    assert "is a symbolic link" in error_of(path, "voc-seg")


def test_duplicate_member_is_refused(tmp_path):
    path = tmp_path / "dup.zip"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("a/x.jpg", b"1")
            archive.writestr("./a/x.jpg", b"2")
    assert error_of(path, "imagefolder") == "archive member './a/x.jpg' appears more than once"


def test_member_inside_a_file_is_refused(tmp_path):
    path = write_tar(tmp_path / "bad.tar", {"a": b"x", "a/b.jpg": b"y"}, mode="w")
    assert "'a/b.jpg' lies inside 'a', which is a file" in error_of(path, "imagefolder")


def test_too_many_members_are_refused(tmp_path):
    path = write_zip(tmp_path / "voc.zip", voc_files())
    assert "more than 5 members" in error_of(path, "voc-seg", max_members=5)
    assert validate_archive(path, "voc-seg", max_members=7).members == 7


def test_too_many_bytes_are_refused(tmp_path):
    files = voc_files()
    total = sum(len(data) for data in files.values())
    path = write_tar(tmp_path / "voc.tar.gz", files)
    assert f"more than {total - 1} bytes" in error_of(path, "voc-seg", max_total_bytes=total - 1)
    assert validate_archive(path, "voc-seg", max_total_bytes=total).total_bytes == total


def test_highly_compressed_zip_member_is_refused(tmp_path):
    files = dict(voc_files(), **{"JPEGImages/zeros.jpg": bytes(2 * 2**20)})
    path = write_zip(tmp_path / "bomb.zip", files, method=zipfile.ZIP_BZIP2)
    message = error_of(path, "voc-seg")
    assert "'JPEGImages/zeros.jpg'" in message and "zip bomb" in message


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_empty_archive_is_refused(tmp_path, kind):
    path = tmp_path / f"empty.{kind}"
    write_zip(path, {}) if kind == "zip" else write_tar(path, {}, mode="w")
    assert error_of(path, "voc-seg") == "archive is empty: it holds no files"


@pytest.mark.parametrize("content", [b"JPEGImages/a.jpg\nnot an archive\n", b""])
def test_non_archive_is_refused(tmp_path, content):
    path = tmp_path / "notes.zip"
    path.write_bytes(content)
    assert error_of(path, "voc-seg") == "not a zip or tar archive"


def test_truncated_archive_is_refused(tmp_path):
    path = write_tar(tmp_path / "voc.tar.gz", voc_files())
    path.write_bytes(path.read_bytes()[:-200])
    assert error_of(path, "voc-seg").startswith("damaged tar archive")


def test_unknown_layout_lists_the_valid_ones(tmp_path):
    path = write_zip(tmp_path / "voc.zip", voc_files())
    message = error_of(path, "coco")
    assert message.startswith("unknown layout 'coco'")
    assert all(layout in message for layout in LAYOUTS)
    with pytest.raises(DatasetError, match="unknown layout"):
        list_samples(tmp_path, "voc")


def test_macos_junk_is_ignored(tmp_path):
    files = dict(voc_files("VOC2012/"), **{
        "__MACOSX/VOC2012/JPEGImages/._2007_000032.jpg": b"\x00\x05\x16\x07",
        "VOC2012/.DS_Store": b"Bud1",
        "VOC2012/JPEGImages/._2007_000129.jpg": b"\x00\x05\x16\x07",
    })
    summary = validate_archive(write_zip(tmp_path / "voc.zip", files), "voc-seg")
    assert (summary.members, summary.root) == (7, "VOC2012")


# ---------------------------------------------------------------------------
# Layout mismatches
# ---------------------------------------------------------------------------


def test_voc_archive_uploaded_as_imagefolder_is_explained(tmp_path):
    path = write_zip(tmp_path / "voc.zip", voc_files("VOC2012/"))
    message = error_of(path, "imagefolder")
    assert "VOC2012/JPEGImages/ and VOC2012/SegmentationClass/" in message
    assert "did you mean layout 'voc-seg'?" in message


def test_archive_matching_no_layout(tmp_path):
    path = write_zip(tmp_path / "x.zip", {"a/readme.md": b"hi", "b.txt": b"x"})
    assert error_of(path, "voc-seg") == (
        "no voc-seg layout found: expected JPEGImages/ and SegmentationClass/ folders "
        "(found top-level: a/, b.txt)"
    )
    assert "no mnist-idx layout found" in error_of(path, "mnist-idx")
    assert "no cifar10-bin layout found" in error_of(path, "cifar10-bin")
    assert "no imagenet-val layout found" in error_of(path, "imagenet-val")
    assert "class folder 'a/' holds no images" in error_of(path, "imagefolder")


def test_imagefolder_archive_uploaded_as_voc_suggests_imagefolder(tmp_path):
    path = write_zip(tmp_path / "x.zip", {"cat/1.jpg": jpeg_bytes(), "dog/1.jpg": jpeg_bytes()})
    assert error_of(path, "voc-seg").endswith("did you mean layout 'imagefolder'?")


# ---------------------------------------------------------------------------
# imagenet-val
# ---------------------------------------------------------------------------


def imagenet_files(labels: str, prefix: str = "", image_dir: str = "images/") -> Dict[str, bytes]:
    files = {f"{prefix}{image_dir}{name}": jpeg_bytes() for name in ("b.JPEG", "a.jpg", "c.png")}
    files[f"{prefix}labels.txt"] = labels.encode()
    return files


def test_imagenet_filename_labels_with_class_names(tmp_path):
    files = imagenet_files("b.JPEG 2\na.jpg 0\nimages/c.png 1\n")
    files["synsets.txt"] = b"n01440764 tench\nn01443537 goldfish\nn01484850 great white shark\n"
    summary = validate_archive(write_zip(tmp_path / "in.zip", files), "imagenet-val")
    assert (summary.sample_count, summary.root, summary.num_classes) == (3, "", 3)
    assert summary.classes[2] == "n01484850 great white shark"

    root = write_tree(tmp_path / "data", files)
    samples = list_samples(root, "imagenet-val")
    assert [(s.id, s.label) for s in samples] == [("a.jpg", 0), ("b.JPEG", 2), ("c.png", 1)]
    assert samples[1].image == str(root / "images" / "b.JPEG")


def test_imagenet_one_label_per_line_in_sorted_file_order(tmp_path):
    files = imagenet_files("", prefix="val/", image_dir="")
    del files["val/labels.txt"]
    files["val/ground_truth.txt"] = b"5\n3\n\n7\n"
    summary = validate_archive(write_tar(tmp_path / "in.tar.gz", files), "imagenet-val")
    assert (summary.sample_count, summary.root, summary.classes) == (3, "val", None)

    samples = list_samples(write_tree(tmp_path / "data", files), "imagenet-val")
    assert [(s.id, s.label) for s in samples] == [("a.jpg", 5), ("b.JPEG", 3), ("c.png", 7)]


def test_imagenet_label_count_mismatch(tmp_path):
    path = write_zip(tmp_path / "in.zip", imagenet_files("5\n3\n"))
    message = error_of(path, "imagenet-val")
    assert "labels.txt has 2 labels but images/ holds 3 images" in message
    assert "did you mean" not in message  # a damaged imagenet-val is not another layout


def test_imagenet_image_without_label_and_label_without_image(tmp_path):
    path = write_zip(tmp_path / "in.zip", imagenet_files("a.jpg 1\nb.JPEG 2\nd.jpg 3\n"))
    message = error_of(path, "imagenet-val")
    assert "image 'c.png' has no label in labels.txt" in message
    assert "labels.txt labels 'd.jpg', which is not among the images" in message


def test_imagenet_bad_label_line_is_named(tmp_path):
    path = write_zip(tmp_path / "in.zip", imagenet_files("a.jpg 1\nb.JPEG two\nc.png 3\n"))
    assert "labels.txt line 2" in error_of(path, "imagenet-val")


def test_imagenet_label_beyond_class_list(tmp_path):
    files = dict(imagenet_files("0\n1\n2\n"), **{"classes.txt": b"cat\ndog\n"})
    message = error_of(write_zip(tmp_path / "in.zip", files), "imagenet-val")
    assert "image 'c.png' has class index 2" in message


# ---------------------------------------------------------------------------
# imagefolder
# ---------------------------------------------------------------------------


def imagefolder_files(prefix: str = "flowers/") -> Dict[str, bytes]:
    return {
        f"{prefix}rose/2.png": jpeg_bytes(),
        f"{prefix}daisy/b.jpg": jpeg_bytes(),
        f"{prefix}daisy/a.jpeg": jpeg_bytes(),
        f"{prefix}daisy/more/c.jpg": jpeg_bytes(),
        f"{prefix}daisy/notes.txt": b"ignored",
    }


def test_imagefolder_with_top_folder(tmp_path):
    path = write_tar(tmp_path / "f.tar.gz", imagefolder_files())
    summary = validate_archive(path, "imagefolder")
    assert (summary.root, summary.classes, summary.num_classes) == ("flowers", ["daisy", "rose"], 2)
    assert (summary.sample_count, summary.members) == (4, 5)


def test_imagefolder_single_class_without_top_folder(tmp_path):
    path = write_zip(tmp_path / "f.zip", {"cat/1.jpg": jpeg_bytes(), "cat/2.jpg": jpeg_bytes()})
    summary = validate_archive(path, "imagefolder")
    assert (summary.root, summary.classes, summary.sample_count) == ("", ["cat"], 2)


def test_list_samples_imagefolder(tmp_path):
    root = write_tree(tmp_path / "data", imagefolder_files())
    samples = list_samples(root, "imagefolder")
    assert [(s.id, s.label) for s in samples] == [
        ("daisy/a.jpeg", 0), ("daisy/b.jpg", 0), ("daisy/more/c.jpg", 0), ("rose/2.png", 1),
    ]
    assert samples[3].image == str(root / "flowers" / "rose" / "2.png")


def test_imagefolder_images_outside_class_folders(tmp_path):
    path = write_zip(tmp_path / "f.zip", {"x.jpg": jpeg_bytes(), "cat/1.jpg": jpeg_bytes()})
    assert "holds images directly (e.g. 'x.jpg')" in error_of(path, "imagefolder")


def test_imagefolder_class_without_images(tmp_path):
    path = write_zip(tmp_path / "f.zip", {"cat/1.jpg": jpeg_bytes(), "dog/readme.txt": b"x"})
    assert "class folder 'dog/' holds no images" in error_of(path, "imagefolder")


def test_damaged_imagenet_archive_is_not_taken_for_a_one_class_imagefolder(tmp_path):
    path = write_zip(tmp_path / "in.zip", imagenet_files("0\n1\n"))
    message = error_of(path, "imagefolder")
    assert "found labels.txt beside a single image folder" in message


def test_imagenet_archive_uploaded_as_imagefolder_is_explained(tmp_path):
    path = write_zip(tmp_path / "in.zip", imagenet_files("0\n1\n2\n"))
    message = error_of(path, "imagefolder")
    assert "imagenet-val" in message
    assert message.endswith("did you mean layout 'imagenet-val'?")


# ---------------------------------------------------------------------------
# mnist-idx
# ---------------------------------------------------------------------------


def test_mnist_plain_and_gzipped_pairs(tmp_path):
    import gzip

    files = {
        "mnist/t10k-images-idx3-ubyte": idx_images(3),
        "mnist/t10k-labels-idx1-ubyte": idx_labels([7, 2, 1]),
        "mnist/train-images-idx3-ubyte.gz": gzip.compress(idx_images(2)),
        "mnist/train-labels-idx1-ubyte.gz": gzip.compress(idx_labels([5, 0])),
    }
    summary = validate_archive(write_zip(tmp_path / "m.zip", files), "mnist-idx")
    assert (summary.sample_count, summary.root, summary.num_classes) == (5, "mnist", 10)

    root = write_tree(tmp_path / "data", files)
    samples = list_samples(root, "mnist-idx")
    assert [(s.id, s.index, s.label) for s in samples] == [
        ("t10k-0", 0, 7), ("t10k-1", 1, 2), ("t10k-2", 2, 1), ("train-0", 0, 5), ("train-1", 1, 0),
    ]
    assert samples[0].source == str(root / "mnist" / "t10k-images-idx3-ubyte")
    assert samples[4].source == str(root / "mnist" / "train-images-idx3-ubyte.gz")
    assert samples[0].image is None


def test_mnist_count_mismatch(tmp_path):
    files = {"t10k-images-idx3-ubyte": idx_images(3), "t10k-labels-idx1-ubyte": idx_labels([1, 2])}
    message = error_of(write_tar(tmp_path / "m.tar.gz", files), "mnist-idx")
    assert message == ("mnist-idx: t10k-images-idx3-ubyte holds 3 images but "
                       "t10k-labels-idx1-ubyte holds 2 labels")


def test_mnist_bad_magic(tmp_path):
    files = {"t10k-images-idx3-ubyte": idx_images(1),
             "t10k-labels-idx1-ubyte": idx_labels([1], magic=0x802)}
    message = error_of(write_zip(tmp_path / "m.zip", files), "mnist-idx")
    assert "t10k-labels-idx1-ubyte starts with magic number 0x00000802, not 0x00000801" in message


def test_mnist_truncated_images(tmp_path):
    files = {"t10k-images-idx3-ubyte": idx_images(3, records=2),
             "t10k-labels-idx1-ubyte": idx_labels([1, 2, 3])}
    message = error_of(write_zip(tmp_path / "m.zip", files), "mnist-idx")
    assert "is 24 bytes but its header announces 3 images of 2x2 pixels (28 bytes)" in message


def test_mnist_missing_labels_file(tmp_path):
    path = write_zip(tmp_path / "m.zip", {"t10k-images-idx3-ubyte": idx_images(1)})
    message = error_of(path, "mnist-idx")
    assert "found t10k-images-idx3-ubyte but no matching t10k-labels-idx1-ubyte" in message


# ---------------------------------------------------------------------------
# cifar10-bin
# ---------------------------------------------------------------------------


def test_cifar_two_records_with_class_names(tmp_path):
    files = {
        "cifar-10-batches-bin/test_batch.bin": cifar_records([3, 7]),
        "cifar-10-batches-bin/batches.meta.txt": ("\n".join(CIFAR_CLASSES) + "\n\n").encode(),
    }
    summary = validate_archive(write_tar(tmp_path / "c.tar.gz", files), "cifar10-bin")
    assert (summary.sample_count, summary.root) == (2, "cifar-10-batches-bin")
    assert (summary.classes, summary.num_classes) == (CIFAR_CLASSES, 10)

    root = write_tree(tmp_path / "data", files)
    samples = list_samples(root, "cifar10-bin")
    assert [(s.id, s.index, s.label) for s in samples] == [("test_batch-0", 0, 3),
                                                           ("test_batch-1", 1, 7)]
    assert samples[1].source == str(root / "cifar-10-batches-bin" / "test_batch.bin")


def test_cifar_test_batch_comes_before_data_batches(tmp_path):
    files = {"data_batch_10.bin": cifar_records([1]), "data_batch_2.bin": cifar_records([2]),
             "test_batch.bin": cifar_records([0])}
    samples = list_samples(write_tree(tmp_path / "data", files), "cifar10-bin")
    assert [(s.id, s.label) for s in samples] == [
        ("test_batch-0", 0), ("data_batch_2-0", 2), ("data_batch_10-0", 1),
    ]
    summary = validate_archive(write_zip(tmp_path / "c.zip", files), "cifar10-bin")
    assert (summary.classes, summary.num_classes, summary.sample_count) == (None, 10, 3)


def test_cifar_bad_size(tmp_path):
    files = {"test_batch.bin": cifar_records([1, 2]) + b"\x00"}
    message = error_of(write_zip(tmp_path / "c.zip", files), "cifar10-bin")
    assert message.startswith("cifar10-bin: test_batch.bin is 6147 bytes, not a whole number")


def test_cifar_label_out_of_range_is_named_by_list_samples(tmp_path):
    root = write_tree(tmp_path / "data", {"test_batch.bin": cifar_records([1, 12])})
    with pytest.raises(DatasetError, match="record 1 has label 12"):
        list_samples(root, "cifar10-bin")


# ---------------------------------------------------------------------------
# safe_extract
# ---------------------------------------------------------------------------


def test_safe_extract_puts_files_in_place(tmp_path):
    files = dict(voc_files("VOC2012/"), **{"__MACOSX/VOC2012/._x": b"junk"})
    archive = write_tar(tmp_path / "voc.tar.gz", files)
    dest = tmp_path / "datasets" / "voc"

    safe_extract(archive, dest)

    extracted = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert extracted == sorted(name for name in files if not name.startswith("__MACOSX"))
    assert (dest / "VOC2012/SegmentationClass/2007_000032.png").read_bytes() == mask_bytes()
    assert os.listdir(dest.parent) == ["voc"]  # no staging folder left behind
    assert [s.id for s in list_samples(dest, "voc-seg")] == VOC_IDS


def test_safe_extract_refuses_an_unsafe_archive_before_writing_anything(tmp_path):
    files = dict(voc_files(), **{"../evil.txt": b"x"})
    archive = write_zip(tmp_path / "bad.zip", files)
    dest = tmp_path / "out" / "voc"

    with pytest.raises(DatasetError, match="escapes the dataset folder"):
        safe_extract(archive, dest)

    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_safe_extract_removes_the_staging_folder_when_extraction_fails(tmp_path):
    files = voc_files()
    archive = write_zip(tmp_path / "voc.zip", files, method=zipfile.ZIP_STORED)
    data = archive.read_bytes()
    jpeg = files["JPEGImages/2007_000039.jpg"]
    at = data.index(jpeg) + len(jpeg) // 2
    archive.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])  # bad CRC
    validate_archive(archive, "voc-seg")  # names and sizes are intact
    dest = tmp_path / "out" / "voc"

    with pytest.raises(DatasetError, match="damaged zip archive"):
        safe_extract(archive, dest)

    assert not dest.exists()
    assert os.listdir(tmp_path / "out") == []


def test_safe_extract_refuses_an_existing_destination(tmp_path):
    archive = write_zip(tmp_path / "voc.zip", voc_files())
    dest = tmp_path / "voc"
    dest.mkdir()
    with pytest.raises(FileExistsError):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == []


# ---------------------------------------------------------------------------
# pack_directory
# ---------------------------------------------------------------------------


def test_pack_directory_is_deterministic_and_validates(tmp_path):
    src = write_tree(tmp_path / "voc", dict(voc_files("VOC2012/"), **{"VOC2012/.DS_Store": b"x"}))
    first, second = tmp_path / "one.tar", tmp_path / "two.tar"

    pack_directory(src, first)
    os.utime(src / "VOC2012/JPEGImages/2007_000032.jpg", (1_000_000, 1_000_000))
    (src / "VOC2012/SegmentationClass/2007_000032.png").chmod(0o600)
    pack_directory(src, second)

    assert first.read_bytes() == second.read_bytes()  # so the same folder gives the same sha256
    with tarfile.open(first) as archive:
        members = archive.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and "VOC2012/.DS_Store" not in names and len(names) == 7
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
        (0, 0, 0, "", "", 0o644)
    }
    assert validate_archive(first, "voc-seg") == validate_directory(src, "voc-seg")


def test_pack_directory_refuses_symlinks(tmp_path):
    src = write_tree(tmp_path / "voc", voc_files())
    (src / "JPEGImages" / "link.jpg").symlink_to("/etc/passwd")
    with pytest.raises(DatasetError, match="'JPEGImages/link.jpg' is a symbolic link"):
        pack_directory(src, tmp_path / "voc.tar")
    assert not (tmp_path / "voc.tar").exists()
    with pytest.raises(DatasetError, match="is a symbolic link"):
        validate_directory(src, "voc-seg")


def test_pack_directory_refuses_writing_inside_the_folder(tmp_path):
    src = write_tree(tmp_path / "voc", voc_files())
    with pytest.raises(ValueError, match="inside the folder"):
        pack_directory(src, src / "voc.tar")
