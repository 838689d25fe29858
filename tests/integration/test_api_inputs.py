"""Bad input over real HTTP: every refusal is a 4xx problem+json with a clear
message, and nothing stored changes."""

import io
import json
import tarfile
import zipfile

import pytest

from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.support.servers import DEEPLAB, DEEPLAB_SHA256


def assert_problem(response, status, *words):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"]
    text = (body["title"] + " " + body["detail"]).lower()
    for word in words:
        assert word.lower() in text, body


def snapshot(farm):
    return {
        "models": farm.user.get("/api/v1/models").json(),
        "datasets": farm.user.get("/api/v1/datasets").json(),
        "jobs": farm.user.get("/api/v1/jobs").json(),
        "blobs": sorted(p.name for p in (farm.server.data_dir / "artifacts").rglob("*") if p.is_file()),
    }


def upload_dataset(farm, payload: bytes, layout="voc-seg", name="d"):
    return farm.user.post("/api/v1/datasets", files={"file": ("d.tar", payload)},
                          data={"name": name, "layout": layout})


def tar_bytes(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def voc_members(ids, masks=None):
    masks = ids if masks is None else masks
    members = {f"JPEGImages/{i}.jpg": b"\xff\xd8jpeg" for i in ids}
    members.update({f"SegmentationClass/{i}.png": b"\x89PNG" for i in masks})
    members["ImageSets/Segmentation/val.txt"] = "\n".join(ids).encode() + b"\n"
    return members


@pytest.fixture
def stored(farm, tmp_path):
    path = tmp_path / "base.tflite"
    path.write_bytes(tiny_tflite())
    model = farm.push_model(path, name="base")
    ok = upload_dataset(farm, tar_bytes(voc_members(["a", "b"])), name="good")
    assert ok.status_code == 201, ok.text
    return model


def test_text_file_as_model_is_refused(farm, stored):
    before = snapshot(farm)
    response = farm.user.post("/api/v1/models", files={"file": ("model.tflite", b"hello, world\n" * 50)})
    assert_problem(response, 415, "not a model", "model.tflite")
    assert "upload-" not in response.json()["detail"]  # no server-side temp path
    assert snapshot(farm) == before


def test_dataset_with_parent_member_is_refused(farm, stored):
    before = snapshot(farm)
    members = voc_members(["a"])
    members["../evil.txt"] = b"x"
    assert_problem(upload_dataset(farm, tar_bytes(members), name="evil"), 422, "..")
    assert snapshot(farm) == before


def test_voc_image_without_mask_is_refused(farm, stored):
    before = snapshot(farm)
    response = upload_dataset(farm, tar_bytes(voc_members(["a", "b"], masks=["a"])), name="nomask")
    assert_problem(response, 422, "b", "mask")
    assert snapshot(farm) == before


def test_zip_with_absolute_member_is_refused(farm, stored):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("/etc/passwd", b"x")
    before = snapshot(farm)
    assert_problem(upload_dataset(farm, buffer.getvalue(), name="abs"), 422, "absolute")
    assert snapshot(farm) == before


def test_unknown_layout_is_refused(farm, stored):
    response = upload_dataset(farm, tar_bytes(voc_members(["a"])), layout="coco", name="x")
    assert_problem(response, 422, "coco", "voc-seg")


def test_no_matching_device_with_require_device_is_refused(farm, stored):
    farm.enroll("pc-1")
    before = snapshot(farm)
    response = farm.user.post("/api/v1/jobs", json={
        "models": [str(stored["id"])], "devices": "platform=rpi3", "require_device": True})
    assert_problem(response, 422, "no enrolled", "platform=rpi3")
    assert snapshot(farm) == before


def test_unknown_selector_key_is_refused(farm, stored):
    response = farm.user.post("/api/v1/jobs", json={"models": [str(stored["id"])], "devices": "colour=red"})
    assert_problem(response, 422, "selector", "colour")


def test_job_without_device_waits_and_starts_when_one_enrolls(farm, stored):
    body = {"models": [str(stored["id"])], "devices": "platform=rpi3"}
    response = farm.user.post("/api/v1/jobs", json=body)
    assert response.status_code == 201
    job = response.json()
    assert job["state"] == "waiting" and job["runs"] == [] and "rpi3" in job["warnings"][0]
    farm.enroll("pc-1")  # does not match
    assert farm.user.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "waiting"
    pi = farm.enroll("pi-1", platform="rpi3")
    runs = farm.user.get(f"/api/v1/jobs/{job['id']}").json()["runs"]
    assert [r["device_id"] for r in runs] == [pi.device_id]
    assert pi.lease()["run_id"] == runs[0]["id"]


@pytest.mark.parametrize("header", [None, "Bearer nope", "Bearer ef_1_wrong", "Basic abc"])
def test_missing_or_wrong_token_is_refused(farm, stored, header):
    headers = {"Authorization": header} if header else {}
    with farm.client(**headers) as client:
        before = snapshot(farm)
        response = client.post("/api/v1/jobs", json={"models": [str(stored["id"])], "devices": "all"})
        assert_problem(response, 401, "token")
        assert_problem(client.get("/api/v1/results"), 401, "token")
        assert snapshot(farm) == before


def test_agent_token_cannot_submit_or_read(farm, stored):
    agent = farm.enroll("pc")
    before = snapshot(farm)
    response = agent.http.post("/api/v1/jobs", json={"models": [str(stored["id"])], "devices": "all"})
    assert_problem(response, 403, "agent")
    assert_problem(agent.http.get("/api/v1/results"), 403, "agent")
    assert snapshot(farm) == before


def test_user_token_cannot_lease_or_create_tokens(farm, stored):
    assert_problem(farm.user.post("/api/v1/agents/lease", json={}), 403, "agent")
    assert_problem(farm.user.post("/api/v1/tokens", json={"role": "admin"}), 403, "admin")


def test_enrollment_token_is_single_use(farm):
    token = farm.admin.post("/api/v1/tokens", json={"role": "enroll"}).json()["token"]
    body = {"name": "pc", "capabilities": {"platform": "pc"}, "protocol_version": 1}
    with farm.client(token) as client:
        assert client.post("/api/v1/agents/enroll", json=body).status_code == 201
        assert_problem(client.post("/api/v1/agents/enroll", json=body), 401, "already been used")
    assert len(farm.user.get("/api/v1/devices").json()) == 1


def test_the_old_spelling_of_the_enrollment_role_still_creates_one(farm):
    created = farm.admin.post("/api/v1/tokens", json={"role": "enrol"})
    assert created.status_code == 201 and created.json()["role"] == "enroll"
    body = {"name": "pc", "capabilities": {"platform": "pc"}, "protocol_version": 1}
    with farm.client(created.json()["token"]) as client:
        assert client.post("/api/v1/agents/enroll", json=body).status_code == 201


def test_protocol_mismatch_is_refused(farm):
    agent = farm.enroll("pc")
    response = agent.http.post("/api/v1/agents/lease", json={}, headers={"X-EdgeFarm-Protocol": "99"})
    assert_problem(response, 426, "protocol")


def test_validation_errors_are_problems(farm, stored):
    response = farm.user.post("/api/v1/jobs", json={"models": [], "devices": "all"})
    assert_problem(response, 422, "models")
    assert response.json()["errors"]
    meta = farm.user.post("/api/v1/models", files={"file": ("m.tflite", tiny_tflite(seed=9))},
                          data={"meta": json.dumps({"variant": {"quantization": "int3"}})})
    assert_problem(meta, 422, "quantization")


def test_upload_over_the_size_limit_is_refused(start_farm):
    farm = start_farm(max_model_bytes=1000)
    big = tiny_tflite(inputs=200)
    assert len(big) > 1000
    response = farm.user.post("/api/v1/models", files={"file": ("big.tflite", big)})
    assert_problem(response, 413, "1000")
    assert farm.user.get("/api/v1/models").json() == []
    leftovers = [p for p in (farm.server.data_dir / "artifacts").rglob("*") if p.is_file()]
    assert leftovers == []


def test_delete_model_in_use_is_refused(farm, stored):
    farm.enroll("pc")
    farm.submit(models=[str(stored["id"])], devices="all")
    assert_problem(farm.user.delete(f"/api/v1/models/{stored['id']}"), 409, "in use")
    assert farm.user.get(f"/api/v1/models/{stored['id']}").status_code == 200


def test_deeplab_upload_reads_tensors(farm):
    if not DEEPLAB.exists():
        pytest.skip("fixture ../shared/fixtures/deeplabv3_mnv2_dm05_pascal_fp32.tflite is absent")
    model = farm.push_model(DEEPLAB)
    assert model["sha256"] == DEEPLAB_SHA256 and model["size_bytes"] == 2789652
    assert model["format"] == "tflite" and model["task"] == "segmentation"
    assert model["inputs"][0]["name"] == "sub_7" and model["inputs"][0]["shape"] == [1, 513, 513, 3]
    assert model["outputs"][0]["name"] == "ResizeBilinear_2"
    assert model["outputs"][0]["shape"] == [1, 513, 513, 21]
    again = farm.user.post("/api/v1/models", files={"file": ("x.tflite", DEEPLAB.read_bytes())})
    assert again.status_code == 200 and again.json()["id"] == model["id"]
    download = farm.user.get(model["download_url"])
    assert download.status_code == 200 and download.headers["etag"] == f'"{DEEPLAB_SHA256}"'
    import hashlib

    assert hashlib.sha256(download.content).hexdigest() == DEEPLAB_SHA256
    partial = farm.user.get(model["download_url"], headers={"Range": "bytes=100-199"})
    assert partial.status_code == 206 and partial.content == DEEPLAB.read_bytes()[100:200]
