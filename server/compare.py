"""Pure logic for result tables: flat rows for CSV, the family comparison with
deltas against the base model and their significance (``statistics``), and the Pareto
front per device: by significance for results (``significant_front``), by value for
plain points (``pareto_flags``, the size-latency chart), and the board-to-board spread of a
model across devices of one platform (``platform_spread``)."""

from statistics import median as median_of
from typing import Dict, Iterable, List, Optional, Sequence

from edgefarm.shared.contract.rules import headline_metric
from edgefarm.shared.contract.schemas import CompareCell, PlatformSpread, ResultIntervals, ResultOut
from edgefarm.shared.stats.compare import BETTER, WORSE

from . import statistics
from .stage_columns import STAGE_COLUMNS, stage_cells

CSV_COLUMNS = (
    "id", "created_at", "job_id", "run_id", "model_id", "model_name", "family", "quantization",
    "sparsity", "variant_label", "task", "device_id", "device_name", "platform", "runtime",
    "runtime_version", "accelerator", "threads", "dataset_name", "top1", "top5", "miou",
    "pixel_accuracy", "sample_count", "init_ms", "first_inference_ms", "latency_count",
    "latency_mean_ms", "latency_std_ms", "latency_min_ms", "latency_p50_ms", "latency_p90_ms",
    "latency_p99_ms", "latency_max_ms", "end_to_end_p50_ms", "model_size_bytes", "peak_rss_bytes",
    "throttled", "model_sha256", "dataset_sha256", "agent_version", "permalink",
    "agreement_psnr_db", "agreement_top1",
    # 95% intervals (``statistics.result_intervals``); empty where the result has none
    "latency_p50_low_ms", "latency_p50_high_ms", "latency_p90_low_ms", "latency_p90_high_ms",
    "latency_p99_low_ms", "latency_p99_high_ms", "top1_low", "top1_high", "top5_low", "top5_high",
    "miou_low", "miou_high", "pixel_accuracy_low", "pixel_accuracy_high",
) + STAGE_COLUMNS
INTERVAL_COLUMNS = {"latency_p50": "latency_p50_{}_ms", "latency_p90": "latency_p90_{}_ms",
                    "latency_p99": "latency_p99_{}_ms", "top1": "top1_{}", "top5": "top5_{}",
                    "miou": "miou_{}", "pixel_accuracy": "pixel_accuracy_{}"}


def flat_row(result: ResultOut, intervals: Optional[ResultIntervals] = None) -> Dict[str, object]:
    """The CSV row of a result; with ``intervals``, their bounds as well."""
    metrics = result.metrics.model_dump() if result.metrics else {}
    latency = result.latency_ms
    env = result.environment
    row = {
        "id": result.id, "created_at": result.created_at.isoformat(), "job_id": result.job_id,
        "run_id": result.run_id, "model_id": result.model_id, "model_name": result.model_name,
        "family": result.family, "quantization": result.variant.quantization,
        "sparsity": result.variant.sparsity, "variant_label": result.variant.label,
        "task": result.task, "device_id": result.device_id, "device_name": result.device_name,
        "platform": result.platform, "runtime": result.runtime.name,
        "runtime_version": result.runtime.version, "accelerator": result.runtime.accelerator,
        "threads": result.runtime.threads, "dataset_name": result.dataset_name,
        "init_ms": result.init_ms, "first_inference_ms": result.first_inference_ms,
        "end_to_end_p50_ms": result.end_to_end_ms.p50 if result.end_to_end_ms else None,
        "model_size_bytes": result.model_size_bytes, "peak_rss_bytes": result.peak_rss_bytes,
        "throttled": env.throttled if env else None, "model_sha256": result.model_sha256,
        "dataset_sha256": result.dataset_sha256, "agent_version": result.agent_version,
        "permalink": result.permalink,
        "agreement_psnr_db": result.agreement.psnr_db if result.agreement else None,
        "agreement_top1": result.agreement.top1_agreement if result.agreement else None,
    }
    for key in ("top1", "top5", "miou", "pixel_accuracy", "sample_count"):
        row[key] = metrics.get(key)
    for key in ("count", "mean", "std", "min", "p50", "p90", "p99", "max"):
        column = "latency_count" if key == "count" else f"latency_{key}_ms"
        row[column] = getattr(latency, key) if latency else None
    row.update(stage_cells(result))
    for key, pattern in INTERVAL_COLUMNS.items():
        interval = getattr(intervals, key) if intervals else None
        row[pattern.format("low")] = interval.low if interval else None
        row[pattern.format("high")] = interval.high if interval else None
    return {column: row.get(column) for column in CSV_COLUMNS}


def headline(result: ResultOut):
    """The result's headline metric, ``(value, key)`` (``rules.headline_metric``)."""
    return headline_metric(result.metrics)


def pareto_flags(points: Sequence[tuple]) -> List[bool]:
    """points are (accuracy or None, latency or None); higher accuracy and lower latency win.

    A point is on the front when no other point is at least as good on both and
    strictly better on one. Without accuracy, only latency counts.
    """
    flags = []
    for i, (acc_i, lat_i) in enumerate(points):
        if lat_i is None:
            flags.append(False)
            continue
        dominated = False
        for j, (acc_j, lat_j) in enumerate(points):
            if i == j or lat_j is None:
                continue
            a_i = acc_i if acc_i is not None else float("-inf")
            a_j = acc_j if acc_j is not None else float("-inf")
            if a_j >= a_i and lat_j <= lat_i and (a_j > a_i or lat_j < lat_i):
                dominated = True
                break
        flags.append(not dominated)
    return flags


def _ratio(value: Optional[float], base: Optional[float]) -> Optional[float]:
    if value is None or not base:
        return None
    return value / base


def significant_front(row: Sequence[ResultOut]) -> List[bool]:
    """Pareto flags by significance: a result is dominated when another is significantly
    better on one axis (p50 latency, headline accuracy) and the result is not significantly
    better on the other. Differences the data cannot test count as no difference, so two
    single measurements never dominate each other. A result without latency is off the
    front."""
    flags = []
    for i, result in enumerate(row):
        if result.latency_ms is None:
            flags.append(False)
            continue
        dominated = False
        for j, other in enumerate(row):
            if i == j or other.latency_ms is None:
                continue
            latency = statistics.latency_verdict(other, result)
            accuracy = statistics.accuracy_verdict(other, result)
            if (latency == WORSE and accuracy != BETTER) or (accuracy == WORSE and latency != BETTER):
                dominated = True
                break
        flags.append(not dominated)
    return flags


def compare_cells(results: Iterable[ResultOut], base_model_id: Optional[int]) -> List[CompareCell]:
    """The newest result per (model, device), with deltas against the base model on that
    device, their significance, the intervals of p50 and accuracy, and the Pareto front
    by significance (``significant_front``)."""
    latest: Dict[tuple, ResultOut] = {}
    for result in sorted(results, key=lambda r: r.id):
        latest[(result.model_id, result.device_id)] = result
    cells: List[CompareCell] = []
    for device_id in sorted({key[1] for key in latest}):
        row = [r for (m, d), r in sorted(latest.items()) if d == device_id]
        base = latest.get((base_model_id, device_id))
        base_acc = headline(base)[0] if base else None
        for result, on_front in zip(row, significant_front(row)):
            acc, metric = headline(result)
            p50 = result.latency_ms.p50 if result.latency_ms else None
            intervals = statistics.result_intervals(result)
            compared = base is not None and base.id != result.id
            cells.append(CompareCell(
                result_id=result.id, model_id=result.model_id, device_id=device_id,
                accuracy=acc, accuracy_metric=metric, p50_ms=p50,
                p90_ms=result.latency_ms.p90 if result.latency_ms else None,
                model_size_bytes=result.model_size_bytes, peak_rss_bytes=result.peak_rss_bytes,
                delta_accuracy=acc - base_acc if acc is not None and base_acc is not None else None,
                latency_ratio=_ratio(p50, base.latency_ms.p50 if base and base.latency_ms else None),
                size_ratio=_ratio(result.model_size_bytes, base.model_size_bytes if base else None),
                pareto=on_front,
                p50_interval=intervals.latency_p50,
                accuracy_interval=getattr(intervals, metric, None) if metric else None,
                latency_shift=statistics.latency_shift(base, result) if compared else None,
                accuracy_shift=(statistics.accuracy_shift(base, result)
                                if compared and acc is not None else None),
            ))
    return cells


def platform_spread(results: Iterable[ResultOut]) -> List[PlatformSpread]:
    """Per (model, platform) run on two or more boards: the spread of the boards' p50
    (the newest result of each board), the per-device cells left as they are."""
    latest: Dict[tuple, ResultOut] = {}
    for result in sorted(results, key=lambda r: r.id):
        latest[(result.model_id, result.device_id)] = result
    boards: Dict[tuple, List[ResultOut]] = {}
    for (model_id, _), result in sorted(latest.items()):
        boards.setdefault((model_id, result.platform), []).append(result)
    spread = []
    for (model_id, platform), group in sorted(boards.items()):
        if len(group) < 2:
            continue
        p50s = sorted(r.latency_ms.p50 for r in group if r.latency_ms is not None)
        median = median_of(p50s) if p50s else None
        spread.append(PlatformSpread(
            model_id=model_id, platform=platform, boards=len(group),
            device_ids=[r.device_id for r in group],
            p50_min_ms=p50s[0] if p50s else None, p50_median_ms=median,
            p50_max_ms=p50s[-1] if p50s else None,
            p50_relative_spread=(p50s[-1] - p50s[0]) / median if len(p50s) >= 2 and median else None,
        ))
    return spread
