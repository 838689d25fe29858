"""The dashboard's regression watch: ``/history`` (every series with results,
the baselines and the newest regressions) and ``/history/series`` (one series
over time: latency p50 with its interval and accuracy, version changes, the
baseline and the regressed points, each point linked to its result)."""

from typing import Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from edgefarm.shared.contract.ids import MAX_ID
from edgefarm.shared.contract.watch import Series

from ..services import watch
from .errors import DashboardRoute
from .render import page
from .session import Viewer, current_viewer
from .timeline import timeline

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)
RECENT = 20  # regressions listed on the index


@router.get("/history")
def history_index(request: Request, viewer: Viewer = Depends(current_viewer)) -> Response:
    ctx = request.app.state.ctx
    baselines = watch.list_baselines(ctx, limit=200).items
    held = {(b.series.family, b.series.variant, b.series.device_id, b.series.runtime): b.result_id
            for b in baselines}
    rows = [(s, name, count, held.get((s.family, s.variant, s.device_id, s.runtime)))
            for s, name, count in watch.series_list(ctx)]
    return page(request, "history_index.html", viewer=viewer, nav="history", rows=rows,
                regressions=watch.recent_regressions(ctx, RECENT))


@router.get("/history/series")
def history_page(
    request: Request, family: str = Query(..., min_length=1, max_length=200),
    variant: str = Query(..., min_length=1, max_length=200), device: int = Query(..., ge=1, le=MAX_ID),
    runtime: str = Query(..., min_length=1, max_length=32), result: Optional[int] = None,
    viewer: Viewer = Depends(current_viewer),
) -> Response:
    ctx = request.app.state.ctx
    series = Series(family=family, variant=variant, device_id=device, runtime=runtime)
    found = watch.history(ctx, series)
    regressions = watch.list_regressions(ctx, family=family, limit=200).items
    regressions = [r for r in regressions if r.series == series][:50]
    return page(request, "history.html", viewer=viewer, nav="history", history=found,
                latency=timeline(found, "p50_ms"), accuracy=timeline(found, "accuracy"),
                regressions=regressions, points=list(reversed(found.points)), selected=result)
