"""Hostile input over real HTTP (SQLite and PostgreSQL), from a schemathesis run
that found server errors: digits that are not ASCII ("²"), ids and offsets past
2^63, numbers of thousands of digits, reports with NaN, Infinity, negative or
unordered figures, oversized bodies, and a session cookie copied before sign-out.
Each is refused with a 4xx (problem+json on the API) and nothing stored changes."""

import json

import pytest

from edgefarm.shared.contract.schemas import MAX_REPORT_SAMPLES
from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.integration.test_api_inputs import assert_problem, snapshot
from tests.integration.test_dashboard import Tags, sign_in
from tests.support.servers import sample_result

HUGE = str(2**64)  # past SQLite's INTEGER and PostgreSQL's bigint
PAST = str(2**31)  # past PostgreSQL's integer (the id columns)
LAST = str(2**31 - 1)  # the largest id: well formed, no such row
LONG = "9" * 5000  # past Python's int-from-text limit (4300 digits)
SUPER = "\u00b2"  # "²": str.isdigit() is True, int() refuses it


@pytest.fixture
def model(farm, tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(tiny_tflite())
    return farm.push_model(path, name="m")


def test_non_ascii_digits_in_tokens_and_references_are_refused(farm, model):
    for token in (f"ef_{SUPER}_secret", f"ef_{LONG}_secret", f"ef_{HUGE}_secret"):
        # Latin-1, as a server reads header bytes: b"\xb2" is "²"
        with farm.client(Authorization=f"Bearer {token}".encode("latin-1")) as client:
            assert_problem(client.get("/api/v1/jobs"), 401, "token")
    assert_problem(farm.user.get(f"/api/v1/models/{SUPER}"), 404, "model")
    assert_problem(farm.user.get(f"/api/v1/datasets/{SUPER}"), 404, "dataset")
    before = snapshot(farm)
    assert_problem(farm.user.post("/api/v1/jobs", json={"models": [SUPER]}), 404, "model")
    for ref in (HUGE, PAST):
        assert_problem(farm.user.post("/api/v1/jobs", json={"models": [ref]}), 404, "model")
    response = farm.user.post("/api/v1/jobs", json={"models": [str(model["id"])],
                                                    "devices": f"id={PAST}"})
    assert_problem(response, 422, "device id")
    assert farm.user.get("/api/v1/results", params={"model": SUPER, "device": HUGE}).json() == []
    assert snapshot(farm) == before


def test_non_ascii_digits_in_sign_in_and_session_cookie_are_refused(farm):
    with farm.client() as client:
        nonce = Tags(client.get("/login").text).value_of("csrf")
        response = client.post("/login", data={"token": f"ef_{SUPER}_x", "csrf": nonce})
        assert response.status_code == 401 and "malformed" in response.text
    for cookie in (f"v1.{SUPER}.1.nonce.sig", f"v1.1.{SUPER}.nonce.sig", f"v1.{LONG}.1.n.s",
                   f"v1.1.{HUGE}.n.s", f"v1.{PAST}.1.n.s"):
        with farm.client(Cookie=f"edgefarm_session={cookie}".encode("latin-1")) as client:
            response = client.get("/")
            assert response.status_code == 401 and "sign in" in response.text.lower()
    for bad in (HUGE, PAST, SUPER):  # the dashboard's pages read ids too
        assert 400 <= farm.user.get(f"/results/{bad}").status_code < 500
        assert 400 <= farm.user.post(f"/jobs/{bad}/cancel", data={"csrf": "x"}).status_code < 500


ID_PATHS = [
    ("GET", "/api/v1/jobs/{}"), ("POST", "/api/v1/jobs/{}/cancel"), ("GET", "/api/v1/runs/{}"),
    ("GET", "/api/v1/results/{}"), ("GET", "/api/v1/devices/{}"), ("PATCH", "/api/v1/devices/{}"),
    ("GET", "/api/v1/models/{}/file"), ("DELETE", "/api/v1/models/{}"),
    ("GET", "/api/v1/datasets/{}/file"), ("DELETE", "/api/v1/datasets/{}"),
    ("DELETE", "/api/v1/tokens/{}"),
]


def test_ids_past_the_database_range_are_refused(farm, model):
    before = snapshot(farm)
    for method, path in ID_PATHS:
        body = {"json": {}} if method in ("PATCH", "POST") else {}
        for bad in (HUGE, PAST, LONG, SUPER, "0"):
            response = farm.admin.request(method, path.format(bad), **body)
            assert response.status_code == 422, (method, path, bad, response.text)
            assert_problem(response, 422, "id")
        assert_problem(farm.admin.request(method, path.format(LAST), **body), 404, "no ")
    assert snapshot(farm) == before


def test_offsets_counts_and_long_numbers_past_the_range_are_refused(farm, model):
    before = snapshot(farm)
    for path in ("/api/v1/jobs", "/api/v1/results"):
        assert_problem(farm.user.get(path, params={"offset": HUGE}), 422, "offset")
        assert_problem(farm.user.get(path, params={"offset": LONG}), 422, "offset")
    for job in (HUGE, PAST):
        assert_problem(farm.user.get("/api/v1/results", params={"job": job}), 422, "job")
    register = {"name": "r", "layout": "imagenet-val", "path": "/data/r", "sha256": "a" * 64,
                "sample_count": 2**64}
    assert_problem(farm.user.post("/api/v1/datasets/register", json=register), 422, "sample_count")
    register["sample_count"] = 2**31  # a 32-bit column on PostgreSQL
    assert_problem(farm.user.post("/api/v1/datasets/register", json=register), 422, "sample_count")
    text = json.dumps({"models": [str(model["id"])], "priority": 0}).replace('"priority": 0',
                                                                               f'"priority": {LONG}')
    response = farm.user.post("/api/v1/jobs", content=text,
                              headers={"content-type": "application/json"})
    assert_problem(response, 422, "number")
    assert snapshot(farm) == before


def test_text_no_column_can_hold_is_refused(farm, model):
    before = snapshot(farm)
    assert_problem(farm.user.get("/api/v1/models/a%00b"), 400, "NUL")
    assert_problem(farm.user.get("/api/v1/results", params={"family": "a\x00"}), 400, "NUL")
    assert_problem(farm.admin.post("/api/v1/tokens", json={"role": "user", "name": "a\x00"}),
                   422, "NUL")
    assert_problem(farm.admin.post("/api/v1/tokens", json={"role": "user", "name": "n" * 201}),
                   422, "name")
    other = tiny_tflite(seed=3)
    response = farm.user.post("/api/v1/models", files={"file": ("m.tflite", other)},
                              data={"name": "a\x00b"})
    assert_problem(response, 422, "NUL")
    response = farm.user.post("/api/v1/models", files={"file": ("m" * 250 + ".tflite", other)})
    assert_problem(response, 422, "file name")
    assert snapshot(farm) == before
    assert len(farm.admin.get("/api/v1/tokens").json()) == 2


def test_since_and_until_are_rfc3339_date_times(farm):
    assert_problem(farm.user.get("/api/v1/results", params={"since": "1700000000"}), 422, "since")
    assert_problem(farm.user.get("/api/v1/results", params={"until": "12"}), 422, "until")
    ok = farm.user.get("/api/v1/results", params={"since": "2026-01-01T00:00:00Z"})
    assert ok.status_code == 200 and ok.json() == []


def bad_reports():
    def result(**changes):
        body = sample_result(top1=0.5)
        for dotted, value in changes.items():
            *path, last = dotted.split("__")
            node = body
            for key in path:
                node = node[key]
            node[last] = value
        return body

    return {
        "NaN latency": result(latency_ms__p50=float("nan")),
        "Infinity latency": result(latency_ms__max=float("inf")),
        "NaN in extra": result(extra={"x": float("nan")}),
        "negative count": result(latency_ms__count=-1),
        "negative size": result(model_size_bytes=-5),
        "negative sample": result(latency_ms__samples=[1.0, -2.0]),
        "min above max": result(latency_ms__min=50.0),
        "top1 of 7.5": result(metrics__top1=7.5),
        "too many samples": result(latency_ms__samples=[10.0] * (MAX_REPORT_SAMPLES + 1)),
        "huge count": result(peak_rss_bytes=2**64),
    }


def test_reports_that_no_agent_sends_are_refused_and_nothing_is_stored(farm, model):
    agent = farm.enroll("pc")
    farm.submit(models=[str(model["id"])], devices="all")
    lease = agent.lease()
    for what, result in bad_reports().items():
        body = json.dumps({"lease_id": lease["lease_id"], "state": "succeeded", "result": result})
        response = agent.http.post(f"/api/v1/runs/{lease['run_id']}/report", content=body,
                                   headers={"content-type": "application/json"})
        assert response.status_code == 422, (what, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), what
    assert farm.user.get("/api/v1/results").json() == []
    assert farm.user.get(f"/api/v1/runs/{lease['run_id']}").json()["state"] == "leased"
    assert agent.report(lease, result=sample_result(top1=0.5)).status_code == 200
    assert len(farm.user.get("/api/v1/results").json()) == 1


def test_bodies_over_the_cap_are_refused_before_parsing(farm, model):
    from edgefarm.server.api.bodies import MAX_BODY_BYTES

    agent = farm.enroll("pc")
    farm.submit(models=[str(model["id"])], devices="all")
    lease = agent.lease()
    result = sample_result()
    result["latency_ms"]["samples"] = [10.0] * 10_000_000  # the 40 MB report of the finding
    body = json.dumps({"lease_id": lease["lease_id"], "state": "succeeded", "result": result})
    assert len(body) > MAX_BODY_BYTES
    response = agent.http.post(f"/api/v1/runs/{lease['run_id']}/report", content=body,
                               headers={"content-type": "application/json"})
    assert_problem(response, 413, "too large")

    def streamed():  # no Content-Length: counted as it arrives
        yield b'{"models": ["' + b"x" * (MAX_BODY_BYTES + 10)
        yield b'"]}'

    before = snapshot(farm)
    response = farm.user.post("/api/v1/jobs", content=streamed(),
                              headers={"content-type": "application/json"})
    assert_problem(response, 413, "too large")
    response = farm.user.post("/api/v1/jobs", content=streamed(),  # not an upload route
                              headers={"content-type": "multipart/form-data; boundary=x"})
    assert_problem(response, 413, "too large")
    assert snapshot(farm) == before
    assert farm.user.get("/api/v1/results").json() == []
    assert agent.report(lease).status_code == 200


def test_uploads_keep_their_own_larger_limit(farm, tmp_path):
    from edgefarm.server.api.bodies import MAX_BODY_BYTES

    path = tmp_path / "big.tflite"
    path.write_bytes(tiny_tflite() + bytes(MAX_BODY_BYTES + 1024))
    stored = farm.push_model(path, name="big")
    assert stored["size_bytes"] > MAX_BODY_BYTES


def test_a_session_cookie_copied_before_sign_out_no_longer_works(farm):
    client = sign_in(farm, farm.user_token)
    copied = client.cookies.get("edgefarm_session")
    assert client.get("/").status_code == 200
    assert client.get("/logout").status_code == 303
    with farm.client() as thief:
        thief.cookies.set("edgefarm_session", copied)
        response = thief.get("/")
        assert response.status_code == 401 and "session has ended" in response.text
    other = sign_in(farm, farm.user_token)  # the token itself still signs in
    assert other.get("/").status_code == 200
    client.close()
    other.close()
