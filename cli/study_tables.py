"""Results in the shape of the study's published tables, one table per task, as
Markdown (ready to paste into a study README; the main job prints the same text).

Classification: Platform | Runtime | Model | Pruning | Accuracy | p50 | Model size;
segmentation: Platform | Runtime | Model | Quantization | Pruning | mIoU | p50 | p90 |
Model size; both with peak memory as an extra column. A result goes to the table of
its headline metric (top-1: classification, mIoU: segmentation), else of its task;
any other task (a latency-only job) gets the segmentation columns without the metric.
Accuracy and mIoU are fractions as the study prints them (0.9759, 0.526275),
latencies in milliseconds, sizes in KiB/MiB. One row per result, in the order given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from edgefarm.shared.contract.rules import headline_metric
from edgefarm.shared.contract.schemas import ResultOut

from .output import format_bytes, format_ms

CLASSIFICATION = ("Platform", "Runtime", "Model", "Pruning", "Accuracy", "p50 (ms)", "Model size",
                  "Peak memory")
SEGMENTATION = ("Platform", "Runtime", "Model", "Quantization", "Pruning", "mIoU", "p50 (ms)", "p90 (ms)",
                "Model size", "Peak memory")
LATENCY = ("Platform", "Runtime", "Model", "Quantization", "Pruning", "p50 (ms)", "p90 (ms)", "Model size",
           "Peak memory")
TITLES = {"classification": "Classification", "segmentation": "Segmentation"}
#: Digits after the point: the study prints accuracy with 4, mIoU with 6.
METRIC_DIGITS = {"classification": 4, "segmentation": 6}


@dataclass
class StudyTable:
    task: str
    title: str
    columns: Sequence[str]
    rows: List[List[str]]


def _runtime(result: ResultOut) -> str:
    """``tflite (ai-edge-litert 2.3.0)``, ``opencv 5.1.0``: the name, and the version
    the agent reported (which may name the package that provides the runtime)."""
    name, version = result.runtime.name, result.runtime.version
    if not version:
        return name
    if version.startswith(name):
        return version
    return f"{name} ({version})" if " " in version else f"{name} {version}"


def _pruning(result: ResultOut) -> str:
    sparsity = result.variant.sparsity
    return f"pruned ({sparsity:.2g})" if sparsity else "-"


def _quantization(result: ResultOut) -> str:
    value = str(result.variant.quantization)
    return "-" if value == "none" else value


def study_row(result: ResultOut, task: str) -> List[str]:
    """The cells of one result in the columns of ``task``'s table."""
    latency = result.latency_ms
    p50 = format_ms(latency.p50 if latency else None) or "-"
    p90 = format_ms(latency.p90 if latency else None) or "-"
    size = format_bytes(result.model_size_bytes) or "-"
    memory = format_bytes(result.peak_rss_bytes) or "-"
    value, _ = headline_metric(result.metrics)
    metric = "-" if value is None else f"{value:.{METRIC_DIGITS.get(task, 4)}f}"
    head = [result.platform, _runtime(result), result.model_name]
    if task == "classification":
        return head + [_pruning(result), metric, p50, size, memory]
    if task == "segmentation":
        return head + [_quantization(result), _pruning(result), metric, p50, p90, size, memory]
    return head + [_quantization(result), _pruning(result), p50, p90, size, memory]


#: Headline metric -> the table its results go to.
METRIC_TASKS = {"top1": "classification", "miou": "segmentation"}


def table_task(result: ResultOut) -> str:
    """The task whose table shows ``result``: the one its headline metric belongs to
    (a latency job whose runs also scored top-1 is a classification row), else its job's."""
    _, key = headline_metric(result.metrics)
    return METRIC_TASKS.get(key or "", str(result.task))


def study_tables(results: Sequence[ResultOut]) -> List[StudyTable]:
    """One table per task present, classification first, then segmentation, then others."""
    by_task: Dict[str, List[ResultOut]] = {}
    for result in results:
        by_task.setdefault(table_task(result), []).append(result)
    order = sorted(by_task, key=lambda t: (list(TITLES).index(t) if t in TITLES else len(TITLES), t))
    tables = []
    for task in order:
        columns = CLASSIFICATION if task == "classification" else \
            SEGMENTATION if task == "segmentation" else LATENCY
        title = TITLES.get(task, task.capitalize())
        tables.append(StudyTable(task, title, columns, [study_row(r, task) for r in by_task[task]]))
    return tables


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub pipe table, columns padded so that it also reads well as plain text."""
    cells = [[_escape(str(c)) for c in columns]] + [[_escape(str(c)) for c in row] for row in rows]
    widths = [max(3, *(len(row[i]) for row in cells)) for i in range(len(columns))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |"

    rule = "| " + " | ".join("-" * width for width in widths) + " |"
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


def markdown(tables: Sequence[StudyTable], notes: Optional[Dict[str, str]] = None) -> str:
    """Each table under a ``### Title`` heading, with its note (what the family is) if given."""
    parts = []
    for table in tables:
        note = (notes or {}).get(table.task)
        parts.append(f"### {table.title}\n\n" + (f"{note}\n\n" if note else "")
                     + markdown_table(table.columns, table.rows))
    return "\n\n".join(parts) + "\n"


def markdown_of(results: Sequence[Any], notes: Optional[Dict[str, str]] = None) -> str:
    return markdown(study_tables(results), notes)
