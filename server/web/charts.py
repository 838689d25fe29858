"""The geometry of the dashboard's inline SVG charts, computed on the server:
a scatter plot with its Pareto front (compare page), a latency histogram
(result page) and a stacked progress bar (jobs page). Pure functions with no
I/O; ``templates/_charts.html`` turns the geometry into SVG elements."""

import bisect
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

#: Chart text is drawn at the page's body size (``style.css``: 14px, chart text 13px); the
#: SVG is never scaled up (``width``/``height`` in pixels, ``max-width: 100%``), so a label's
#: width in pixels can be estimated from its length.
FONT_PX = 13.0
CHAR_PX = 0.62 * FONT_PX  # a generous average advance of a sans-serif character
SCATTER_FRAME = Frame(width=560, height=380, left=64, right=34, top=18, bottom=54)


@dataclass
class Point:
    model: str
    result_id: int
    x_value: float
    y_value: float
    pareto: bool
    x_low: Optional[float] = None  # interval of x_value (error bar), in data units
    x_high: Optional[float] = None
    y_low: Optional[float] = None
    y_high: Optional[float] = None
    x: float = 0.0
    y: float = 0.0
    label_x: float = 0.0
    label_y: float = 0.0
    label_anchor: str = "start"
    label_box: Tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    leader: bool = False  # the label sits away from the point: a line joins them
    bar_x: Optional[Tuple[float, float]] = None  # error bar pixels (left, right)
    bar_y: Optional[Tuple[float, float]] = None  # (bottom, top)


@dataclass
class Scatter:
    frame: Frame
    points: List[Point]
    pareto_path: str
    x_ticks: List[Tick]
    y_ticks: List[Tick]
    x_label: str
    y_label: str


def _span(values: Sequence[Optional[float]]) -> List[float]:
    return [v for v in values if is_finite(v)]


def scatter(points: List[Point], x_label: str, y_label: str,
            frame: Frame = SCATTER_FRAME) -> Scatter:
    """Accuracy (y, higher is better) against latency (x, from 0) with each point's
    interval as error bars; front joined by latency. Points without finite coordinates are
    left out."""
    points = [p for p in points if is_finite(p.x_value) and is_finite(p.y_value)]
    xs = _span([v for p in points for v in (p.x_value, p.x_high)]) or [0.0, 1.0]
    ys = _span([v for p in points for v in (p.y_value, p.y_low, p.y_high)]) or [0.0, 1.0]
    x_axis = axis(0.0, max(xs) * 1.05, frame.left, frame.x1, zero=True)
    y_pad = (max(ys) - min(ys)) * 0.08
    y_axis = axis(min(ys) - y_pad, max(ys) + y_pad, frame.y1, frame.top)
    for p in points:
        p.x, p.y = x_axis(p.x_value), y_axis(p.y_value)
        if is_finite(p.x_low) and is_finite(p.x_high):
            p.bar_x = (x_axis(p.x_low), x_axis(p.x_high))
        if is_finite(p.y_low) and is_finite(p.y_high):
            p.bar_y = (y_axis(p.y_low), y_axis(p.y_high))
    place_labels(points, frame)
    front = sorted((p for p in points if p.pareto), key=lambda p: (p.x_value, -p.y_value))
    path = " ".join(f"{p.x},{p.y}" for p in front) if len(front) > 1 else ""
    return Scatter(frame, points, path, x_axis.ticks(), y_axis.ticks(), x_label, y_label)


def label_width(text: str) -> float:
    return len(text) * CHAR_PX


def _candidates(p: Point, width: float):
    """Label positions around a point, nearest first: (text x, baseline y, anchor, box)."""
    ascent, descent = FONT_PX * 0.8, FONT_PX * 0.3
    for radius in (9, 22, 36, 52, 70, 92, 118):
        for dx, dy in ((1, 0), (-1, 0), (0, -1), (0, 1), (1, -1), (1, 1), (-1, -1), (-1, 1)):
            cx, cy = p.x + dx * radius, p.y + dy * radius * 0.8
            if dx > 0:
                anchor, left = "start", cx
            elif dx < 0:
                anchor, left = "end", cx - width
            else:
                anchor, left = "middle", cx - width / 2
            baseline = cy + (ascent - FONT_PX * 0.5 if dy == 0 else (0 if dy < 0 else ascent))
            yield (round(cx, 1), round(baseline, 1), anchor,
                   (left, baseline - ascent, left + width, baseline + descent))


def place_labels(points: List[Point], frame: Frame) -> None:
    """Put each point's name near it, clear of every point, every error bar and every
    name placed before, inside the plot; nearest free position first, a leader line when
    it had to move away. Crowded points (most neighbours) are placed first."""
    taken = [(p.x - 7, p.y - 7, p.x + 7, p.y + 7) for p in points]
    taken += [(p.bar_x[0], p.y - 4, p.bar_x[1], p.y + 4) for p in points if p.bar_x]
    taken += [(p.x - 4, p.bar_y[1], p.x + 4, p.bar_y[0]) for p in points if p.bar_y]

    def neighbours(p: Point) -> int:
        return sum(1 for q in points if abs(q.x - p.x) < 60 and abs(q.y - p.y) < 30)

    for p in sorted(points, key=lambda q: (-neighbours(q), q.x, q.y)):
        width = label_width(p.model)
        best = None
        for option in _candidates(p, width):
            box = option[3]
            inside = (box[0] >= frame.left + 2 and box[2] <= frame.x1 - 2 and box[1] >= 0
                      and box[3] <= frame.y1 - 2)
            if not inside:
                continue
            clashes = sum(1 for other in taken if _overlap(box, other))
            if best is None or clashes < best[0]:
                best = (clashes, option)
            if clashes == 0:
                break
        if best is None:  # nothing fits inside the plot: right of the point
            best = (0, next(_candidates(p, width)))
        x, y, anchor, box = best[1]
        p.label_x, p.label_y, p.label_anchor, p.label_box = x, y, anchor, box
        p.leader = _distance(p, box) > 12
        taken.append(box)


def _distance(p: Point, box: Tuple[float, float, float, float]) -> float:
    dx = max(box[0] - p.x, 0.0, p.x - box[2])
    dy = max(box[1] - p.y, 0.0, p.y - box[3])
    return math.hypot(dx, dy)


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
    shown: int = 0  # samples inside the drawn range
    kept: int = 0  # finite samples kept with the result
    below: int = 0  # samples left of the range (far outliers)
    above: int = 0  # samples right of it
    lo: float = 0.0
    hi: float = 0.0


def bin_count(n: int) -> int:
    """Square-root rule, at most MAX_BINS; one bin when there is one sample."""
    return max(1, min(MAX_BINS, math.ceil(math.sqrt(n))))


def count_axis(most: int, a: float, b: float) -> Axis:
    """An axis of whole counts from 0: steps of 1, 2, 3, 5, 10, ..."""
    step = max(1, math.ceil(nice_step(max(most, 1), 4)))
    return Axis(0, max(1, math.ceil(most / step)) * step, step, a, b)


HISTOGRAM_FRAME = Frame(width=720, height=280, left=64, right=28, top=24, bottom=48)


def _quantile(ordered: Sequence[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    below = int(math.floor(position))
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def histogram_range(ordered: Sequence[float]) -> Tuple[float, float]:
    """The range the bulk of the samples covers: from the smallest to the largest sample
    inside the fences ``[p1 - 2w, p99 + 2w]`` (``w = p99 - p1``), so a few far outliers do not
    squeeze every other sample into one bar; the outliers are counted, not drawn."""
    p1, p99 = _quantile(ordered, 0.01), _quantile(ordered, 0.99)
    spread = p99 - p1
    low_fence, high_fence = p1 - 2 * spread, p99 + 2 * spread
    first = bisect.bisect_left(ordered, low_fence)
    last = bisect.bisect_right(ordered, high_fence) - 1
    return ordered[first], ordered[last]


def histogram(samples: Sequence[float], markers: Optional[Dict[str, float]] = None,
              frame: Frame = HISTOGRAM_FRAME) -> Optional[Histogram]:
    """Bars of the finite samples over the range they cover (``histogram_range``; NaN and
    infinities are left out), None when none is."""
    ordered = sorted(value for value in samples if is_finite(value))
    if not ordered:
        return None
    lo, hi = histogram_range(ordered)
    below = sum(1 for v in ordered if v < lo)
    above = sum(1 for v in ordered if v > hi)
    inside = ordered[below:len(ordered) - above]
    bins = bin_count(len(inside)) if hi > lo else 1
    if hi == lo:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    width = (hi - lo) / bins
    counts = [0] * bins
    for value in inside:
        counts[min(bins - 1, int((value - lo) / width))] += 1
    x_axis = axis(lo, hi, frame.left, frame.x1, count=8)
    y_axis = count_axis(max(counts), frame.y1, frame.top)
    bars = []
    for i, count in enumerate(counts):
        left, right = x_axis(lo + i * width), x_axis(lo + (i + 1) * width)
        top = y_axis(count)
        bars.append(Bar(left + 0.5, top, max(right - left - 1, 0.5), round(frame.y1 - top, 1),
                        count, lo + i * width, lo + (i + 1) * width))
    marks = [(name, x_axis(v)) for name, v in (markers or {}).items()
             if is_finite(v) and x_axis.lo <= v <= x_axis.hi]
    return Histogram(frame, bars, x_axis.ticks(), y_axis.ticks(), marks, shown=len(inside),
                     kept=len(ordered), below=below, above=above, lo=lo, hi=hi)


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
