"""The geometry of a series' history chart (history page): one figure over the
results in time order, each point with its interval bar, linked to its result;
the baseline and its threshold as horizontal lines; runtime, agent and OS
version changes as vertical marks. Pure functions; ``templates/_timeline.html``
draws it as SVG. Points are evenly spaced in their order (the dates are on
the tick labels): benchmarks come in bursts, and a time scale would pile them up."""

from dataclasses import dataclass
from typing import List, Optional

from edgefarm.shared.contract.watch import HistoryOut

from .charts import Frame, Tick, axis, is_finite


@dataclass
class TimePoint:
    result_id: int
    value: float
    label: str  # the point's tooltip
    x: float
    y: float
    low_y: Optional[float] = None
    high_y: Optional[float] = None
    baseline: bool = False
    regressed: bool = False


@dataclass
class Change:
    x: float
    label: str


@dataclass
class Timeline:
    frame: Frame
    title: str
    y_label: str
    points: List[TimePoint]
    path: str
    y_ticks: List[Tick]
    x_ticks: List[Tick]
    changes: List[Change]
    baseline_y: Optional[float] = None
    limit_y: Optional[float] = None  # the threshold's line: past it is a regression


FRAME = Frame(width=760, height=300, left=64, right=48, top=18, bottom=46)


def timeline(history: HistoryOut, metric: str, frame: Frame = FRAME) -> Optional[Timeline]:
    """The chart of ``metric`` (``p50_ms`` or ``accuracy``) over the series, or None when
    no point has it."""
    rows = [p for p in history.points if is_finite(getattr(p, metric))]
    if not rows:
        return None
    latency = metric == "p50_ms"
    scale = 1.0 if latency else 100.0
    values = [getattr(p, metric) * scale for p in rows]
    bounds = [v for p in rows for v in ((p.p50_low, p.p50_high) if latency else ()) if is_finite(v)]
    base = next((getattr(p, metric) * scale for p in rows if p.baseline), None)
    limit = None
    if base is not None:
        limit = (base * (1 + history.thresholds.latency_pct / 100.0) if latency
                 else base - history.thresholds.accuracy_pp)
    span = values + bounds + [v for v in (base, limit) if v is not None]
    pad = (max(span) - min(span)) * 0.08
    y_axis = axis(max(min(span) - pad, 0.0) if latency else min(span) - pad, max(span) + pad,
                  frame.y1, frame.top)
    step = (frame.x1 - frame.left) / max(len(rows) - 1, 1)
    x_of = [round(frame.left + (step * i if len(rows) > 1 else (frame.x1 - frame.left) / 2), 1)
            for i in range(len(rows))]
    points = []
    for p, v, x in zip(rows, values, x_of):
        unit = "ms" if latency else f"% {p.accuracy_metric or ''}".rstrip()
        label = f"result {p.result_id}, {p.created_at:%Y-%m-%d %H:%M}: {v:.4g} {unit}"
        point = TimePoint(p.result_id, v, label, x, y_axis(v), baseline=p.baseline,
                          regressed=bool(p.regressions))
        if latency and is_finite(p.p50_low) and is_finite(p.p50_high):
            point.low_y, point.high_y = y_axis(p.p50_low), y_axis(p.p50_high)
        points.append(point)
    changes = [Change(x, "; ".join(p.changes)) for p, x in zip(rows, x_of) if p.changes and x > frame.left]
    shown = sorted({0, len(rows) - 1, *range(0, len(rows), max(1, len(rows) // 6))})
    x_ticks = [Tick(x_of[i], f"{rows[i].created_at:%m-%d %H:%M}") for i in shown]
    return Timeline(
        frame=frame, title="latency p50 with its 95% interval" if latency else "accuracy",
        y_label="p50 (ms)" if latency else f"{rows[0].accuracy_metric or 'accuracy'} (%)",
        points=points, path=" ".join(f"{p.x},{p.y}" for p in points), y_ticks=y_axis.ticks(),
        x_ticks=x_ticks, changes=changes, baseline_y=y_axis(base) if base is not None else None,
        limit_y=y_axis(limit) if limit is not None else None,
    )
