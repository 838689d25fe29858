"""The dashboard in a real browser: Debian's ``chromium``, headless, driven by
Playwright's Python package (never ``playwright install``) against a real farm
(uvicorn on SQLite) holding study-like results (``study_data``).

It signs in through the form, filters and sorts the results table, downloads
the CSV with the session cookie, counts one chart point per variant on the
compare page, follows a point to its result page, watches the jobs page
refresh itself and cancels a job through its form. Screenshots go to
``docs/screenshots/`` (the README shows them). Every request any page makes
is recorded: all must go to the server's own host and port.

Skipped when ``/usr/bin/chromium`` or the playwright package is missing,
except when ``CI`` is set: then the test fails instead.
"""

import csv
import importlib.util
import io
import os
from pathlib import Path
from typing import List
from urllib.parse import urlsplit

import pytest

from tests.browser.study_data import load_study_results
from tests.servers import PROJECT
from tests.tflite_builder import tiny_tflite

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = PROJECT / "docs" / "screenshots"

# The PostgreSQL variant adds nothing a browser could see: test_dashboard.py covers both databases.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture
def browser(tmp_path):
    """A fresh headless chromium profile; yields (context, list of requested URLs)."""
    missing = [what for what, ok in (
        (f"{CHROMIUM} (apt-get install chromium)", CHROMIUM.exists()),
        ("the playwright package (pip install playwright)", importlib.util.find_spec("playwright") is not None),
    ) if not ok]
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if _in_ci():
            pytest.fail(message + " when CI is set", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    requests: List[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1360, "height": 900}, accept_downloads=True,
        )
        context.on("request", lambda request: requests.append(request.url))
        try:
            yield context, requests
        finally:
            context.close()


def only_own_host(requests: List[str], url: str) -> None:
    """No page makes a request to any host other than the server itself."""
    own = urlsplit(url).netloc
    assert requests, "no request was recorded"
    strangers = [r for r in requests if urlsplit(r).netloc != own or urlsplit(r).scheme != "http"]
    assert strangers == []


def sign_in_through_the_form(page, farm, path: str) -> None:
    response = page.goto(farm.url + path)
    assert response.status == 401 and page.get_by_text("You need to sign in").is_visible()
    page.get_by_role("link", name="Sign in").click()
    page.wait_for_url("**/login?next=*")
    page.fill("#token", farm.user_token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(farm.url + path)


def shown_rows(page) -> List[dict]:
    return page.eval_on_selector_all(
        "tr[data-result-id]", "rows => rows.map(r => Object.assign({}, r.dataset))")


def test_results_compare_and_result_pages(farm, browser, tmp_path):
    load_study_results(farm, tmp_path / "models")
    context, requests = browser
    page = context.new_page()
    sign_in_through_the_form(page, farm, "/results")
    rows = shown_rows(page)
    assert len(rows) == 18 and {r["platform"] for r in rows} == {"pc", "rpi3", "rb5"}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "results.png"), full_page=True)
    filter_sort_and_download(page)
    compare_deeplab(page)
    follow_a_point_to_its_result(page, farm)
    page.get_by_role("link", name="Sign out").click()
    page.wait_for_url("**/login?signed_out=1")
    assert page.goto(farm.url + "/results").status == 401
    only_own_host(requests, farm.url)
    assert any(r.endswith("/static/style.css") for r in requests)


def filter_sort_and_download(page) -> None:
    """The filter form, a column header clicked twice, and the CSV of exactly those rows."""
    page.select_option("select[name=platform]", "rpi3")
    page.select_option("select[name=family]", "deeplabv3")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**platform=rpi3**")
    rows = shown_rows(page)
    assert len(rows) == 4 and {r["platform"] for r in rows} == {"rpi3"}
    page.click("a[data-sort=p50]")
    page.wait_for_url("**sort=p50&order=asc**")
    fastest_first = [float(r["p50"]) for r in shown_rows(page)]
    assert fastest_first == sorted(fastest_first) and len(fastest_first) == 4
    page.click("a[data-sort=p50]")
    page.wait_for_url("**order=desc**")
    shown = [r["resultId"] for r in shown_rows(page)]
    assert [float(r["p50"]) for r in shown_rows(page)] == sorted(fastest_first, reverse=True)
    with page.expect_download() as download:
        page.click("#download-csv")
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r["id"] for r in exported] == shown and {r["platform"] for r in exported} == {"rpi3"}


def compare_deeplab(page) -> None:
    """One chart per device, exactly one point per variant, a Pareto polyline in each."""
    page.get_by_role("link", name="Compare", exact=True).click()
    page.get_by_role("link", name="deeplabv3", exact=True).click()
    page.wait_for_url("**/compare/deeplabv3")
    charts = page.locator("svg.scatter")
    assert charts.count() == 3
    for i in range(3):
        points = charts.nth(i).locator("circle.point")
        assert points.count() == 4
        names = {points.nth(j).get_attribute("data-model") for j in range(4)}
        assert names == {"deeplabv3-fp32", "deeplabv3-fp16", "deeplabv3-dynamic", "deeplabv3-int8"}
        assert charts.nth(i).locator("polyline.pareto").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "compare.png"), full_page=True)


def follow_a_point_to_its_result(page, farm) -> None:
    page.click("svg[data-device='rpi3-a'] circle.point[data-model='deeplabv3-int8']")
    page.wait_for_url("**/results/*")
    assert "deeplabv3-int8" in page.locator("h1").inner_text()
    bins = int(page.get_attribute("svg.histogram", "data-bins"))
    assert page.locator("svg.histogram rect.bar").count() == bins > 1
    assert page.locator("[data-sha=model]").inner_text().strip() == load_sha(farm, "deeplabv3-int8")
    page.screenshot(path=str(SCREENSHOTS / "result.png"), full_page=True)


def load_sha(farm, name: str) -> str:
    return next(m["sha256"] for m in farm.user.get("/api/v1/models").json() if m["name"] == name)


def test_jobs_page_refreshes_itself_and_cancels(farm, browser, tmp_path):
    path = tmp_path / "tiny.tflite"
    path.write_bytes(tiny_tflite())
    model = farm.push_model(path, name="tiny", family="tiny", task="classification")
    agent = farm.enrol("pc-1")
    watched = farm.submit(models=[str(model["id"])], devices="all")
    doomed = farm.submit(models=[str(model["id"])], devices="all")
    context, requests = browser
    page = context.new_page()
    sign_in_through_the_form(page, farm, "/jobs")
    run_id = watched["runs"][0]["id"]
    assert page.get_attribute(f"tr[data-run-id='{run_id}']", "data-state") == "queued"
    page.evaluate("window.__notReloaded = true")

    lease = agent.lease()
    assert lease["run_id"] == run_id
    agent.heartbeat(lease, state="running", progress={"phase": "latency"})
    page.wait_for_selector(f"tr[data-run-id='{run_id}'][data-state='running']", timeout=20_000)
    assert agent.report(lease).status_code == 200
    page.wait_for_selector(f"section[data-job-id='{watched['id']}'][data-state='succeeded']", timeout=20_000)
    assert page.evaluate("window.__notReloaded") is True  # refreshed in place, not reloaded

    page.on("dialog", lambda dialog: dialog.accept())
    page.locator(f"section[data-job-id='{doomed['id']}']").get_by_role("button", name="Cancel job").click()
    page.wait_for_url(f"**/jobs?cancelled={doomed['id']}")
    assert page.get_attribute(f"section[data-job-id='{doomed['id']}']", "data-state") == "cancelled"
    assert farm.user.get(f"/api/v1/jobs/{doomed['id']}").json()["state"] == "cancelled"
    only_own_host(requests, farm.url)
