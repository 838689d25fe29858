"""Which artifacts an agent token may download: only the model, reference model
and dataset of a run its device holds a lease on; anything else is a 404
problem+json. Users keep downloading everything."""

import hashlib

from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.support.archives import archive_bytes


def voc_archive() -> bytes:
    return archive_bytes("tar", {"ImageSets/Segmentation/val.txt": b"a\n", "JPEGImages/a.jpg": b"\xff\xd8jpeg",
                                 "SegmentationClass/a.png": b"\x89PNG"})


def assert_refused(response):
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "runs this device holds" in response.json()["detail"]


def test_agent_downloads_only_the_artifacts_of_its_leased_runs(farm, tmp_path):
    path = tmp_path / "seg.tflite"
    path.write_bytes(tiny_tflite(seed=3))
    model = farm.push_model(path, name="seg", task="segmentation")
    other = tmp_path / "other.tflite"
    other.write_bytes(tiny_tflite(seed=4))
    unused = farm.push_model(other, name="unused")
    dataset = farm.user.post("/api/v1/datasets", files={"file": ("voc.tar", voc_archive())},
                             data={"name": "voc", "layout": "voc-seg"})
    assert dataset.status_code == 201, dataset.text
    dataset = dataset.json()
    one, two = farm.enroll("pc-1"), farm.enroll("pc-2")
    farm.submit(models=[model["id"]], dataset=str(dataset["id"]), devices=f"id={one.device_id}")
    model_url = f"/api/v1/models/{model['id']}/file"
    dataset_url = f"/api/v1/datasets/{dataset['id']}/file"

    assert_refused(one.http.get(model_url))  # queued, not leased yet
    lease = one.lease()
    assert lease["model"]["id"] == model["id"]
    got = one.http.get(model_url)
    assert got.status_code == 200, got.text
    assert hashlib.sha256(got.content).hexdigest() == model["sha256"]
    assert one.http.get(dataset_url).status_code == 200
    assert_refused(one.http.get(f"/api/v1/models/{unused['id']}/file"))

    assert_refused(two.http.get(model_url))
    assert_refused(two.http.get(dataset_url))
    assert_refused(two.http.get("/api/v1/models/9999/file"))
    assert farm.user.get(model_url).status_code == 200
    assert farm.admin.get(f"/api/v1/models/{unused['id']}/file").status_code == 200

    assert one.report(lease).status_code == 200
    assert_refused(one.http.get(model_url))  # the run is over
