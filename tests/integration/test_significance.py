"""Intervals and significance over real HTTP: results carrying raw latency samples,
per-sample correctness and per-image IoU counts, posted by an agent session; the compare
API's verdicts and Pareto front, and one result's intervals."""

import csv
import io

import pytest

from tests.support import significance as sig


def test_compare_verdicts_and_front_by_significance(farm, tmp_path):
    base_flags = sig.correct_flags(1)
    results = {
        "cls-fp32": sig.classification_result(sig.latency_samples(1, 10.0), base_flags),
        # the same model measured again: other samples of the same distribution
        "cls-again": sig.classification_result(sig.latency_samples(2, 10.0), base_flags),
        "cls-slower": sig.classification_result(sig.latency_samples(3, 10.6), base_flags),
        "cls-sharper": sig.classification_result(sig.latency_samples(4, 10.0),
                                                 sig.improved(base_flags, 60, 5)),
        "cls-noisy": sig.classification_result(sig.latency_samples(5, 10.0),
                                               sig.improved(base_flags, 6, 4)),
    }
    models = sig.post_family(farm, tmp_path, "cls", "classification", results)
    body = farm.user.get("/api/v1/results/compare", params={"family": "cls"}).json()
    cells = {c["model_id"]: c for c in body["cells"]}
    cell = {name: cells[m["id"]] for name, m in models.items()}

    assert cell["cls-fp32"]["latency_shift"] is None
    again = cell["cls-again"]
    assert again["latency_shift"]["verdict"] == "no significant difference"
    assert again["latency_shift"]["low"] < 0 < again["latency_shift"]["high"]
    assert again["accuracy_shift"]["verdict"] == "no significant difference"
    assert again["accuracy_shift"]["estimate"] == 0 and again["accuracy_shift"]["p_value"] == 1.0

    slower = cell["cls-slower"]["latency_shift"]
    assert slower["verdict"] == "worse" and slower["low"] > 0
    assert slower["relative"] == pytest.approx(0.06, abs=0.01)
    assert slower["method"].startswith("Hodges-Lehmann")

    sharper = cell["cls-sharper"]["accuracy_shift"]
    assert sharper["verdict"] == "better" and sharper["low"] > 0
    assert sharper["estimate"] == pytest.approx(0.055)
    assert sharper["p_value"] < 1e-10 and sharper["method"].startswith("McNemar")
    noisy = cell["cls-noisy"]["accuracy_shift"]  # +0.2 pp from 10 discordant samples: noise
    assert noisy["verdict"] == "no significant difference" and noisy["p_value"] > 0.5

    # sharper is significantly more accurate than every other and not significantly slower
    # than fp32, again or noisy: it dominates them all, and slower as well
    assert {name for name, c in cell.items() if c["pareto"]} == {"cls-sharper"}
    interval = cell["cls-sharper"]["accuracy_interval"]
    assert interval["method"] == "Wilson score" and interval["low"] < 0.855 < interval["high"]
    assert cell["cls-slower"]["p50_interval"]["low"] < cell["cls-slower"]["p50_ms"]

    # the CLI and its exports carry the same verdicts and intervals
    from tests.integration.test_cli import edgefarm

    text = edgefarm(farm, tmp_path, "results", "--compare", "cls")
    assert text.returncode == 0, text.stderr
    assert "slower" in text.stdout and "+5.50 pt, better" in text.stdout
    exported = edgefarm(farm, tmp_path, "results", "--compare", "cls", "--csv").stdout
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(exported))}
    assert rows["cls-slower"]["latency_verdict"] == "worse"
    assert float(rows["cls-slower"]["latency_shift_low_ms"]) > 0
    assert rows["cls-sharper"]["accuracy_verdict"] == "better"
    assert float(rows["cls-sharper"]["delta_accuracy_low"]) > 0
    assert rows["cls-again"]["latency_verdict"] == "no significant difference"
    assert rows["cls-fp32"]["base"] == "True" and rows["cls-fp32"]["latency_verdict"] == ""
    markdown = edgefarm(farm, tmp_path, "results", "--compare", "cls", "--format", "markdown").stdout
    assert "| cls-noisy " in markdown and "no significant difference" in markdown

    listed = farm.user.get("/api/v1/results", params={"family": "cls", "format": "csv"}).text
    by_model = {r["model_name"]: r for r in csv.DictReader(io.StringIO(listed))}
    fp32_csv = by_model["cls-fp32"]
    assert float(fp32_csv["latency_p50_low_ms"]) < float(fp32_csv["latency_p50_ms"]) \
        < float(fp32_csv["latency_p50_high_ms"])
    assert float(fp32_csv["top1_low"]) < float(fp32_csv["top1"]) < float(fp32_csv["top1_high"])
    assert fp32_csv["miou_low"] == ""

    one = farm.user.get(f"/api/v1/results/{cell['cls-fp32']['result_id']}").json()["intervals"]
    assert one["latency_samples"] == 3000
    p50 = one["latency_p50"]
    assert p50["low"] < p50["estimate"] < p50["high"] and p50["method"].startswith("order statistics")
    assert one["latency_p99"]["low"] < one["latency_p99"]["estimate"]
    assert one["top1"]["estimate"] == pytest.approx(sum(base_flags) / len(base_flags))


def test_segmentation_intervals_and_paired_bootstrap(farm, tmp_path):
    inter, union = sig.iou_tables(1)
    coarse = [[int(v * 0.92) for v in row] for row in inter]
    samples = sig.latency_samples(9, 40.0, count=500)
    results = {"seg-fp32": sig.segmentation_result(samples, inter, union),
               "seg-again": sig.segmentation_result(sig.latency_samples(10, 40.0, 500), inter, union),
               "seg-coarse": sig.segmentation_result(sig.latency_samples(11, 40.0, 500), coarse, union),
               "seg-bare": {**sig.segmentation_result(samples, inter, union),
                            "metrics": {"miou": 0.6, "sample_count": 60}}}
    models = sig.post_family(farm, tmp_path, "seg", "segmentation", results)
    body = farm.user.get("/api/v1/results/compare", params={"family": "seg"}).json()
    cells = {c["model_id"]: c for c in body["cells"]}
    cell = {name: cells[m["id"]] for name, m in models.items()}
    assert cell["seg-again"]["accuracy_shift"]["verdict"] == "no significant difference"
    coarse_shift = cell["seg-coarse"]["accuracy_shift"]
    assert coarse_shift["verdict"] == "worse" and coarse_shift["high"] < 0
    assert "paired bootstrap" in coarse_shift["method"]
    bare = cell["seg-bare"]["accuracy_shift"]
    assert bare["verdict"] == "not testable" and "per-sample" in bare["reason"]
    assert cell["seg-bare"]["accuracy_interval"] is None

    one = farm.user.get(f"/api/v1/results/{cell['seg-fp32']['result_id']}").json()["intervals"]
    assert one["miou"]["low"] < one["miou"]["estimate"] < one["miou"]["high"]
    assert one["pixel_accuracy"]["low"] < one["pixel_accuracy"]["estimate"] < one["pixel_accuracy"]["high"]
    assert "bootstrap over images" in one["miou"]["method"]
    bare_one = farm.user.get(f"/api/v1/results/{cell['seg-bare']['result_id']}").json()["intervals"]
    assert bare_one["miou"] is None and "per-image" in bare_one["missing"]["miou"]


def test_result_page_shows_intervals_histogram_range_and_measurement_record(farm, tmp_path):
    from tests.integration.test_dashboard import Tags, sign_in

    samples = sig.latency_samples(21, 0.02, count=2000) + [1.75, 1.2]  # two far outliers
    body = sig.classification_result(samples, sig.correct_flags(21))
    body["latency_ms"]["count"] = 300_142  # measured more runs than it kept
    body["environment"] = {"governor": "performance", "gating": {
        "waited_seconds": 12.5, "ready": True, "reason": "SoC above 60 °C", "start_temp_c": 67.0,
        "threshold_temp_c": 60.0}, "trace": [{"t": 0.0, "temp_c": 58.0}, {"t": 4.0, "temp_c": 61.5}]}
    body["repetition"] = {"target_ci": 0.01, "achieved_ci": 0.004, "met": True, "stopped_by": "target",
                          "attempts": [{"reason": "throttled", "count": 500, "p50": 0.031,
                                        "throttled": True}]}
    models = sig.post_family(farm, tmp_path, "page", "classification", {"page-fp32": body})
    result_id = farm.user.get("/api/v1/results", params={"model": models["page-fp32"]["id"]}).json()[0]["id"]
    html = sign_in(farm, farm.user_token).get(f"/results/{result_id}").text
    tags = Tags(html)
    svg = tags.having("svg", "data-shown", cls="histogram")[0]
    assert (svg["data-shown"], svg["data-samples"]) == ("2000", "2002")
    assert float(svg["data-hi"]) < 0.03 and float(svg["data-lo"]) == min(samples)
    assert "Showing 2,000 of 2,002 kept samples" in html and "300,142 measured runs" in html
    assert "2 far outliers outside that range not drawn" in html
    intervals = {r["data-interval"]: r for r in tags.having("tr", "data-interval")}
    assert float(intervals["latency_p50"]["data-low"]) < float(intervals["latency_p50"]["data-high"])
    assert {"latency_p90", "latency_p99", "top1"} <= set(intervals)
    assert 'id="gating"' in html and "SoC above 60 °C" in html and "12.5 s" in html
    assert 'id="repetition"' in html and "stopped by" in html and 'id="attempts"' in html
    assert "58.0 to 61.5 °C" in html
    assert "top1_correct" not in html  # per-sample data is not dumped on the page
