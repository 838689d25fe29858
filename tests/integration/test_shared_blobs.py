"""One stored file, two rows: the same bytes uploaded as a model (a DLC is a zip
archive) and as a dataset are stored once, and the file stays until the last
row naming it is deleted."""

import hashlib
import io
import zipfile


def dlc_that_is_a_voc_archive() -> bytes:
    """A zip with an SNPE DLC's members beside a two-image VOC segmentation set."""
    members = {"model": b"dlc graph", "model.params": b"dlc weights",
               "ImageSets/Segmentation/val.txt": b"a\nb\n"}
    for i in ("a", "b"):
        members[f"JPEGImages/{i}.jpg"] = b"\xff\xd8jpeg"
        members[f"SegmentationClass/{i}.png"] = b"\x89PNG"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def blobs(farm):
    return sorted(p.name for p in (farm.server.data_dir / "artifacts").rglob("*")
                  if p.is_file() and p.parent.name != "tmp")


def test_blob_shared_by_model_and_dataset_stays_until_both_are_deleted(farm):
    payload = dlc_that_is_a_voc_archive()
    sha = hashlib.sha256(payload).hexdigest()
    model = farm.user.post("/api/v1/models", files={"file": ("net.dlc", payload)})
    assert model.status_code == 201, model.text
    assert model.json()["format"] == "dlc" and model.json()["sha256"] == sha
    dataset = farm.user.post("/api/v1/datasets", files={"file": ("voc.zip", payload)},
                             data={"name": "voc", "layout": "voc-seg"})
    assert dataset.status_code == 201, dataset.text
    assert dataset.json()["sha256"] == sha
    assert blobs(farm) == [sha]

    gone = farm.user.delete(f"/api/v1/datasets/{dataset.json()['id']}")
    assert gone.status_code == 200, gone.text
    download = farm.user.get(f"/api/v1/models/{model.json()['id']}/file")
    assert download.status_code == 200, download.text
    assert hashlib.sha256(download.content).hexdigest() == sha
    assert blobs(farm) == [sha]

    gone = farm.user.delete(f"/api/v1/models/{model.json()['id']}")
    assert gone.status_code == 200, gone.text
    assert blobs(farm) == []


def test_deleting_the_model_keeps_the_datasets_archive(farm):
    payload = dlc_that_is_a_voc_archive()
    sha = hashlib.sha256(payload).hexdigest()
    model = farm.user.post("/api/v1/models", files={"file": ("net.dlc", payload)}).json()
    dataset = farm.user.post("/api/v1/datasets", files={"file": ("voc.zip", payload)},
                             data={"name": "voc", "layout": "voc-seg"}).json()
    assert farm.user.delete(f"/api/v1/models/{model['id']}").status_code == 200
    download = farm.user.get(f"/api/v1/datasets/{dataset['id']}/file")
    assert download.status_code == 200, download.text
    assert hashlib.sha256(download.content).hexdigest() == sha
    assert farm.user.delete(f"/api/v1/datasets/{dataset['id']}").status_code == 200
    assert blobs(farm) == []
