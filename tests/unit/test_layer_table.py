"""The layer table a result page, its export and the CLI show: time and drift joined,
the five slowest and most drifted marked; the chart of time by op type."""

import pytest

pytest.importorskip("fastapi")

from datetime import datetime, timezone  # noqa: E402

from edgefarm.shared.contract.schemas import ResultOut  # noqa: E402


def result(layers=None, drift=None, stages=None) -> ResultOut:
    return ResultOut.model_validate({
        "runtime": {"name": "onnxruntime"}, "id": 7, "run_id": 1, "job_id": 1,
        "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc), "model_id": 1, "model_name": "m",
        "model_sha256": "0" * 64, "family": "f", "variant": {"quantization": "int8"}, "task": "classification",
        "device_id": 1, "device_name": "d", "platform": "p", "permalink": "http://x/results/7",
        "layers": layers, "drift": drift, "stages": stages})


LAYERS = {"source": "test", "runs": 2, "total_ms": 28.0, "run_ms": 30.0, "layers": [
    {"name": f"L{i}", "op_type": "Conv" if i % 2 else "Relu", "ms": float(i), "share": i / 28.0}
    for i in range(8)]}
DRIFT = {"sample_count": 1, "matching": "by name", "tensors": [
    {"name": "t1", "reference_name": "t1", "layer": "L1", "position": 1, "matched_by": "name",
     "psnr_db": 40.0, "max_abs_error": 0.1},
    {"name": "L2", "reference_name": "L2", "position": 2, "matched_by": "position",
     "psnr_db": None, "max_abs_error": 0.0, "identical": True},
    {"name": "alone", "reference_name": "alone", "position": 9, "matched_by": "name",
     "psnr_db": 20.0, "max_abs_error": 1.0}]}


def test_time_and_drift_join_by_producing_layer_or_name_and_the_top_five_are_marked():
    from edgefarm.server.services.layers import layer_table, to_csv

    table = layer_table(result(LAYERS, DRIFT))
    rows = {row.name: row for row in table.rows}
    assert list(rows) == [f"L{i}" for i in range(8)] + ["alone"]
    assert rows["L1"].drift_tensor == "t1" and rows["L1"].psnr_db == 40.0
    assert rows["L2"].identical and rows["L2"].psnr_db is None
    assert rows["alone"].ms is None and rows["alone"].psnr_db == 20.0
    assert {r.name for r in table.rows if r.slowest} == {"L3", "L4", "L5", "L6", "L7"}
    assert {r.name for r in table.rows if r.most_drifted} == {"alone", "L1"}  # identical never is
    assert to_csv(table).splitlines()[0].startswith("name,op_type,unit,ms,share,psnr_db")
    assert len(to_csv(table).splitlines()) == 1 + len(table.rows)


def test_a_result_without_the_passes_says_why():
    from edgefarm.server.services.layers import NOT_MEASURED, layer_table

    table = layer_table(result())
    assert table.rows == [] and table.layers_not_available == NOT_MEASURED
    assert "reference" in table.drift_not_available


def test_time_by_op_type_bars_slowest_first_with_shares():
    from edgefarm.server.services.layers import layer_table
    from edgefarm.server.web.charts import op_type_bars

    chart = op_type_bars(layer_table(result(LAYERS, DRIFT)).rows)
    assert [(b.op_type, b.ms, b.layers) for b in chart.bars] == [("Conv", 16.0, 4), ("Relu", 12.0, 4)]
    assert chart.bars[0].share == pytest.approx(16 / 28)
    assert chart.bars[0].width > chart.bars[1].width > 0
    assert op_type_bars([]) is None


def test_stage_columns_of_the_results_csv():
    from edgefarm.server.stage_columns import STAGE_COLUMNS, stage_cells

    stages = {"stages": [{"name": "cold_load", "ms": 5.0, "rss_increase_bytes": -4096,
                          "rss_peak_increase_bytes": 8192}], "cache_dropped": True, "sample_interval_ms": 2.0}
    cells = stage_cells(result(stages=stages))
    assert list(cells) == list(STAGE_COLUMNS)
    assert (cells["cold_load_ms"], cells["cold_load_rss_increase_bytes"], cells["cache_dropped"]) == (5.0, -4096, True)
    assert cells["warm_load_ms"] is None
    assert set(stage_cells(result()).values()) == {None}
