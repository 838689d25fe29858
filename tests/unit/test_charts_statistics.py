"""Chart geometry that tells the truth: scatter labels beside their own points without
overlaps, error bars from intervals, and a histogram over the range the samples cover."""

import random

import pytest

pytest.importorskip("fastapi")

from edgefarm.server.web import charts  # noqa: E402
from edgefarm.server.web.views import shift_badge  # noqa: E402
from edgefarm.shared.contract.schemas import ShiftOut  # noqa: E402


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _gap(p, box):
    dx = max(box[0] - p.x, 0.0, p.x - box[2])
    dy = max(box[1] - p.y, 0.0, p.y - box[3])
    return (dx * dx + dy * dy) ** 0.5


@pytest.mark.parametrize("seed", range(6))
def test_labels_sit_near_their_points_and_never_overlap(seed):
    rng = random.Random(seed)
    names = ["digits-mlp-fp32", "digits-mlp-fp16", "digits-mlp-dynamic", "digits-mlp-int8",
             "digits-mlp-pruned-0.5", "digits-mlp-pruned-0.9"]
    # clustered points, three of them on the very same spot (the stacked-labels case)
    points = [charts.Point(n, i, 0.0200 + rng.random() * 0.0003, 0.95 + rng.random() * 0.004, True)
              for i, n in enumerate(names)]
    for p in points[1:3]:
        p.x_value, p.y_value = points[0].x_value, points[0].y_value
    chart = charts.scatter(points, "p50 latency (ms)", "top-1")
    frame = chart.frame
    boxes = [p.label_box for p in chart.points]
    for i, a in enumerate(boxes):
        assert frame.left <= a[0] and a[2] <= frame.x1 and a[3] <= frame.y1
        assert not any(_overlap(a, b) for b in boxes[i + 1:]), (seed, i)
    for p in chart.points:
        assert _gap(p, p.label_box) <= 130
        assert p.leader == (_gap(p, p.label_box) > 12)
        width = charts.label_width(p.model)
        assert p.label_box[2] - p.label_box[0] == pytest.approx(width)
        # the anchor puts the text where the box is: start at its left, end at its right
        edge = {"start": p.label_box[0], "end": p.label_box[2],
                "middle": (p.label_box[0] + p.label_box[2]) / 2}[p.label_anchor]
        assert edge == pytest.approx(p.label_x, abs=0.2)
    # spread points get their label right beside them, no leader
    spread = charts.scatter([charts.Point("a", 1, 1.0, 0.5, True), charts.Point("b", 2, 9.0, 0.9, True)],
                            "x", "y")
    assert not any(p.leader for p in spread.points)
    assert all(_gap(p, p.label_box) <= 10 for p in spread.points)


def test_error_bars_come_from_the_intervals_and_fit_the_axes():
    points = [charts.Point("a", 1, 10.0, 0.80, True, 9.0, 11.5, 0.70, 0.86),
              charts.Point("b", 2, 20.0, 0.90, True, None, None, 0.88, 0.99)]
    chart = charts.scatter(points, "x", "y")
    a, b = chart.points
    assert a.bar_x[0] < a.x < a.bar_x[1] and a.bar_y[0] > a.y > a.bar_y[1]
    assert b.bar_x is None and b.bar_y is not None
    for p in chart.points:  # no label is drawn across an error bar
        for q in chart.points:
            if q.bar_y:
                assert not _overlap(p.label_box, (q.x - 1, q.bar_y[1], q.x + 1, q.bar_y[0]))
            if q.bar_x:
                assert not _overlap(p.label_box, (q.bar_x[0], q.y - 1, q.bar_x[1], q.y + 1))
    top = min(t.pos for t in chart.y_ticks)
    bottom = max(t.pos for t in chart.y_ticks)
    assert top <= b.bar_y[1] and a.bar_y[0] <= bottom


def test_histogram_covers_the_samples_not_their_far_outliers():
    rng = random.Random(3)
    samples = [0.0195 + rng.random() * 0.0009 for _ in range(37_000)] + [1.75, 0.9, 1.2]
    h = charts.histogram(samples)
    assert h.kept == 37_003 and h.above == 3 and h.below == 0 and h.shown == 37_000
    assert h.lo == pytest.approx(min(samples)) and h.hi < 0.03
    counts = [bar.count for bar in h.bars]
    assert len(counts) == charts.MAX_BINS and max(counts) < 0.1 * h.shown
    assert sum(counts) == h.shown
    # without outliers the range is exactly the samples' min to max
    plain = charts.histogram([1.0, 2.0, 3.0, 2.5])
    assert (plain.lo, plain.hi, plain.shown, plain.above) == (1.0, 3.0, 4, 0)


def test_verdict_badges_say_what_the_interval_says():
    faster = shift_badge(ShiftOut(verdict="better", estimate=-0.5, low=-0.7, high=-0.3,
                                  method="Hodges-Lehmann"), "latency")
    assert (faster.text, faster.css) == ("faster", "better")
    assert "−500 µs" in faster.title or "−0.50 ms" in faster.title
    none = shift_badge(ShiftOut(verdict="no significant difference", estimate=0.001, low=-0.01,
                                high=0.012, method="McNemar exact", p_value=0.8), "accuracy")
    assert none.text == "no significant difference" and "p = 0.8" in none.title
    untestable = shift_badge(ShiftOut(verdict="not testable", reason="no per-sample data"), "accuracy")
    assert untestable.css == "untestable" and untestable.title == "no per-sample data"
    assert shift_badge(None, "latency") is None
