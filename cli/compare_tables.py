"""The family comparison (``CompareOut``) as flat rows for CSV and Markdown, and the
words of a delta's verdict for the terminal table.

One row per (device, model) cell: its headline accuracy and p50 with their 95% intervals,
and against the base model the accuracy delta and the latency shift (Hodges-Lehmann), each
with its interval, p-value where the test gives one, and verdict ("better", "worse", "no
significant difference" or "not testable"). The JSON export is ``CompareOut`` itself.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Dict, List, Optional

from edgefarm.shared.contract.schemas import CompareOut, ShiftOut

from .output import format_ms, format_points
from .study_tables import markdown_table

COLUMNS = (
    "device", "platform", "model", "base", "accuracy_metric", "accuracy", "accuracy_low",
    "accuracy_high", "delta_accuracy", "delta_accuracy_low", "delta_accuracy_high",
    "accuracy_p_value", "accuracy_verdict", "p50_ms", "p50_low_ms", "p50_high_ms", "latency_ratio",
    "latency_shift_ms", "latency_shift_low_ms", "latency_shift_high_ms", "latency_verdict",
    "model_size_bytes", "size_ratio", "pareto", "result_id",
)
MARKDOWN = ("Device", "Model", "Accuracy (95% CI)", "Δ accuracy (95% CI)", "Accuracy verdict",
            "p50 ms (95% CI)", "Latency shift ms (95% CI)", "Latency verdict", "Pareto")


def compare_rows(compared: CompareOut) -> List[Dict[str, Any]]:
    """One dict per cell with the columns of ``COLUMNS`` (None where there is no figure)."""
    models = {m.id: m for m in compared.models}
    devices = {d.id: d for d in compared.devices}
    rows = []
    for cell in compared.cells:
        device, model = devices.get(cell.device_id), models.get(cell.model_id)
        acc, p50 = cell.accuracy_interval, cell.p50_interval
        a_shift, l_shift = cell.accuracy_shift, cell.latency_shift
        rows.append({
            "device": device.name if device else cell.device_id,
            "platform": device.platform if device else None,
            "model": model.name if model else cell.model_id,
            "base": cell.model_id == compared.base_model_id,
            "accuracy_metric": cell.accuracy_metric, "accuracy": cell.accuracy,
            "accuracy_low": acc.low if acc else None, "accuracy_high": acc.high if acc else None,
            "delta_accuracy": a_shift.estimate if a_shift and a_shift.estimate is not None
            else cell.delta_accuracy,
            "delta_accuracy_low": a_shift.low if a_shift else None,
            "delta_accuracy_high": a_shift.high if a_shift else None,
            "accuracy_p_value": a_shift.p_value if a_shift else None,
            "accuracy_verdict": a_shift.verdict if a_shift else None,
            "p50_ms": cell.p50_ms, "p50_low_ms": p50.low if p50 else None,
            "p50_high_ms": p50.high if p50 else None, "latency_ratio": cell.latency_ratio,
            "latency_shift_ms": l_shift.estimate if l_shift else None,
            "latency_shift_low_ms": l_shift.low if l_shift else None,
            "latency_shift_high_ms": l_shift.high if l_shift else None,
            "latency_verdict": l_shift.verdict if l_shift else None,
            "model_size_bytes": cell.model_size_bytes, "size_ratio": cell.size_ratio,
            "pareto": cell.pareto, "result_id": cell.result_id,
        })
    return rows


def compare_csv(compared: CompareOut) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in compare_rows(compared):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def _span(low: Optional[float], high: Optional[float], show) -> str:
    if low is None or high is None:
        return ""
    return f" ({show(low)} to {show(high)})"


def _fraction(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.4f}"


def _ms(value: Optional[float]) -> str:
    return "" if value is None else (format_ms(value) if value >= 0 else "-" + format_ms(-value))


def compare_markdown(compared: CompareOut) -> str:
    """The comparison as one Markdown table, under a heading naming the family."""
    rows = []
    for r in compare_rows(compared):
        delta = r["delta_accuracy"] if not r["base"] else None
        rows.append([
            r["device"], f"{r['model']}{' (base)' if r['base'] else ''}",
            _fraction(r["accuracy"]) + _span(r["accuracy_low"], r["accuracy_high"], _fraction),
            (format_points(delta) or "") + _span(r["delta_accuracy_low"], r["delta_accuracy_high"],
                                                 format_points),
            r["accuracy_verdict"] or "",
            _ms(r["p50_ms"]) + _span(r["p50_low_ms"], r["p50_high_ms"], _ms),
            ("+" if (r["latency_shift_ms"] or 0) >= 0 and r["latency_shift_ms"] is not None else "")
            + _ms(r["latency_shift_ms"]) + _span(r["latency_shift_low_ms"], r["latency_shift_high_ms"], _ms),
            r["latency_verdict"] or "", "yes" if r["pareto"] else "",
        ])
    return (f"### Family {compared.family}\n\n" + markdown_table(MARKDOWN, rows)
            + "\n\nIntervals at 95%; a delta is better or worse only when its interval excludes zero.\n")


def verdict_words(shift: Optional[ShiftOut], kind: str) -> Optional[str]:
    """"faster"/"slower" (latency), "better"/"worse" (accuracy), "no significant
    difference" or "not testable"."""
    if shift is None:
        return None
    if kind == "latency" and shift.verdict in ("better", "worse"):
        return "faster" if shift.verdict == "better" else "slower"
    return shift.verdict
