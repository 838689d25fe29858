"""A result's layers where users see them: the ``/results/{id}/layers`` export (JSON and
CSV), the result page's Layers section and ``edgefarm results --layers``, on a result a
real agent measured (a small ONNX chain with one corrupted layer, on onnxruntime, against
its family base)."""

import csv
import io
import json

import pytest

from tests.support.compression import edgefarm
from tests.support.layer_models import layered_result

pytest.importorskip("onnx", reason="the onnx package builds the test model (the [dev] extra)")
pytest.importorskip("onnxruntime", reason="the agent runs the model on onnxruntime")

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def measured(farm, tmp_path):
    return layered_result(farm, tmp_path)


def test_layer_table_exports_page_and_cli(farm, measured):
    rid = measured["id"]
    assert [s["name"] for s in measured["stages"]["stages"]] == [
        "cold_load", "warm_load", "first_inference", "steady_inference"]
    assert measured["layers"]["not_available"] is None and measured["drift"]["not_available"] is None

    table = farm.user.get(f"/api/v1/results/{rid}/layers").json()
    rows = table["rows"]
    timed = [r for r in rows if r["ms"] is not None]
    assert len(timed) == len(measured["layers"]["layers"]) and table["runs"] == 3
    assert table["e2e_ms"] is not None and table["e2e_ms"] == measured["layers"]["e2e_ms"]
    assert sum(r["slowest"] for r in rows) == 5
    assert {r["name"] for r in rows if r["slowest"]} == {
        layer["name"] for layer in sorted(measured["layers"]["layers"], key=lambda x: -x["ms"])[:5]}
    drifted = [r for r in rows if r["drift_tensor"] is not None]
    assert {r["drift_tensor"] for r in drifted} == {t["name"] for t in measured["drift"]["tensors"]}
    most = [r for r in rows if r["most_drifted"]]
    assert 1 <= len(most) <= 5 and all(not r["identical"] for r in most)
    assert "conv3" in {r["drift_tensor"] for r in drifted if not r["identical"]}

    exported = list(csv.DictReader(io.StringIO(farm.user.get(f"/api/v1/results/{rid}/layers?format=csv").text)))
    assert [r["name"] for r in exported] == [r["name"] for r in rows]
    assert [float(r["ms"]) for r in exported if r["ms"]] == pytest.approx([r["ms"] for r in timed])

    listed = next(csv.DictReader(io.StringIO(farm.user.get("/api/v1/results?format=csv").text)))
    stages = {s["name"]: s for s in measured["stages"]["stages"]}
    assert float(listed["cold_load_ms"]) == pytest.approx(stages["cold_load"]["ms"])
    assert int(listed["warm_load_rss_peak_increase_bytes"]) == stages["warm_load"]["rss_peak_increase_bytes"]
    assert listed["cache_dropped"] == str(measured["stages"]["cache_dropped"])

    missing = farm.user.get("/api/v1/results/999999/layers")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
    assert farm.user.get(f"/api/v1/results/{rid}/layers?format=xml").status_code == 422

    page = farm.user.get(f"/results/{rid}")
    html = page.text
    assert page.status_code == 200 and 'id="layers"' in html and 'id="layer-table"' in html
    assert html.count('<tr data-layer=') == len(rows)
    assert html.count('data-stage=') == 4
    assert 'class="chart op-bars"' in html and 'data-op-type="Conv"' in html
    assert "/static/layers.js" in html
    assert 'data-figure="e2e"' in html and "unprofiled end to end" in html

    shown = edgefarm("results", "--layers", str(rid), farm=farm)
    assert shown.returncode == 0, shown.stderr
    said = shown.stdout + shown.stderr  # the table on stdout, the notes on stderr
    assert "load stages" in said and "cold load" in said and "onnxruntime profiler" in said
    assert "unprofiled end to end" in said
    assert "Conv_3" in shown.stdout
    as_json = edgefarm("results", "--layers", str(rid), "--json", farm=farm)
    assert json.loads(as_json.stdout)["rows"] == rows
    as_csv = edgefarm("results", "--layers", str(rid), "--csv", farm=farm)
    assert list(csv.DictReader(io.StringIO(as_csv.stdout))) == exported
    for bad in (["--layers", "0"], ["--layers", str(rid), "--family", "chain"], ["--layers", "x"]):
        refused = edgefarm("results", *bad, farm=farm)
        assert refused.returncode == 2, (bad, refused.stdout, refused.stderr)
    unknown = edgefarm("results", "--layers", "999999", farm=farm)
    assert unknown.returncode == 2 and "no result 999999" in unknown.stderr
