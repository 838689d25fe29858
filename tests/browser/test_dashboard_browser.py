"""The dashboard in a real browser: Debian's ``chromium``, headless, driven by
Playwright's Python package (never ``playwright install``) against a real farm
(uvicorn on SQLite).

The results, compare and result pages show measured results: the demo's digits
classifiers (``edgefarm.tools.digits``: fp32, pruned-0.5, pruned-0.8) and the digits test
split are pushed as ``server/demo.py`` pushes them, and two real
``edgefarm-agent`` processes on this machine (devices "pc-a" and "pc-b") run
one job over every variant. The test signs in through the form, filters and
sorts the results table, downloads the CSV with the session cookie, counts one
chart point per variant on the compare page and checks its Pareto front,
follows a point to its result page, then watches the jobs page refresh itself
and cancels a job through its form (that test drives run states with a fake
agent over HTTP and checks no figure). Screenshots go to ``docs/screenshots/``
(the README shows them). Every request any page makes is recorded: all must go
to the server's own host and port.

Skipped when ``/usr/bin/chromium`` or the playwright package is missing,
except when ``CI`` is set: then the test fails instead.
"""

import csv
import importlib.util
import io
import os
from pathlib import Path
from typing import Dict, List
from urllib.parse import urlsplit

import pytest

from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.support.agents import AgentProcess, wait_job
from tests.support.servers import PROJECT

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


FAMILY = "digits-mlp"
VARIANTS = ("digits-mlp-fp32", "digits-mlp-pruned-0.5", "digits-mlp-pruned-0.8")
DEVICES = ("pc-a", "pc-b")  # two agent processes on this machine, not two boards
SETTINGS = {"runtime": "tflite", "threads": 1, "measured_runs": 30, "min_seconds": 0.3}


@pytest.fixture
def measured(farm, tmp_path):
    """The digits variants and test split pushed, two real agents, one job run to the end.

    Returns the models, the dataset, the job, the results (by id) and the
    in-process accuracy of each variant."""
    from edgefarm.cli.demo_farm import push_dataset, push_digits
    from edgefarm.shared.client import FarmClient
    from edgefarm.shared.datasets import pack_directory
    from edgefarm.tools.digits import write_imagefolder, write_variants

    files = tmp_path / "digits"
    variants = write_variants(files / "models")
    write_imagefolder(files / "digits-test")
    pack_directory(files / "digits-test", files / "digits-test.tar")
    with FarmClient(farm.url, farm.user_token) as user:
        models = [m.model_dump(mode="json") for m in push_digits(user, variants)]
        dataset = push_dataset(user, files / "digits-test.tar").model_dump(mode="json")
    assert [m["name"] for m in models] == list(VARIANTS)
    agents = [AgentProcess(farm, tmp_path / name, name=name, labels=["local"]) for name in DEVICES]
    try:
        for agent in agents:
            agent.start()
        job = farm.submit(name="browser test: digits-mlp variants", models=[m["id"] for m in models],
                          dataset=dataset["id"], task="classification", devices="all", settings=SETTINGS)
        job = wait_job(farm, job["id"], timeout=300)
        assert job["state"] == "succeeded", (job, *(agent.log() for agent in agents))
    finally:
        for agent in agents:
            agent.stop()
    results = farm.user.get("/api/v1/results", params={"job": job["id"]}).json()
    return {"models": models, "dataset": dataset, "job": job,
            "results": {str(r["id"]): r for r in results},
            "accuracy": {v["name"]: v["accuracy_in_process"] for v in variants}}


def test_results_compare_and_result_pages(browser, farm, measured):
    results = measured["results"]
    assert sorted((r["model_name"], r["device_name"]) for r in results.values()) == sorted(
        (model, device) for model in VARIANTS for device in DEVICES)
    for r in results.values():  # the agents' evaluation reproduces the accuracy computed at training
        assert r["metrics"]["top1"] == pytest.approx(measured["accuracy"][r["model_name"]], abs=1e-9)
        assert r["latency_ms"]["count"] >= SETTINGS["measured_runs"]
    context, requests = browser
    page = context.new_page()
    sign_in_through_the_form(page, farm, "/results")
    rows = shown_rows(page)
    assert sorted((r["model"], r["device"]) for r in rows) == sorted(
        (model, device) for model in VARIANTS for device in DEVICES)
    for row in rows:  # the table shows what the agents reported
        result = results[row["resultId"]]
        assert float(row["p50"]) == pytest.approx(result["latency_ms"]["p50"])
        assert float(row["accuracy"]) == pytest.approx(result["metrics"]["top1"])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "results.png"), full_page=True)
    filter_sort_and_download(page)
    compare_digits(page, results, farm)
    follow_a_point_to_its_result(page, measured)
    page.get_by_role("link", name="Sign out").click()
    page.wait_for_url("**/login?signed_out=1")
    assert page.goto(farm.url + "/results").status == 401
    only_own_host(requests, farm.url)
    assert any(r.endswith("/static/style.css") for r in requests)


def filter_sort_and_download(page) -> None:
    """The filter form, a column header clicked twice, and the CSV of exactly those rows."""
    page.select_option("select[name=device]", "pc-b")
    page.select_option("select[name=family]", FAMILY)
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**device=pc-b**")
    rows = shown_rows(page)
    assert len(rows) == len(VARIANTS) and {r["device"] for r in rows} == {"pc-b"}
    assert {r["model"] for r in rows} == set(VARIANTS)
    page.click("a[data-sort=p50]")
    page.wait_for_url("**sort=p50&order=asc**")
    fastest_first = [float(r["p50"]) for r in shown_rows(page)]
    assert fastest_first == sorted(fastest_first) and len(fastest_first) == len(VARIANTS)
    page.click("a[data-sort=p50]")
    page.wait_for_url("**order=desc**")
    shown = [r["resultId"] for r in shown_rows(page)]
    assert [float(r["p50"]) for r in shown_rows(page)] == sorted(fastest_first, reverse=True)
    with page.expect_download() as download:
        page.click("#download-csv")
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r["id"] for r in exported] == shown
    page.select_option("select[name=model]", "digits-mlp-fp32")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**model=digits-mlp-fp32**")
    rows = shown_rows(page)
    assert [(r["model"], r["device"]) for r in rows] == [("digits-mlp-fp32", "pc-b")]


def compare_digits(page, results: Dict[str, dict], farm) -> None:
    """One chart per device, exactly one point per variant, the Pareto front (by significance,
    as the compare API computes it) marked and joined, error bars from the intervals, labels
    beside their own points without overlaps, chart text at the page's size."""
    page.get_by_role("link", name="Compare", exact=True).click()
    page.get_by_role("link", name=FAMILY, exact=True).click()
    page.wait_for_url(f"**/compare/{FAMILY}")
    compared = farm.user.get("/api/v1/results/compare", params={"family": FAMILY}).json()
    by_result = {str(c["result_id"]): c for c in compared["cells"]}
    charts = page.locator("svg.scatter")
    assert sorted(charts.nth(i).get_attribute("data-device") for i in range(charts.count())) == list(DEVICES)
    for device in DEVICES:
        chart = page.locator(f"svg.scatter[data-device='{device}']")
        points = chart.locator("circle.point")
        assert points.count() == len(VARIANTS)
        shown = {points.nth(j).get_attribute("data-model"): points.nth(j) for j in range(len(VARIANTS))}
        assert set(shown) == set(VARIANTS)
        mine = {r["model_name"]: by_result[rid] for rid, r in results.items() if r["device_name"] == device}
        front = {name for name, cell in mine.items() if cell["pareto"]}
        assert {name for name, point in shown.items() if point.get_attribute("data-pareto") == "true"} == front
        for name, cell in mine.items():  # every point's latency interval drawn as an error bar
            bar = chart.locator(f"line.error-bar[data-model='{name}'][data-axis='x']")
            assert bar.count() == 1 and cell["p50_interval"]["low"] <= cell["p50_ms"] <= cell["p50_interval"]["high"]
            x1, x2 = float(bar.get_attribute("x1")), float(bar.get_attribute("x2"))
            assert x1 <= float(shown[name].get_attribute("cx")) <= x2
        # The front is joined by a polyline through its points in latency order, once it has two.
        polyline = chart.locator("polyline.pareto")
        assert polyline.count() == (1 if len(front) > 1 else 0)
        if len(front) > 1:
            measured = {name: (mine[name]["accuracy"], mine[name]["p50_ms"]) for name in front}
            ordered = sorted(front, key=lambda name: (measured[name][1], -measured[name][0]))
            through = [f"{shown[name].get_attribute('cx')},{shown[name].get_attribute('cy')}"
                       for name in ordered]
            assert polyline.get_attribute("points").split() == through
        chart_geometry_is_honest(page, device)
    verdicts = page.locator("[data-verdict-latency]")
    assert verdicts.count() == len(DEVICES) * (len(VARIANTS) - 1)
    assert {verdicts.nth(i).inner_text() for i in range(verdicts.count())} <= {
        "faster", "slower", "no significant difference", "not testable"}
    page.screenshot(path=str(SCREENSHOTS / "compare.png"), full_page=True)
    page.set_viewport_size({"width": 1900, "height": 900})  # wider: the text must not grow
    chart_geometry_is_honest(page, DEVICES[0])
    page.set_viewport_size({"width": 1360, "height": 900})


GEOMETRY = """svg => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const labels = [...svg.querySelectorAll('text.point-label')].map(t => ({
    model: t.dataset.model, box: box(t), size: parseFloat(getComputedStyle(t).fontSize)}));
  const points = [...svg.querySelectorAll('circle.point')].map(c => {
    const r = c.getBoundingClientRect();
    return {model: c.dataset.model, x: (r.left + r.right) / 2, y: (r.top + r.bottom) / 2}; });
  const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  const tick = svg.querySelector('text.tick');
  return {labels, points, scale, tick: parseFloat(getComputedStyle(tick).fontSize),
          body: parseFloat(getComputedStyle(document.body).fontSize)};
}"""


def chart_geometry_is_honest(page, device: str) -> None:
    """Measured in the browser: each label within reach of its own point (nearer to it than to
    any other point's centre, or joined by a leader line), no two labels overlapping, and the
    chart text rendered within 15% of the body text size."""
    chart = page.locator(f"svg.scatter[data-device='{device}']")
    g = chart.evaluate(GEOMETRY)
    points = {p["model"]: p for p in g["points"]}
    leaders = chart.locator("line.leader").count()
    boxes = [label["box"] for label in g["labels"]]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] - 1 and b[0] < a[2] - 1 and a[1] < b[3] - 1 and b[1] < a[3] - 1), (a, b)

    def gap(point, rect):
        dx = max(rect[0] - point["x"], 0, point["x"] - rect[2])
        dy = max(rect[1] - point["y"], 0, point["y"] - rect[3])
        return (dx * dx + dy * dy) ** 0.5

    for label in g["labels"]:
        own = gap(points[label["model"]], label["box"])
        assert own <= 130 * g["scale"]
        if leaders == 0:
            assert own <= 16, (label, own)  # right beside its point
    for size in [g["tick"]] + [label["size"] for label in g["labels"]]:
        rendered = size * g["scale"]
        assert abs(rendered - g["body"]) <= 0.15 * g["body"], (rendered, g["body"])


def follow_a_point_to_its_result(page, measured: dict) -> None:
    page.click("svg[data-device='pc-b'] circle.point[data-model='digits-mlp-pruned-0.5']")
    page.wait_for_url("**/results/*")
    assert "digits-mlp-pruned-0.5" in page.locator("h1").inner_text()
    result = measured["results"][page.url.rsplit("/", 1)[1]]
    assert (result["model_name"], result["device_name"]) == ("digits-mlp-pruned-0.5", "pc-b")
    bins = int(page.get_attribute("svg.histogram", "data-bins"))
    assert page.locator("svg.histogram rect.bar").count() == bins > 1
    samples = result["latency_ms"]["samples"]
    assert int(page.get_attribute("svg.histogram", "data-samples")) == len(samples)
    # over the range the samples cover, saying how many it shows and of how many
    shown = int(page.get_attribute("svg.histogram", "data-shown"))
    lo, hi = (float(page.get_attribute("svg.histogram", k)) for k in ("data-lo", "data-hi"))
    assert min(samples) <= lo < hi <= max(samples)
    assert shown == sum(1 for v in samples if lo <= v <= hi) and shown >= 0.95 * len(samples)
    bar_counts = page.eval_on_selector_all("svg.histogram rect.bar", "bars => bars.map(b => +b.dataset.count)")
    assert sum(bar_counts) == shown and max(bar_counts) < shown  # not every sample in one bar
    caption = page.locator("#histogram-caption").inner_text()
    assert f"Showing {shown:,} of {len(samples):,} kept samples" in caption
    assert f"{result['latency_ms']['count']:,} measured runs" in caption
    assert page.locator("#intervals tr[data-interval='latency_p50']").count() == 1
    assert page.locator("#intervals tr[data-interval='top1']").count() == 1
    model = next(m for m in measured["models"] if m["name"] == "digits-mlp-pruned-0.5")
    assert page.locator("[data-sha=model]").inner_text().strip() == model["sha256"]
    assert page.locator("[data-sha=dataset]").inner_text().strip() == measured["dataset"]["sha256"]
    page.screenshot(path=str(SCREENSHOTS / "result.png"), full_page=True)


def test_jobs_page_refreshes_itself_and_cancels(farm, browser, tmp_path):
    path = tmp_path / "tiny.tflite"
    path.write_bytes(tiny_tflite())
    model = farm.push_model(path, name="tiny", family="tiny", task="classification")
    agent = farm.enroll("pc-1")
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


def test_result_page_layers_section_sorts_and_highlights(farm, browser, tmp_path):
    """A real agent's result for a conv chain with one corrupted layer (onnxruntime, against
    its family base): the Layers section's table sorts by a click on a heading, marks the
    five slowest layers and the most drifted tensors, and charts time by op type."""
    from tests.support.layer_models import layered_result

    pytest.importorskip("onnx", reason="the onnx package builds the test model")
    result = layered_result(farm, tmp_path)
    context, requests = browser
    page = context.new_page()
    sign_in_through_the_form(page, farm, f"/results/{result['id']}")
    table = page.locator("#layer-table")
    assert page.locator("#layer-table tbody tr.slowest").count() == 5
    assert 1 <= page.locator("#layer-table tbody tr.most-drifted").count() <= 5
    ops = {b.get_attribute("data-op-type") for b in page.locator("svg.op-bars rect.bar").all()}
    assert ops == {layer["op_type"] for layer in result["layers"]["layers"]} and "Conv" in ops

    def times() -> List[float]:
        cells = table.locator("tbody tr td:nth-child(3)").evaluate_all("cs => cs.map(c => c.dataset.value)")
        return [float(v) for v in cells if v]

    def names() -> List[str]:
        return table.locator("tbody tr").evaluate_all("rs => rs.map(r => r.dataset.layer)")

    table.locator("thead th", has_text="Time").click()
    assert table.locator("thead th", has_text="Time").get_attribute("aria-sort") == "ascending"
    assert times() == sorted(times())
    table.locator("thead th", has_text="Time").click()
    assert times() == sorted(times(), reverse=True)
    slowest = set(table.locator("tbody tr.slowest").evaluate_all("rs => rs.map(r => r.dataset.layer)"))
    assert set(names()[:5]) == slowest
    table.locator("thead th", has_text="PSNR").click()
    first = table.locator("tbody tr").first
    assert "most-drifted" in (first.get_attribute("class") or "")
    page.locator("#layers").screenshot(path=str(SCREENSHOTS / "result-layers.png"))
    only_own_host(requests, farm.url)
    assert any(r.endswith("/static/layers.js") for r in requests)


def test_history_page_marks_baseline_regression_and_version_change(farm, browser, tmp_path):
    """A series of four results reported over HTTP (the figures are the test's own, not
    measured): the baseline, a rerun, one after a runtime upgrade, and one twice as slow.
    The history page draws one point per result with the baseline, the regressed point and
    the version change marked, and each point leads to its result page."""
    from tests.support.servers import sample_result

    path = tmp_path / "tiny.tflite"
    path.write_bytes(tiny_tflite())
    model = farm.push_model(path, name="tiny-fp32", family="tiny", task="classification")
    agent = farm.enroll("pc-1")
    results = []
    for p50, version in ((10.0, "2.3.0"), (10.1, "2.3.0"), (10.2, "2.4.0"), (20.0, "2.4.0")):
        farm.submit(models=[str(model["id"])], devices="all")
        body = sample_result(p50=p50)
        body["runtime"]["version"] = version
        lease = agent.lease()
        response = agent.report(lease, result=body)
        assert response.status_code == 200, response.text
        results.append(response.json()["result_id"])
        if len(results) == 1:
            assert farm.user.post("/api/v1/baselines", json={"result_id": results[0]}).status_code == 201
    context, requests = browser
    page = context.new_page()
    sign_in_through_the_form(page, farm, "/history")
    assert page.locator("table.regressions tbody tr").count() == 1
    page.locator("table.series a.history-link").first.click()
    page.wait_for_url("**/history/series?*")
    chart = page.locator("svg.timeline[data-metric='p50_ms']")
    assert chart.get_attribute("data-points") == "4" and chart.get_attribute("data-changes") == "1"
    marks = page.eval_on_selector_all("svg.timeline[data-metric='p50_ms'] circle.point",
                                      "cs => cs.map(c => [c.dataset.result, c.dataset.baseline, c.dataset.regressed])")
    assert marks == [[str(results[0]), "true", "false"], [str(results[1]), "false", "false"],
                     [str(results[2]), "false", "false"], [str(results[3]), "false", "true"]]
    assert "runtime 2.3.0 -> 2.4.0" in page.locator("line.change").get_attribute("data-change")
    assert page.locator("svg.timeline line.limit-line").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "history.png"), full_page=True)

    page.locator(f"svg.timeline a[href='/results/{results[3]}']").click()
    page.wait_for_url(f"**/results/{results[3]}")
    assert page.get_by_role("heading", name="Regressed against its baseline").is_visible()
    assert "latency_p50_ms" in page.locator("section.regressed").inner_text()
    page.locator("a.history-link").click()
    page.wait_for_url("**/history/series?*")
    assert page.locator(f"tr.selected[data-result='{results[3]}']").count() == 1
    page.goto(farm.url + "/")
    assert page.get_by_role("heading", name="Newest regressions").is_visible()
    only_own_host(requests, farm.url)
