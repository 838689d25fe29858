"""A result's layer table: its per-layer times (``RunResult.layers``) and per-layer drift
(``RunResult.drift``) side by side, as the result page, the ``/results/{id}/layers``
export and ``edgefarm results --layers`` show them.

A drift tensor joins the layer that produces it (``TensorDrift.layer``) or the layer
named like it; drift tensors that join no profiled layer follow the layers in graph
order (a runtime without per-layer time shows only those). ``TOP`` rows are marked
the slowest (by time) and the most drifted (lowest PSNR; identical tensors never are).
"""

import csv
import io
from typing import Dict, List, Optional

from edgefarm.shared.contract.schemas import LayerRow, LayerTableOut, ResultOut, TensorDrift

from .results import get_result

TOP = 5
NOT_MEASURED = "not measured for this result (an older agent, or profiling was off)"
CSV_COLUMNS = ("name", "op_type", "unit", "ms", "share", "psnr_db", "max_abs_error", "identical",
               "drift_tensor", "slowest", "most_drifted")


def _with_drift(row: LayerRow, tensor: Optional[TensorDrift]) -> LayerRow:
    if tensor is None:
        return row
    return row.model_copy(update={"psnr_db": tensor.psnr_db, "max_abs_error": tensor.max_abs_error,
                                  "identical": tensor.identical, "drift_tensor": tensor.name})


def _mark(rows: List[LayerRow]) -> None:
    timed = sorted((r for r in rows if r.ms is not None), key=lambda r: -r.ms)
    for row in timed[:TOP]:
        row.slowest = True
    drifted = sorted((r for r in rows if r.psnr_db is not None and not r.identical), key=lambda r: r.psnr_db)
    for row in drifted[:TOP]:
        row.most_drifted = True


def layer_table(result: ResultOut) -> LayerTableOut:
    """The table of ``result``; fields say why time or drift is missing."""
    layers, drift = result.layers, result.drift
    tensors = list(drift.tensors) if drift else []
    by_key: Dict[str, TensorDrift] = {}
    for tensor in tensors:  # the first tensor a layer produces (its output), else by name
        by_key.setdefault(tensor.layer or tensor.name, tensor)
        by_key.setdefault(tensor.name, tensor)
    rows, joined = [], set()
    for layer in (layers.layers if layers else []):
        tensor = by_key.get(layer.name)
        if tensor is not None:
            joined.add(tensor.name)
        rows.append(_with_drift(LayerRow(name=layer.name, op_type=layer.op_type, unit=layer.unit,
                                         ms=layer.ms, share=layer.share), tensor))
    for tensor in tensors:
        if tensor.name not in joined:
            alone = LayerRow(name=tensor.layer or tensor.name, op_type=tensor.op_type)
            rows.append(_with_drift(alone, tensor))
    _mark(rows)
    return LayerTableOut(
        result_id=result.id, runtime=result.runtime.name,
        source=layers.source if layers else None, runs=layers.runs if layers else 0,
        total_ms=layers.total_ms if layers else None, run_ms=layers.run_ms if layers else None,
        e2e_ms=layers.e2e_ms if layers else None,
        layers_not_available=layers.not_available if layers else NOT_MEASURED,
        drift_reference=drift.reference if drift else {},
        drift_sample_count=drift.sample_count if drift else 0,
        drift_matching=drift.matching if drift else None,
        drift_not_available=(drift.not_available if drift else
                             "no reference model: drift is measured against output agreement's reference"),
        rows=rows,
    )


def result_layers(ctx, result_id: int, base_url: str) -> LayerTableOut:
    """The layer table of one stored result (NotFound when there is none)."""
    return layer_table(get_result(ctx, result_id, base_url))


def to_csv(table: LayerTableOut) -> str:
    """One line per row, ``CSV_COLUMNS``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in table.rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.model_dump().items()})
    return buffer.getvalue()
