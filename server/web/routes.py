"""The dashboard's pages (server-rendered HTML): overview, devices, jobs with
cancel, results with filters, sorting and CSV/JSON export, one result, and
the family comparison. Data comes from the services (``edgefarm.server.services``)
as ``edgefarm.shared.contract.schemas`` models; ``views`` shapes it and ``render``
draws it. The pages' route class (``errors.DashboardRoute``) shows a refusal of
the services as an error page."""

import json
from typing import Annotated, Dict, List, Optional, Tuple

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from edgefarm.shared.contract.ids import MAX_ID
from edgefarm.shared.contract.schemas import ResultOut

from ..services import devices, jobs, layers, overview, results, watch
from ..services.pages import Page
from . import charts, login, views
from .errors import DashboardError, DashboardRoute
from .render import page
from .session import Viewer, check_csrf, current_viewer

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)
router.include_router(login.router)
RESULT_PAGE = 50  # results per page of the results table
JOB_LIMIT = 30  # job cards on the jobs page
RUN_LINES = 50  # run lines per job card


@router.get("/")
def overview_page(request: Request, viewer: Viewer = Depends(current_viewer)) -> Response:
    ctx = request.app.state.ctx
    listed = devices.list_devices(ctx)
    summary = overview.summary(ctx)
    statuses: Dict[str, int] = {}
    for device in listed:
        statuses[str(device.status)] = statuses.get(str(device.status), 0) + 1
    return page(request, "overview.html", viewer=viewer, nav="overview", devices=listed,
                statuses=statuses, families=summary.families, result_count=summary.result_count,
                job_counts=summary.job_counts, regressions=watch.recent_regressions(ctx, 5))


@router.get("/devices")
def devices_page(request: Request, viewer: Viewer = Depends(current_viewer)) -> Response:
    listed = devices.list_devices(request.app.state.ctx)
    return page(request, "devices.html", viewer=viewer, nav="devices", devices=listed)


#: A row id in a page's path (1 .. 2^31-1): out of range is a 422 page, not a database error.
PageId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("/jobs")
def jobs_page(request: Request, cancelled: Optional[int] = None,
              viewer: Viewer = Depends(current_viewer)) -> Response:
    ctx = request.app.state.ctx
    listed = jobs.recent_jobs(ctx, JOB_LIMIT, RUN_LINES)
    model_names, device_names = overview.names(ctx)
    cards = [views.job_card(job, model_names, device_names) for job in listed]
    return page(request, "jobs.html", viewer=viewer, nav="jobs", cards=cards, cancelled=cancelled,
                limit=JOB_LIMIT, run_lines=RUN_LINES)


@router.post("/jobs/{job_id}/cancel")
def cancel_from_page(request: Request, job_id: PageId, csrf: str = Form(""), reason: str = Form(""),
                     viewer: Viewer = Depends(current_viewer)) -> Response:
    """The form's twin of ``POST /api/v1/jobs/{id}/cancel`` (same service, same checks)."""
    check_csrf(viewer, csrf)
    if not viewer.can_cancel:
        raise DashboardError(403, "Forbidden", "Only user and admin sessions can cancel jobs.")
    why = reason.strip()[:500] or f"cancelled from the dashboard by {viewer.label}"
    jobs.cancel(request.app.state.ctx, job_id, why)
    return RedirectResponse(f"/jobs?cancelled={job_id}", status_code=303)


def page_of_results(request: Request, filters: Dict[str, str], sort: str, order: str,
                    cursor: views.Cursor) -> Tuple[Page[ResultOut], List[ResultOut], List[views.ResultRow]]:
    """The page of results the page shows (and the exports hold): ``RESULT_PAGE`` results,
    newest first from the cursor, then ordered by the chosen column."""
    ctx = request.app.state.ctx
    if cursor.newer_than is not None:  # the page before: the oldest results newer than it
        found = results.list_results(ctx, ctx.base_url(request), limit=RESULT_PAGE,
                                     after=cursor.newer_than, **filters)
        found.items.reverse()
    else:
        found = results.list_results(ctx, ctx.base_url(request), limit=RESULT_PAGE,
                                     before=cursor.older_than, newest_first=True, **filters)
    rows = views.sort_rows([views.result_row(r) for r in found.items], sort, order)
    by_id = {r.id: r for r in found.items}
    return found, [by_id[row.id] for row in rows], rows


@router.get("/results")
def results_page(request: Request, viewer: Viewer = Depends(current_viewer)) -> Response:
    filters, sort, order = views.read_table_params(request.query_params)
    cursor = views.read_cursor(request.query_params)
    found, _, rows = page_of_results(request, filters, sort, order, cursor)
    choices = overview.filter_choices(request.app.state.ctx)
    kept = views.kept_params(filters, sort, order)
    links = views.page_links(kept, cursor, [r.id for r in found.items], found.cursor is not None)
    export = views.query(**kept, **cursor.params())
    return page(request, "results.html", viewer=viewer, nav="results", rows=rows, choices=choices,
                filters=filters, sort=sort, order=order, export=export, total=found.total,
                links=links, headers=views.column_headers(filters, sort, order),
                labels=views.FILTER_LABELS)


def _shown(request: Request) -> List[ResultOut]:
    filters, sort, order = views.read_table_params(request.query_params)
    return page_of_results(request, filters, sort, order, views.read_cursor(request.query_params))[1]


@router.get("/results.csv")
def results_csv(request: Request, _: Viewer = Depends(current_viewer)) -> Response:
    return Response(results.to_csv(_shown(request)), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="edgefarm-results.csv"'})


@router.get("/results.json")
def results_json(request: Request, _: Viewer = Depends(current_viewer)) -> Response:
    body = json.dumps([r.model_dump(mode="json") for r in _shown(request)], indent=1)
    return Response(body, media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="edgefarm-results.json"'})


@router.get("/results/{result_id}")
def result_page(request: Request, result_id: PageId, viewer: Viewer = Depends(current_viewer)) -> Response:
    ctx = request.app.state.ctx
    result = results.get_result(ctx, result_id, ctx.base_url(request))
    latency = result.latency_ms
    histogram = None
    if latency and latency.samples:
        histogram = charts.histogram(latency.samples, {"p50": latency.p50, "p90": latency.p90})
    metrics = result.metrics.model_dump(exclude={"per_class_iou", "per_sample"}) if result.metrics else {}
    per_class = (result.metrics.per_class_iou or {}) if result.metrics else {}
    table = layers.layer_table(result)
    return page(request, "result.html", viewer=viewer, nav="results", result=result,
                row=views.result_row(result), variant=views.variant_name(result.variant),
                histogram=histogram, metrics={k: v for k, v in metrics.items() if v is not None},
                per_class=per_class, regressions=watch.list_regressions(ctx, result=result_id).items,
                environment=result.environment.model_dump() if result.environment else {},
                table=table, op_bars=charts.op_type_bars(table.rows))


@router.get("/compare")
def compare_index(request: Request, viewer: Viewer = Depends(current_viewer)) -> Response:
    families = overview.families(request.app.state.ctx)
    return page(request, "compare_index.html", viewer=viewer, nav="compare", families=families)


@router.get("/compare/{family}")
def compare_page(request: Request, family: str, platform: Optional[str] = None,
                 runtime: Optional[str] = None, viewer: Viewer = Depends(current_viewer)) -> Response:
    ctx = request.app.state.ctx
    compare = results.compare_family(ctx, family, ctx.base_url(request), platform or None,
                                     runtime or None)
    matrix = views.compare_matrix(compare)
    base_name = next((row.model.name for row in matrix if row.is_base), "")
    return page(request, "compare.html", viewer=viewer, nav="compare", compare=compare,
                matrix=matrix, base_name=base_name, badge=views.shift_badge,
                regressions=watch.list_regressions(ctx, family=family, limit=10).items,
                device_charts=[views.device_chart(compare, d) for d in compare.devices],
                platform=platform or "", runtime=runtime or "")
