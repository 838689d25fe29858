"""The web dashboard over real HTTP (SQLite and PostgreSQL): sign-in and the
session cookie, refused tokens, filters and sorting of the results table and
its exports, CSRF on cancel, the compare page's matrix and charts, and the
result page's histogram and provenance. Pages are read with ``html.parser``
through the ``data-`` attributes they emit."""

import csv
import io
import json
import math
import stat
from html.parser import HTMLParser
from typing import Dict, List, Optional

import httpx
import pytest

from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.support.servers import populate_family, sample_result


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, in document order."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: List[tuple] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag

    def having(self, tag: str, attr: str, cls: Optional[str] = None) -> List[Dict[str, str]]:
        return [a for t, a in self.tags if t == tag and attr in a
                and (cls is None or cls in (a.get("class") or "").split())]

    def value_of(self, name: str) -> str:
        return next(a["value"] for t, a in self.tags if t == "input" and a.get("name") == name)


def rows(html: str) -> List[Dict[str, str]]:
    return Tags(html).having("tr", "data-result-id")


def sign_in(farm, token: str, next_page: str = "/") -> httpx.Client:
    client = farm.client()
    nonce = Tags(client.get("/login").text).value_of("csrf")
    response = client.post("/login", data={"token": token, "csrf": nonce, "next": next_page})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == next_page
    return client


@pytest.fixture
def family(farm, tmp_path):
    """A base model and two variants of family 'net', each run on two devices."""
    data = populate_family(farm, tmp_path)
    models, pc, pi = data["models"], data["pc"], data["pi"]
    user = sign_in(farm, farm.user_token)
    yield {"models": models, "pc": pc, "pi": pi, "user": user}
    user.close()


PAGES = ["/", "/devices", "/jobs", "/results", "/results?platform=rpi3", "/compare",
         "/compare/net", "/results.csv", "/results.json"]


def test_pages_need_a_session(farm, family):
    first = farm.user.get("/api/v1/results").json()[0]["id"]
    with farm.client() as anonymous:
        for path in PAGES + [f"/results/{first}"]:
            response = anonymous.get(path)
            assert response.status_code == 401, path
            assert "You need to sign in" in response.text
            assert 'href="/login?next=' in response.text and response.headers["content-type"].startswith("text/html")
    for path in PAGES + [f"/results/{first}"]:
        response = family["user"].get(path)
        assert response.status_code == 200, (path, response.text[:300])
    page = family["user"].get("/results")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text.replace(farm.url, "") and "https://" not in page.text
    assert family["user"].get("/results/99999").status_code == 404
    assert family["user"].get("/compare/no-such-family").status_code == 404


def test_session_cookie_is_signed_httponly_strict_and_ends(farm, family):
    client = farm.client()
    client.get("/login")
    bad = client.post("/login", data={"token": farm.user_token, "csrf": "forged", "next": "/"})
    assert bad.status_code == 403 and "expired" in bad.text and "edgefarm_session" not in client.cookies
    nonce = Tags(bad.text).value_of("csrf")  # the refused form carries a fresh nonce
    response = client.post("/login", data={"token": farm.admin_token, "csrf": nonce, "next": "//evil.example/"})
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("edgefarm_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    value = client.cookies["edgefarm_session"]
    assert farm.admin_token.split("_", 2)[2] not in value
    assert client.get("/devices").status_code == 200
    key = farm.server.data_dir / "secret_key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with farm.client() as forger:  # a changed signature is no session
        forger.cookies.set("edgefarm_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
        assert forger.get("/devices").status_code == 401
    out = client.get("/logout")
    assert out.status_code == 303 and "edgefarm_session" not in client.cookies
    assert client.get("/devices").status_code == 401
    # revoking the token ends its sessions at once
    user = family["user"]
    token_id = int(farm.user_token.split("_")[1])
    assert user.get("/results").status_code == 200
    assert farm.admin.delete(f"/api/v1/tokens/{token_id}").status_code == 200
    assert user.get("/results").status_code == 401
    client.close()


def test_agent_and_enrollment_tokens_cannot_sign_in(farm, family):
    enroll = farm.admin.post("/api/v1/tokens", json={"role": "enroll"}).json()["token"]
    for token, word in ((family["pc"].token, "agent token"), (enroll, "enrollment token")):
        with farm.client() as client:
            nonce = Tags(client.get("/login").text).value_of("csrf")
            response = client.post("/login", data={"token": token, "csrf": nonce, "next": "/"})
            assert response.status_code == 403 and word in response.text
            assert "edgefarm_session" not in client.cookies
    with farm.client() as client:
        nonce = Tags(client.get("/login").text).value_of("csrf")
        response = client.post("/login", data={"token": "ef_1_nonsense", "csrf": nonce, "next": "/"})
        assert response.status_code == 401 and "unknown, revoked or malformed" in response.text
    with farm.client(family["pc"].token) as agent:  # a bearer header is checked the same way
        response = agent.get("/results")
        assert response.status_code == 403 and "agent token" in response.text
    assert farm.user.get("/results").status_code == 200  # a user's bearer token reads pages


def test_results_filters_sorting_and_exports(farm, family):
    user = family["user"]
    everything = rows(user.get("/results").text)
    assert len(everything) == 6
    rpi = rows(user.get("/results", params={"platform": "rpi3"}).text)
    assert len(rpi) == 3 and {r["data-platform"] for r in rpi} == {"rpi3"}
    int8 = rows(user.get("/results", params={"variant": "int8"}).text)
    assert {r["data-model"] for r in int8} == {"net-int8"}
    one = rows(user.get("/results", params={"model": "net-pruned", "device": "pc-1"}).text)
    assert len(one) == 1 and float(one[0]["data-p50"]) == 12.0
    assert rows(user.get("/results", params={"task": "segmentation"}).text) == []
    up = rows(user.get("/results", params={"sort": "p50", "order": "asc"}).text)
    assert [float(r["data-p50"]) for r in up] == [5.0, 10.0, 12.0, 40.0, 50.0, 100.0]
    down = rows(user.get("/results", params={"sort": "p50", "order": "desc"}).text)
    assert [r["data-result-id"] for r in down] == [r["data-result-id"] for r in reversed(up)]
    best = rows(user.get("/results", params={"sort": "accuracy", "order": "desc", "platform": "pc"}).text)
    assert [r["data-model"] for r in best] == ["net-fp32", "net-int8", "net-pruned"]
    page = user.get("/results", params={"platform": "rpi3", "sort": "p50", "order": "desc"}).text
    tags = Tags(page)
    header = next(a for a in tags.having("a", "data-sort") if a["data-sort"] == "p50")
    assert "order=asc" in header["href"] and "platform=rpi3" in header["href"]
    shown = [r["data-result-id"] for r in rows(page)]
    csv_href = next(a["href"] for a in tags.having("a", "id") if a["id"] == "download-csv")
    json_href = next(a["href"] for a in tags.having("a", "id") if a["id"] == "download-json")
    exported = list(csv.DictReader(io.StringIO(user.get(csv_href).text)))
    assert [r["id"] for r in exported] == shown and {r["platform"] for r in exported} == {"rpi3"}
    assert [str(r["id"]) for r in json.loads(user.get(json_href).text)] == shown
    assert user.get(csv_href).headers["content-type"].startswith("text/csv")


def test_cancel_needs_the_sessions_csrf_token(farm, family):
    job = farm.submit(models=[str(family["models"][0]["id"])], devices=f"id={family['pc'].device_id}")
    user = family["user"]
    page = user.get("/jobs").text
    tags = Tags(page)
    card = next(a for a in tags.having("section", "data-job-id") if a["data-job-id"] == str(job["id"]))
    assert card["data-state"] == "queued"
    assert any(a.get("data-count-queued") == "1" for _, a in tags.tags)
    runs = {a["data-run-id"]: a["data-state"] for a in tags.having("tr", "data-run-id")}
    assert runs[str(job["runs"][0]["id"])] == "queued" and list(runs.values()).count("succeeded") == 6
    csrf = tags.value_of("csrf")
    url = f"/jobs/{job['id']}/cancel"
    assert user.post(url, data={}).status_code == 403
    assert user.post(url, data={"csrf": "forged"}).status_code == 403
    other = sign_in(farm, farm.admin_token)
    other_csrf = Tags(other.get("/jobs").text).value_of("csrf")
    assert other_csrf != csrf
    refused = user.post(url, data={"csrf": other_csrf})
    assert refused.status_code == 403 and "CSRF" in refused.text
    with farm.client(farm.user_token) as bearer:  # a bearer header alone cannot post the form
        assert bearer.post(url, data={"csrf": csrf}).status_code == 403
    assert farm.user.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "queued"
    done = user.post(url, data={"csrf": csrf, "reason": "wrong model"})
    assert done.status_code == 303 and done.headers["location"] == f"/jobs?cancelled={job['id']}"
    body = farm.user.get(f"/api/v1/jobs/{job['id']}").json()
    assert body["state"] == "cancelled" and body["cancel_reason"] == "wrong model"
    again = user.post(url, data={"csrf": csrf})
    assert again.status_code == 409 and "already ended" in again.text
    other.close()


def test_compare_page_matrix_and_charts(farm, family):
    page = family["user"].get("/compare/net").text
    tags = Tags(page)
    charts = tags.having("svg", "data-device")
    assert sorted(c["data-device"] for c in charts) == ["pc-1", "pi-1"]
    points = tags.having("circle", "data-model", cls="point")
    assert len(points) == 6
    for device in ("pc-1", "pi-1"):
        chart = next(c for c in charts if c["data-device"] == device)
        assert chart["data-points"] == "3"
    assert len(tags.having("polyline", "points", cls="pareto")) == 2
    # three latency samples per result and no per-sample correctness: no difference is
    # significant, so no variant is dominated (the rule: tests/integration/test_significance.py)
    pc_front = {p["data-model"]: p["data-pareto"] for p in points[:3]}
    assert pc_front == {"net-fp32": "true", "net-int8": "true", "net-pruned": "true"}
    verdicts = tags.having("span", "data-verdict-latency", cls="verdict")
    assert {v["data-verdict-latency"] for v in verdicts} == {"no significant difference"}
    assert {v["data-verdict-accuracy"] for v in tags.having("span", "data-verdict-accuracy")} == {
        "not testable"}
    cells = {(row, a["data-device"]): a for row, a in _matrix_cells(tags)}
    int8_pc = cells[("net-int8", "pc-1")]
    assert float(int8_pc["data-latency-ratio"]) == pytest.approx(0.5)
    assert float(int8_pc["data-delta-accuracy"]) == pytest.approx(-0.02)
    assert "\u22122.0 pp" in page and "×0.50" in page


def _matrix_cells(tags: Tags):
    row = None
    for tag, attrs in tags.tags:
        if tag == "tr" and "data-model" in attrs:
            row = attrs["data-model"]
        elif tag == "td" and "data-latency-ratio" in attrs:
            yield row, attrs


def test_result_page_histogram_and_provenance(farm, tmp_path):
    path = tmp_path / "seg.tflite"
    path.write_bytes(tiny_tflite(seed=7))
    model = farm.push_model(path, name="seg-int8", family="seg", task="segmentation",
                            variant={"quantization": "int8"})
    dataset_sha = "ab" * 32
    assert farm.user.post("/api/v1/datasets/register", json={
        "name": "voc-val", "layout": "voc-seg", "path": "/data/voc", "sha256": dataset_sha,
        "sample_count": 10}).status_code == 201
    agent = farm.enroll("rpi-1", platform="rpi3")
    farm.submit(models=[str(model["id"])], dataset="voc-val", devices="all")
    samples = [100 + (i * 37 % 50) * 0.4 for i in range(120)]
    result = sample_result(p50=110.0, miou=0.5743, size=964_200)
    result["latency_ms"].update(count=len(samples), samples=samples, min=min(samples), max=max(samples))
    result["metrics"]["per_class_iou"] = {"background": 0.91, "aeroplane": 0.62, "bicycle": None}
    result["environment"] = {"governor": "ondemand", "temp_c_before": 51.5, "temp_c_after": 63.2,
                             "throttled": True, "freq_khz_before": [1200000], "freq_khz_after": [600000]}
    lease = agent.lease()
    assert agent.report(lease, result=result).status_code == 200
    user = sign_in(farm, farm.user_token)
    result_id = farm.user.get("/api/v1/results").json()[0]["id"]
    page = user.get(f"/results/{result_id}").text
    tags = Tags(page)
    svg = tags.having("svg", "data-bins")[0]
    bins = int(svg["data-bins"])
    assert bins == math.ceil(math.sqrt(len(samples))) == 11
    bars = tags.having("rect", "data-count", cls="bar")
    assert len(bars) == bins and sum(int(b["data-count"]) for b in bars) == len(samples)
    assert model["sha256"] in page and dataset_sha in page
    assert {a["data-class"] for a in tags.having("tr", "data-class")} == {"background", "aeroplane", "bicycle"}
    assert "ondemand" in page and "63.2 °C" in page and "throttled" in page and "600 MHz" in page
    assert "2.3.0" in page and "0.1.0" in page  # runtime and agent version
    stats = {a["data-stat"] for a in tags.having("tr", "data-stat")}
    assert stats >= {"count", "mean", "std", "min", "p50", "p90", "p99", "max", "init", "first"}
    user.close()


def test_devices_and_jobs_pages(farm, family):
    user = family["user"]
    farm.admin.patch(f"/api/v1/devices/{family['pi'].device_id}", json={"draining": True})
    page = user.get("/devices").text
    devices = {a["data-device"]: a["data-status"] for a in Tags(page).having("tr", "data-status")}
    assert devices == {"pc-1": "online", "pi-1": "draining"}
    assert "tflite" in page and "lab2" in page and "x86_64" in page
    job = farm.submit(models=[str(family["models"][1]["id"])], devices=f"id={family['pc'].device_id}")
    lease = family["pc"].lease()
    assert family["pc"].heartbeat(lease, state="running", progress={"phase": "latency"}).status_code == 200
    assert 'data-status="busy"' in user.get("/devices").text
    assert f'href="/jobs#run-{lease["run_id"]}"' in user.get("/devices").text
    tags = Tags(user.get("/jobs").text)
    card = next(a for a in tags.having("section", "data-job-id") if a["data-job-id"] == str(job["id"]))
    assert card["data-state"] == "running"
    runs = {a["data-run-id"]: a["data-state"] for a in tags.having("tr", "data-run-id")}
    assert runs[str(lease["run_id"])] == "running"
    assert any(a.get("data-count-running") == "1" for _, a in tags.tags)


def test_result_page_shows_output_agreement(farm, tmp_path):
    from edgefarm.shared.formats.tflite_builder import tiny_tflite
    from tests.support.servers import sample_result

    path = tmp_path / "m.tflite"
    path.write_bytes(tiny_tflite())
    model = farm.push_model(path, name="m")
    agent = farm.enroll("pc")
    farm.submit(models=[model["id"]], devices="all")
    lease = agent.lease()
    result = sample_result(top1=0.9)
    result["agreement"] = {"reference": {"runtime": "tflite", "accelerator": "cpu"}, "sample_count": 20,
                           "psnr_db": 60.2, "top1_agreement": 0.95,
                           "outputs": {"probabilities": {"max_abs_error": 0.0159, "mean_abs_error": 0.001,
                                                         "psnr_db": 60.2}}}
    posted = agent.report(lease, result=result).json()
    page = farm.user.get(f"/results/{posted['result_id']}")
    assert page.status_code == 200
    assert "Output agreement" in page.text and "PSNR 60.2 dB" in page.text
    assert 'data-agreement="top1"' in page.text
