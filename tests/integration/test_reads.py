"""Reads with more results than any page or internal limit, over real HTTP on
SQLite and PostgreSQL: the comparison (API and page) and the dashboard's
results page show the newest results; every list comes a bounded page at a
time with ``X-Total-Count`` and a ``Link: rel="next"``; the job list holds
summaries, not runs; the SDK and the CLI page through to read everything."""

import csv
import io
import re

import pytest
from sqlalchemy import create_engine, text

from edgefarm.shared.client import FarmClient
from edgefarm.shared.contract.schemas import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from tests.support.bulk_results import fill_results
from tests.support.servers import populate_family

#: more results than the 10,000 the comparison used to read and the 5,000 the results page did
MANY = 10_050


@pytest.fixture
def family(farm, tmp_path):
    return populate_family(farm, tmp_path)


def newest_per_pair(database_url):
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT model_id, device_id, max(id) FROM results "
                                     "GROUP BY model_id, device_id")).all()
        return {(m, d): i for m, d, i in rows}
    finally:
        engine.dispose()


def page_ids(html):
    return [int(i) for i in re.findall(r'data-result-id="(\d+)"', html)]


def test_compare_and_the_results_page_show_the_newest(farm, family, database_url):
    added = fill_results(database_url, MANY)
    assert len(added) == MANY
    newest = newest_per_pair(database_url)
    assert len(newest) == 6 and min(newest.values()) > 10_000

    body = farm.user.get("/api/v1/results/compare", params={"family": "net"}).json()
    assert {(c["model_id"], c["device_id"]): c["result_id"] for c in body["cells"]} == newest
    rpi = farm.user.get("/api/v1/results/compare", params={"family": "net", "platform": "rpi3"}).json()
    pi = family["pi"].device_id
    assert {c["result_id"] for c in rpi["cells"]} == {i for (m, d), i in newest.items() if d == pi}
    page = farm.user.get("/compare/net").text
    for result_id in newest.values():
        assert f'href="/results/{result_id}"' in page
    overview = farm.user.get("/compare").text
    assert re.search(rf"\b{MANY + 6}\b", overview)  # the family's result count

    top = farm.user.get("/results")
    shown = page_ids(top.text)
    assert shown == sorted(added, reverse=True)[:50]
    assert f'data-total="{MANY + 6}"' in top.text
    assert "<option>tflite</option>" in top.text  # the runtime filter's choices, walked on an index
    older = re.search(r'href="/results(\?[^"]*)" rel="next"', top.text).group(1)
    assert older == f"?before={shown[-1]}" and 'rel="prev"' not in top.text
    second = farm.user.get("/results" + older.replace("&amp;", "&")).text
    assert page_ids(second) == sorted(added, reverse=True)[50:100]
    back = re.search(r'href="/results(\?[^"]*)" rel="prev"', second).group(1)
    assert page_ids(farm.user.get("/results" + back).text) == shown
    exported = list(csv.DictReader(io.StringIO(farm.user.get("/results.csv" + older).text)))
    assert [int(r["id"]) for r in exported] == page_ids(second)

    api = farm.user.get("/api/v1/results", params={"order": "desc", "limit": 3})
    assert [r["id"] for r in api.json()] == sorted(added, reverse=True)[:3]
    assert api.headers["x-total-count"] == str(MANY + 6)


def test_lists_come_a_bounded_page_at_a_time(farm, family):
    user = farm.user
    first = user.get("/api/v1/results", params={"limit": 4})
    assert len(first.json()) == 4 and first.headers["x-total-count"] == "6"
    link = re.fullmatch(r'<(/api/v1/results\?[^>]+)>; rel="next"', first.headers["link"]).group(1)
    assert f"after={first.json()[-1]['id']}" in link and "limit=4" in link
    rest = user.get(link)
    assert [r["id"] for r in first.json() + rest.json()] == [r["id"] for r in user.get("/api/v1/results").json()]
    assert "link" not in rest.headers
    assert user.get("/api/v1/results", params={"limit": MAX_PAGE_SIZE + 1}).status_code == 422
    assert user.get("/api/v1/jobs", params={"limit": MAX_PAGE_SIZE + 1}).status_code == 422

    for path in ("/api/v1/models", "/api/v1/devices"):
        page = user.get(path, params={"limit": 1})
        assert len(page.json()) == 1 and int(page.headers["x-total-count"]) >= 2, path
        assert page.headers["link"].startswith(f"<{path}?") and "offset=1" in page.headers["link"]
    assert user.get("/api/v1/datasets").headers["x-total-count"] == "0"

    job_id = family["job"]["id"]
    listed = user.get("/api/v1/jobs").json()
    summary = next(j for j in listed if j["id"] == job_id)
    assert summary["runs"] == [] and summary["counts"] == {"succeeded": 6}
    assert len(user.get(f"/api/v1/jobs/{job_id}").json()["runs"]) == 6
    runs = user.get(f"/api/v1/jobs/{job_id}/runs", params={"limit": 5})
    assert len(runs.json()) == 5 and runs.headers["x-total-count"] == "6"
    assert {r["state"] for r in runs.json()} == {"succeeded"} and all(r["result_id"] for r in runs.json())
    assert len(user.get(runs.headers["link"][1:].split(">")[0]).json()) == 1
    assert user.get("/api/v1/jobs/99999/runs").status_code == 404


def test_the_sdk_reads_every_page(farm, family, database_url):
    added = fill_results(database_url, 2 * MAX_PAGE_SIZE + 7, runs_per_job=400)
    with FarmClient(farm.url, farm.user_token) as client:
        everything = client.list_results({})
        assert [r.id for r in everything] == sorted(r.id for r in everything)
        assert len({r.id for r in everything}) == len(added) + 6
        rows = list(csv.DictReader(io.StringIO(client.results_csv({"platform": "rpi3"}))))
        assert len(rows) == (len(added) + 6) // 2 and {r["platform"] for r in rows} == {"rpi3"}
        jobs = client.list_jobs()
        assert len(jobs) == 1 + 3 and all(j.runs == [] for j in jobs)
        assert len(client.list_jobs(limit=2)) == 2
        assert len(client.list_models()) == 3
    assert DEFAULT_PAGE_SIZE < len(added)
