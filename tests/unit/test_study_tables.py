"""The study's tables (``edgefarm.cli.study_tables``) from results as the server
returns them: each result in the table of its headline metric, the study's columns
and number formats, and Markdown that a Markdown parser reads back cell for cell."""

from datetime import datetime, timezone

from edgefarm.cli.study_tables import CLASSIFICATION, SEGMENTATION, markdown_of, study_tables
from edgefarm.shared.contract.schemas import ResultOut
from tests.support.markdown_tables import parse_tables
from tests.support.servers import sample_result


def result(number: int, name: str, task: str, variant: dict, **figures) -> ResultOut:
    return ResultOut.model_validate({
        **sample_result(**figures), "id": number, "run_id": number, "job_id": 1,
        "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc), "model_id": number, "model_name": name,
        "model_sha256": "0" * 64, "family": name.split("-")[0], "variant": variant, "task": task,
        "device_id": 1, "device_name": "pc-1", "platform": "pc", "permalink": f"/results/{number}",
    })


RESULTS = [
    result(1, "seg-fp32", "segmentation", {"quantization": "none"}, p50=96.0, miou=0.5262751, size=2_789_652),
    result(2, "cls-pruned", "latency", {"quantization": "none", "sparsity": 0.8999}, p50=24.0, top1=0.9684),
    result(3, "seg-int8", "segmentation", {"quantization": "int8"}, p50=75.0, miou=0.525301, size=987_000),
    result(4, "net|odd", "latency", {"quantization": "fp16"}, p50=3.0),
]


def test_each_result_goes_to_the_table_of_its_headline_metric_in_the_study_order():
    tables = study_tables(RESULTS)
    assert [(t.title, [row[2] for row in t.rows]) for t in tables] == [
        ("Classification", ["cls-pruned"]), ("Segmentation", ["seg-fp32", "seg-int8"]),
        ("Latency", ["net|odd"])]
    classification, segmentation, _ = tables
    assert classification.columns == CLASSIFICATION and segmentation.columns == SEGMENTATION
    assert classification.rows[0][3:5] == ["pruned (0.9)", "0.9684"]
    assert segmentation.rows[0][3:] == ["-", "-", "0.526275", "96.00", "96.80", "2.7 MiB", "47.7 MiB"]
    assert segmentation.rows[1][3] == "int8" and segmentation.rows[1][8] == "963.9 KiB"
    assert segmentation.rows[0][1] == "tflite 2.3.0"


def test_the_markdown_parses_back_to_the_same_cells_with_one_row_per_result():
    text = markdown_of(RESULTS, {"segmentation": "deeplab: what the family is"})
    parsed = parse_tables(text)
    assert [t["heading"] for t in parsed] == ["Classification", "Segmentation", "Latency"]
    assert sum(len(t["rows"]) for t in parsed) == len(RESULTS)
    for table, expected in zip(parsed, study_tables(RESULTS)):
        assert table["header"] == list(expected.columns)
        assert table["rows"] == expected.rows  # a "|" in a name is escaped, not a new cell
    assert "deeplab: what the family is" in text
