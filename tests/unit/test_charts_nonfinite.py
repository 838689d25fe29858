"""The dashboard's charts and number formats given NaN and infinite figures (rows
stored before reports were checked): such values are left out of charts and
shown as missing, never a failed page."""

import math

import pytest

pytest.importorskip("fastapi", reason="the dashboard is server code (the [server] extra), not installed on the devices' Python")

from edgefarm.server.web import charts  # noqa: E402
from edgefarm.server.web.render import fmt_ms, fmt_number, fmt_points, fmt_ratio, fmt_score  # noqa: E402

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("samples", [[NAN, 1.0, 2.0], [1.0, INF, 2.0, -INF], [1.0, NAN, 3.0, 2.0]])
def test_histogram_leaves_out_non_finite_samples_and_markers(samples):
    chart = charts.histogram(samples, {"p50": NAN, "p90": 2.0})
    finite = [v for v in samples if math.isfinite(v)]
    assert sum(bar.count for bar in chart.bars) == len(finite)
    assert [name for name, _ in chart.markers] == ["p90"]
    assert all(math.isfinite(bar.x) and math.isfinite(bar.height) for bar in chart.bars)


def test_histogram_of_only_non_finite_samples_is_none():
    assert charts.histogram([NAN, INF]) is None


def test_scatter_leaves_out_points_without_finite_coordinates():
    points = [charts.Point("a", 1, NAN, 0.5, True), charts.Point("b", 2, 1.0, INF, True),
              charts.Point("c", 3, 2.0, 0.6, True)]
    chart = charts.scatter(points, "x", "y")
    assert [p.model for p in chart.points] == ["c"]
    assert all(math.isfinite(t.pos) for t in chart.x_ticks + chart.y_ticks)


@pytest.mark.parametrize("fmt", [fmt_ms, fmt_number, fmt_points, fmt_ratio, fmt_score])
@pytest.mark.parametrize("value", [NAN, INF, -INF, None])
def test_formats_show_non_finite_as_missing(fmt, value):
    assert fmt(value) == "—"
