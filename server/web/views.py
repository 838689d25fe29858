"""What the pages show, computed from ``edgefarm.shared.contract.schemas`` models only: rows of
the results table, their sort orders and the links between its pages, filter parameters, variant names,
the compare matrix with one chart per device, and job progress summaries."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlencode

from edgefarm.shared.contract.enums import JobState, RunState
from edgefarm.shared.contract.ids import MAX_ID
from edgefarm.shared.contract.rules import metric_name
from edgefarm.shared.contract.schemas import (
    CompareCell,
    CompareOut,
    DeviceOut,
    IntervalOut,
    JobOut,
    ModelOut,
    ResultOut,
    ShiftOut,
    Variant,
)

from ..compare import headline, pareto_flags
from . import charts
from .render import fmt_points, fmt_signed_ms

FILTER_LABELS = {"model": "Model", "family": "Family", "variant": "Variant", "device": "Device",
                 "platform": "Platform", "runtime": "Runtime", "task": "Task"}
FILTERS = tuple(FILTER_LABELS)
PROGRESS_ORDER = ("done", "running", "leased", "queued")
ACTIVE_JOB_STATES = (JobState.waiting, JobState.queued, JobState.running)


def variant_name(variant: Variant) -> str:
    """'int8', 'pruned 90%', 'fp16, pruned 50%'; the label when there is one; else 'original'."""
    if variant.label:
        return variant.label
    parts = [str(variant.quantization)] if str(variant.quantization) != "none" else []
    if variant.sparsity:
        parts.append(f"pruned {variant.sparsity * 100:.0f}%")
    return ", ".join(parts) or "original"


# ---------------------------------------------------------------- results table


@dataclass
class ResultRow:
    id: int
    platform: str
    device: str
    runtime: str
    runtime_detail: str
    model: str
    family: str
    task: str
    quantization: str
    sparsity: Optional[float]
    accuracy: Optional[float]
    metric: Optional[str]
    p50: Optional[float]
    p90: Optional[float]
    size: Optional[int]
    memory: Optional[int]
    created_at: datetime


def finite(value: Optional[float]) -> Optional[float]:
    """The value, or None (shown as missing) when it is NaN or infinite."""
    return value if charts.is_finite(value) else None


def result_row(result: ResultOut) -> ResultRow:
    """One table row; NaN or infinite figures of a stored result become missing."""
    accuracy, metric = headline(result)
    accuracy = finite(accuracy)
    latency = result.latency_ms
    detail = " ".join(x for x in (result.runtime.version, result.runtime.accelerator) if x)
    return ResultRow(
        id=result.id, platform=result.platform, device=result.device_name,
        runtime=result.runtime.name, runtime_detail=detail, model=result.model_name,
        family=result.family, task=str(result.task),
        quantization=str(result.variant.quantization), sparsity=result.variant.sparsity,
        accuracy=accuracy, metric=metric_name(metric) if metric else None,
        p50=finite(latency.p50) if latency else None, p90=finite(latency.p90) if latency else None,
        size=result.model_size_bytes, memory=result.peak_rss_bytes, created_at=result.created_at,
    )


SORTS: Dict[str, Callable[[ResultRow], object]] = {
    "id": lambda r: r.id, "platform": lambda r: r.platform, "device": lambda r: r.device,
    "runtime": lambda r: r.runtime, "model": lambda r: r.model,
    "quantization": lambda r: r.quantization, "sparsity": lambda r: r.sparsity,
    "accuracy": lambda r: r.accuracy, "p50": lambda r: r.p50, "p90": lambda r: r.p90,
    "size": lambda r: r.size, "memory": lambda r: r.memory,
}


def sort_rows(rows: List[ResultRow], sort: str, order: str) -> List[ResultRow]:
    """Sorted by one column (ties by id); rows without a value go last either way."""
    key = SORTS.get(sort, SORTS["id"])
    known = sorted((r for r in rows if key(r) is not None), key=lambda r: (key(r), r.id),
                   reverse=order == "desc")
    return known + [r for r in rows if key(r) is None]


def default_order(sort: str) -> str:
    """Newest first by id; smallest first by any other column."""
    return "desc" if sort == "id" else "asc"


def read_table_params(params: Mapping[str, str]) -> Tuple[Dict[str, str], str, str]:
    """Filters (non-empty ones), sort column and order from a query string."""
    filters = {k: params[k].strip()[:200] for k in FILTERS if params.get(k, "").strip()}
    sort = params.get("sort", "id") if params.get("sort") in SORTS else "id"
    order = params["order"] if params.get("order") in ("asc", "desc") else default_order(sort)
    return filters, sort, order


def kept_params(filters: Dict[str, str], sort: str, order: str) -> Dict[str, Optional[str]]:
    """What a link to another page of the same table keeps: filters, and sort and order
    when they are not the defaults."""
    return {**filters, "sort": None if sort == "id" else sort,
            "order": None if order == default_order(sort) else order}


@dataclass
class Cursor:
    """Where a page of the results table starts: results older than one id (the next
    page), newer than one id (the page before), or neither (the newest)."""
    older_than: Optional[int] = None
    newer_than: Optional[int] = None

    def params(self) -> Dict[str, str]:
        if self.newer_than is not None:
            return {"after": str(self.newer_than)}
        return {"before": str(self.older_than)} if self.older_than is not None else {}


def _row_id(text: Optional[str]) -> Optional[int]:
    value = (text or "").strip()
    return int(value) if value.isdigit() and len(value) <= 10 and int(value) <= MAX_ID else None


def read_cursor(params: Mapping[str, str]) -> Cursor:
    """``before`` / ``after`` of a query string; anything else than a row id is ignored."""
    return Cursor(_row_id(params.get("before")), _row_id(params.get("after")))


def page_links(kept: Dict[str, Optional[str]], cursor: Cursor, ids: List[int],
               more: bool) -> Dict[str, Optional[str]]:
    """The hrefs of the newest, newer and older pages around a page holding ``ids``
    (``more``: the list goes on past it in the direction it was read); None when there is
    no such page."""
    if cursor.newer_than is not None:
        newer, older = more, True
    else:
        newer, older = cursor.older_than is not None, more
    first = query(**kept) or "?"
    return {
        "newest": first if newer else None,
        "newer": (query(**kept, after=str(max(ids))) if ids else first) if newer else None,
        "older": query(**kept, before=str(min(ids))) if older and ids else None,
    }


COLUMNS = (
    ("id", "#"), ("platform", "Platform"), ("runtime", "Runtime"), ("model", "Model"),
    ("quantization", "Quantization"), ("sparsity", "Pruning"), ("accuracy", "Accuracy / mIoU"),
    ("p50", "p50"), ("p90", "p90"), ("size", "Size"), ("memory", "Peak memory"),
    ("device", "Device"),
)


def column_headers(filters: Dict[str, str], sort: str, order: str) -> List[dict]:
    """Each column's title and link: a click sorts by it, a second click reverses."""
    headers = []
    for key, title in COLUMNS:
        current = key == sort
        next_order = "desc" if current and order == "asc" else "asc"
        aria = ("ascending" if order == "asc" else "descending") if current else "none"
        headers.append({"key": key, "title": title, "current": current, "order": order,
                        "aria": aria, "href": query(**filters, sort=key, order=next_order)})
    return headers


def query(**params: Optional[str]) -> str:
    """A query string with the empty parameters left out ('' when none is left)."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return "?" + urlencode(kept) if kept else ""


# ---------------------------------------------------------------- compare


@dataclass
class MatrixRow:
    model: ModelOut
    variant: str
    is_base: bool
    cells: List[Optional[CompareCell]]


@dataclass
class DeviceChart:
    device: DeviceOut
    chart: Optional[charts.Scatter]
    y_metric: str
    missing: List[str] = field(default_factory=list)  # variants that could not be placed


def finite_cell(cell: CompareCell) -> CompareCell:
    """The cell with its NaN or infinite figures made missing."""
    update = {name: None for name, value in cell if isinstance(value, float) and finite(value) is None}
    return cell.model_copy(update=update) if update else cell


def compare_matrix(compare: CompareOut) -> List[MatrixRow]:
    cells = {(c.model_id, c.device_id): finite_cell(c) for c in compare.cells}
    models = sorted(compare.models, key=lambda m: (m.id != compare.base_model_id, m.id))
    return [MatrixRow(m, variant_name(m.variant), m.id == compare.base_model_id,
                      [cells.get((m.id, d.id)) for d in compare.devices]) for m in models]


@dataclass
class Badge:
    """A delta's verdict as shown: its words, CSS class and the interval behind it."""

    verdict: str
    text: str
    css: str
    title: str


VERDICT_CSS = {"better": "better", "worse": "worse", "no significant difference": "same",
               "not testable": "untestable"}


def shift_badge(shift: Optional[ShiftOut], kind: str) -> Optional[Badge]:
    """How a ``ShiftOut`` reads on the page: "faster"/"slower" for latency,
    "better"/"worse" for accuracy, "no significant difference" or "not testable"; the title
    gives the estimate, its interval and the method."""
    if shift is None:
        return None
    if shift.verdict == "not testable":
        return Badge(shift.verdict, "not testable", "untestable", shift.reason or "")
    words = {"better": "faster", "worse": "slower"} if kind == "latency" else {}
    text = words.get(shift.verdict, shift.verdict)
    show = fmt_signed_ms if kind == "latency" else fmt_points
    if shift.low is not None and shift.high is not None:
        span = f"{show(shift.low)} to {show(shift.high)}"
    else:
        span = "no interval: too few samples"
    title = (f"{show(shift.estimate)} ({shift.confidence:.0%} CI {span}); {shift.method or ''}"
             + (f"; p = {shift.p_value:.3g}" if shift.p_value is not None else ""))
    return Badge(shift.verdict, text, VERDICT_CSS.get(shift.verdict, "same"), title)


def interval_bounds(interval: Optional[IntervalOut]) -> Tuple[Optional[float], Optional[float]]:
    if interval is None:
        return None, None
    return interval.low, interval.high


def device_chart(compare: CompareOut, device: DeviceOut) -> DeviceChart:
    """Accuracy (or, when no variant has one, model size) against p50 latency; a cell
    whose figures are missing, NaN or infinite is listed as not placed."""
    names = {m.id: m.name for m in compare.models}
    cells = [c for c in compare.cells if c.device_id == device.id]
    timed = [c for c in cells if finite(c.p50_ms) is not None]
    if any(finite(c.accuracy) is not None for c in timed):
        metric = next(c.accuracy_metric for c in timed if finite(c.accuracy) is not None)
        y_label = metric_name(metric)
        placed = [c for c in timed if finite(c.accuracy) is not None]
        points = [charts.Point(names[c.model_id], c.result_id, c.p50_ms, c.accuracy, c.pareto,
                               *interval_bounds(c.p50_interval), *interval_bounds(c.accuracy_interval))
                  for c in placed]
    else:
        y_label = "model size (MiB), lower is better"
        placed = [c for c in timed if c.model_size_bytes is not None]
        sizes = [c.model_size_bytes / 1024**2 for c in placed]
        fronts = pareto_flags([(-s, c.p50_ms) for s, c in zip(sizes, placed)])
        points = [charts.Point(names[c.model_id], c.result_id, c.p50_ms, s, f,
                               *interval_bounds(c.p50_interval))
                  for c, s, f in zip(placed, sizes, fronts)]
    shown = {c.result_id for c in placed}
    missing = [names[c.model_id] for c in cells if c.result_id not in shown]
    chart = charts.scatter(points, "p50 latency (ms)", y_label) if points else None
    return DeviceChart(device, chart, y_label, missing)


# ---------------------------------------------------------------- jobs


@dataclass
class RunLine:
    id: int
    model: str
    device: str
    state: str
    attempt: str
    progress: str
    error: Optional[str]
    result_id: Optional[int]


@dataclass
class JobCard:
    job: JobOut
    models: List[str]
    summary: Dict[str, int]
    segments: List[charts.Segment]
    runs: List[RunLine]
    active: bool


def progress_text(progress: Optional[dict]) -> str:
    if not progress:
        return ""
    return ", ".join(f"{k} {v}" for k, v in list(progress.items())[:4])


def run_device_name(device_id: Optional[int], device_names: Mapping[int, str]) -> str:
    """The device that took the run; a pool run no device has taken yet is unassigned."""
    if device_id is None:
        return "unassigned"
    return device_names.get(device_id, f"device {device_id}")


def job_card(job: JobOut, model_names: Mapping[int, str], device_names: Mapping[int, str]) -> JobCard:
    finished = sum(job.counts.get(str(s), 0) for s in RunState if s.is_final)
    summary = {"queued": job.counts.get("queued", 0), "leased": job.counts.get("leased", 0),
               "running": job.counts.get("running", 0), "done": finished}
    runs = [RunLine(r.id, model_names.get(r.model_id, f"model {r.model_id}"),
                    run_device_name(r.device_id, device_names), str(r.state),
                    f"{r.attempt}/{r.max_attempts}", progress_text(r.progress), r.error, r.result_id)
            for r in job.runs]
    return JobCard(job, [model_names.get(m, f"model {m}") for m in job.models], summary,
                   charts.progress_segments(summary, PROGRESS_ORDER), runs,
                   job.state in ACTIVE_JOB_STATES)
