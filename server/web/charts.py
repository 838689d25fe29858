"""The geometry of the dashboard's inline SVG charts, computed on the server:
a scatter plot with its Pareto front (compare page), a latency histogram
(result page) and a stacked progress bar (jobs page). Pure functions with no
I/O; ``templates/_charts.html`` turns the geometry into SVG elements."""

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

MAX_BINS = 40


def is_finite(value: Optional[float]) -> bool:
    """A number a chart can place: not None, NaN or infinite (rows stored by older
    servers, or written to the database directly, may hold NaN)."""
    return value is not None and math.isfinite(value)


@dataclass(frozen=True)
class Frame:
    """An SVG canvas and the plot area inside its margins."""

    width: int = 420
    height: int = 320
    left: int = 58
    right: int = 16
    top: int = 16
    bottom: int = 50

    @property
    def x1(self) -> int:
        return self.width - self.right

    @property
    def y1(self) -> int:
        return self.height - self.bottom


@dataclass
class Tick:
    pos: float
    label: str


@dataclass
class Axis:
    lo: float
    hi: float
    step: float
    a: float  # pixel of lo
    b: float  # pixel of hi

    def __call__(self, value: float) -> float:
        return round(self.a + (value - self.lo) / (self.hi - self.lo) * (self.b - self.a), 1)

    def ticks(self) -> List[Tick]:
        count = int(round((self.hi - self.lo) / self.step))
        values = [self.lo + i * self.step for i in range(count + 1)]
        return [Tick(self(v), tick_label(v, self.step)) for v in values]


def nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if raw <= multiple * magnitude * (1 + 1e-9):
            return multiple * magnitude
    return 10 * magnitude


def tick_label(value: float, step: float) -> str:
    decimals, scaled = 0, step
    while abs(scaled - round(scaled)) > 1e-6 and decimals < 6:
        scaled, decimals = scaled * 10, decimals + 1
    return f"{value:,.{decimals}f}"


def axis(lo: float, hi: float, a: float, b: float, count: int = 5, zero: bool = False) -> Axis:
    """A linear axis over [lo, hi] widened to round tick values (and to 0 if asked)."""
    if zero:
        lo = min(lo, 0.0)
    if hi - lo <= 0:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = (lo if zero and lo == 0 else lo - pad), hi + pad
    step = nice_step(hi - lo, count)
    lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    return Axis(lo, hi, step, a, b)


# ---------------------------------------------------------------- scatter


@dataclass
class Point:
    model: str
    result_id: int
    x_value: float
    y_value: float
    pareto: bool
    x: float = 0.0
    y: float = 0.0
    label_x: float = 0.0
    label_y: float = 0.0


@dataclass
class Scatter:
    frame: Frame
    points: List[Point]
    pareto_path: str
    x_ticks: List[Tick]
    y_ticks: List[Tick]
    x_label: str
    y_label: str


def scatter(points: List[Point], x_label: str, y_label: str, frame: Frame = Frame()) -> Scatter:
    """Accuracy (y, higher is better) against latency (x, from 0); front joined by latency.
    Points without finite coordinates are left out."""
    points = [p for p in points if is_finite(p.x_value) and is_finite(p.y_value)]
    xs = [p.x_value for p in points] or [0.0, 1.0]
    ys = [p.y_value for p in points] or [0.0, 1.0]
    x_axis = axis(0.0, max(xs) * 1.05, frame.left, frame.x1, zero=True)
    y_pad = (max(ys) - min(ys)) * 0.08
    y_axis = axis(min(ys) - y_pad, max(ys) + y_pad, frame.y1, frame.top)
    for p in points:
        p.x, p.y = x_axis(p.x_value), y_axis(p.y_value)
    place_labels(points, frame)
    front = sorted((p for p in points if p.pareto), key=lambda p: (p.x_value, -p.y_value))
    path = " ".join(f"{p.x},{p.y}" for p in front) if len(front) > 1 else ""
    return Scatter(frame, points, path, x_axis.ticks(), y_axis.ticks(), x_label, y_label)


def place_labels(points: List[Point], frame: Frame, char_px: float = 6.6) -> None:
    """Put each point's name beside it, clear of every point and of names placed before."""
    taken = [(p.x - 7, p.y - 7, p.x + 7, p.y + 7) for p in points]
    for p in sorted(points, key=lambda q: (q.x, q.y)):
        width = len(p.model) * char_px
        right, left = 10, -10 - width
        options = [(right, 4), (left, 4), (right, 18), (right, -10), (left, 18), (left, -10),
                   (right, 32), (left, 32), (right, -24), (left, -24)]
        chosen = options[0]
        for dx, dy in options:
            box = (p.x + dx, p.y + dy - 11, p.x + dx + width, p.y + dy + 2)
            inside = box[0] >= frame.left and box[2] <= frame.width - 2 and box[1] >= 0
            if inside and not any(_overlap(box, other) for other in taken):
                chosen = (dx, dy)
                break
        p.label_x, p.label_y = round(p.x + chosen[0], 1), round(p.y + chosen[1], 1)
        taken.append((p.label_x, p.label_y - 11, p.label_x + width, p.label_y + 2))


def _overlap(a: Tuple[float, ...], b: Tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# ---------------------------------------------------------------- histogram


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    lo: float
    hi: float


@dataclass
class Histogram:
    frame: Frame
    bars: List[Bar]
    x_ticks: List[Tick]
    y_ticks: List[Tick]
    markers: List[Tuple[str, float]] = field(default_factory=list)  # (name, x pixel)


def bin_count(n: int) -> int:
    """Square-root rule, at most MAX_BINS; one bin when there is one sample."""
    return max(1, min(MAX_BINS, math.ceil(math.sqrt(n))))


def count_axis(most: int, a: float, b: float) -> Axis:
    """An axis of whole counts from 0: steps of 1, 2, 3, 5, 10, ..."""
    step = max(1, math.ceil(nice_step(max(most, 1), 4)))
    return Axis(0, max(1, math.ceil(most / step)) * step, step, a, b)


HISTOGRAM_FRAME = Frame(width=720, height=280, left=64, right=28, top=24, bottom=48)


def histogram(samples: Sequence[float], markers: Optional[Dict[str, float]] = None,
              frame: Frame = HISTOGRAM_FRAME) -> Optional[Histogram]:
    """Bars of the finite samples (NaN and infinities are left out), None when none is."""
    samples = [value for value in samples if is_finite(value)]
    if not samples:
        return None
    lo, hi = min(samples), max(samples)
    bins = bin_count(len(samples)) if hi > lo else 1
    if hi == lo:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    width = (hi - lo) / bins
    counts = [0] * bins
    for value in samples:
        counts[min(bins - 1, int((value - lo) / width))] += 1
    x_axis = axis(lo, hi, frame.left, frame.x1, count=8)
    y_axis = count_axis(max(counts), frame.y1, frame.top)
    bars = []
    for i, count in enumerate(counts):
        left, right = x_axis(lo + i * width), x_axis(lo + (i + 1) * width)
        top = y_axis(count)
        bars.append(Bar(left + 0.5, top, max(right - left - 1, 0.5), round(frame.y1 - top, 1),
                        count, lo + i * width, lo + (i + 1) * width))
    marks = [(name, x_axis(v)) for name, v in (markers or {}).items() if is_finite(v)]
    return Histogram(frame, bars, x_axis.ticks(), y_axis.ticks(), marks)


# ---------------------------------------------------------------- progress


@dataclass
class Segment:
    state: str
    count: int
    x: float
    width: float


def progress_segments(counts: Dict[str, int], order: Sequence[str]) -> List[Segment]:
    """A stacked bar over 0..100 (the SVG scales it), one segment per non-empty state."""
    total = sum(counts.get(s, 0) for s in order)
    segments, x = [], 0.0
    for state in order:
        count = counts.get(state, 0)
        if total and count:
            width = 100.0 * count / total
            segments.append(Segment(state, count, round(x, 3), round(width, 3)))
            x += width
    return segments


# ---------------------------------------------------------------- layers


@dataclass
class OpBar:
    op_type: str
    ms: float
    share: float
    layers: int
    y: float
    width: float


@dataclass
class OpBars:
    frame: Frame
    bars: List[OpBar]
    x_ticks: List[Tick]
    row_height: int


def op_type_bars(rows: Sequence[object], row_height: int = 22, most: int = 15) -> Optional[OpBars]:
    """Horizontal bars of time summed by op type over the timed layer ``rows`` (each with
    ``op_type`` and ``ms``), slowest first, at most ``most`` op types; None when no row is timed."""
    totals: Dict[str, List[float]] = {}
    for row in rows:
        ms = getattr(row, "ms", None)
        if is_finite(ms):
            entry = totals.setdefault(getattr(row, "op_type", None) or "?", [0.0, 0])
            entry[0] += ms
            entry[1] += 1
    if not totals:
        return None
    ranked = sorted(totals.items(), key=lambda item: -item[1][0])[:most]
    grand = sum(ms for ms, _ in totals.values())
    frame = Frame(width=720, height=16 + row_height * len(ranked) + 40, left=170, right=70, top=16, bottom=40)
    x_axis = axis(0.0, ranked[0][1][0], frame.left, frame.x1, count=6, zero=True)
    bars = [OpBar(op, ms, ms / grand if grand else 0.0, int(count), frame.top + i * row_height,
                  round(max(x_axis(ms) - frame.left, 0.5), 1))
            for i, (op, (ms, count)) in enumerate(ranked)]
    return OpBars(frame, bars, x_axis.ticks(), row_height)
