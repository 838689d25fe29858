"""The dashboard's pages (server-rendered HTML): overview, devices, jobs with
cancel, results with filters, sorting and CSV/JSON export, one result, and
the family comparison. Data comes from the API's own functions as
``edgefarm.shared.contract.schemas`` models; ``views`` shapes it and ``render`` draws it."""

import json
from typing import Dict, List, Optional, Tuple

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from edgefarm.shared.contract.schemas import JobCancel, ResultOut

from ..api.devices import list_devices
from ..api.jobs import cancel, list_jobs
from ..api.results import compare_family, get_result, query_results, to_csv
from ..problems import ProblemException
from . import charts, login, queries, views
from .render import page
from .session import DashboardError, Viewer, check_csrf, current_viewer

router = APIRouter(include_in_schema=False)
router.include_router(login.router)
RESULT_LIMIT = 5000
JOB_LIMIT = 30


def call_api(function, *args, **kwargs):
    """Run an API function; its problem (404, 409, ...) becomes an HTML error page."""
    try:
        return function(*args, **kwargs)
    except ProblemException as exc:
        raise DashboardError(exc.status, exc.title, exc.detail)


@router.get("/")
def overview(request: Request, viewer: Viewer = Depends(current_viewer)) -> Response:
    ctx = request.app.state.ctx
    devices = list_devices(ctx, viewer.principal)
    with ctx.db.read() as session:
        families, results = queries.families(session), queries.result_count(session)
        jobs = queries.job_counts(session)
    statuses: Dict[str, int] = {}
    for device in devices:
        statuses[str(device.status)] = statuses.get(str(device.status), 0) + 1
    return page(request, "overview.html", viewer=viewer, nav="overview", devices=devices,
                statuses=statuses, families=families, result_count=results, job_counts=jobs)


@router.get("/devices")
def devices_page(request: Request, viewer: Viewer = Depends(current_viewer)) -> Response:
    devices = list_devices(request.app.state.ctx, viewer.principal)
    return page(request, "devices.html", viewer=viewer, nav="devices", devices=devices)


@router.get("/jobs")
def jobs_page(request: Request, cancelled: Optional[int] = None,
              viewer: Viewer = Depends(current_viewer)) -> Response:
    ctx = request.app.state.ctx
    jobs = list_jobs(state=None, limit=JOB_LIMIT, offset=0, ctx=ctx, _=viewer.principal)
    with ctx.db.read() as session:
        model_names, device_names = queries.model_names(session), queries.device_names(session)
    cards = [views.job_card(job, model_names, device_names) for job in jobs]
    return page(request, "jobs.html", viewer=viewer, nav="jobs", cards=cards, cancelled=cancelled,
                limit=JOB_LIMIT)


@router.post("/jobs/{job_id}/cancel")
def cancel_from_page(request: Request, job_id: int, csrf: str = Form(""), reason: str = Form(""),
                     viewer: Viewer = Depends(current_viewer)) -> Response:
    """The form's twin of ``POST /api/v1/jobs/{id}/cancel`` (same function, same checks)."""
    check_csrf(viewer, csrf)
    if not viewer.can_cancel:
        raise DashboardError(403, "Forbidden", "Only user and admin sessions can cancel jobs.")
    body = JobCancel(reason=reason.strip()[:500] or f"cancelled from the dashboard by {viewer.label}")
    call_api(cancel, job_id, body, ctx=request.app.state.ctx, _=viewer.principal)
    return RedirectResponse(f"/jobs?cancelled={job_id}", status_code=303)


def sorted_results(request: Request, filters: Dict[str, str], sort: str,
                   order: str) -> Tuple[List[ResultOut], List[views.ResultRow]]:
    """The results the page shows (and the exports hold), in the page's order."""
    ctx = request.app.state.ctx
    with ctx.db.read() as session:
        results = query_results(session, ctx.base_url(request), limit=RESULT_LIMIT, **filters)
    rows = views.sort_rows([views.result_row(r) for r in results], sort, order)
    by_id = {r.id: r for r in results}
    return [by_id[row.id] for row in rows], rows


@router.get("/results")
def results_page(request: Request, viewer: Viewer = Depends(current_viewer)) -> Response:
    filters, sort, order = views.read_table_params(request.query_params)
    _, rows = sorted_results(request, filters, sort, order)
    with request.app.state.ctx.db.read() as session:
        choices = queries.filter_choices(session)
    export = views.query(**filters, sort=None if sort == "id" else sort,
                         order=None if order == "asc" else order)
    return page(request, "results.html", viewer=viewer, nav="results", rows=rows, choices=choices,
                filters=filters, sort=sort, order=order, export=export, limit=RESULT_LIMIT,
                headers=views.column_headers(filters, sort, order), labels=views.FILTER_LABELS)


@router.get("/results.csv")
def results_csv(request: Request, _: Viewer = Depends(current_viewer)) -> Response:
    results, _rows = sorted_results(request, *views.read_table_params(request.query_params))
    return Response(to_csv(results), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="edgefarm-results.csv"'})


@router.get("/results.json")
def results_json(request: Request, _: Viewer = Depends(current_viewer)) -> Response:
    results, _rows = sorted_results(request, *views.read_table_params(request.query_params))
    body = json.dumps([r.model_dump(mode="json") for r in results], indent=1)
    return Response(body, media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="edgefarm-results.json"'})


@router.get("/results/{result_id}")
def result_page(request: Request, result_id: int, viewer: Viewer = Depends(current_viewer)) -> Response:
    result = call_api(get_result, result_id, request, ctx=request.app.state.ctx, _=viewer.principal)
    latency = result.latency_ms
    histogram = None
    if latency and latency.samples:
        histogram = charts.histogram(latency.samples, {"p50": latency.p50, "p90": latency.p90})
    metrics = result.metrics.model_dump(exclude={"per_class_iou"}) if result.metrics else {}
    per_class = (result.metrics.per_class_iou or {}) if result.metrics else {}
    return page(request, "result.html", viewer=viewer, nav="results", result=result,
                row=views.result_row(result), variant=views.variant_name(result.variant),
                histogram=histogram, metrics={k: v for k, v in metrics.items() if v is not None},
                per_class=per_class,
                environment=result.environment.model_dump() if result.environment else {})


@router.get("/compare")
def compare_index(request: Request, viewer: Viewer = Depends(current_viewer)) -> Response:
    with request.app.state.ctx.db.read() as session:
        families = queries.families(session)
    return page(request, "compare_index.html", viewer=viewer, nav="compare", families=families)


@router.get("/compare/{family}")
def compare_page(request: Request, family: str, platform: Optional[str] = None,
                 runtime: Optional[str] = None, viewer: Viewer = Depends(current_viewer)) -> Response:
    compare = call_api(compare_family, request, family, platform or None, runtime or None,
                       ctx=request.app.state.ctx, _=viewer.principal)
    matrix = views.compare_matrix(compare)
    base_name = next((row.model.name for row in matrix if row.is_base), "")
    return page(request, "compare.html", viewer=viewer, nav="compare", compare=compare,
                matrix=matrix, base_name=base_name,
                device_charts=[views.device_chart(compare, d) for d in compare.devices],
                platform=platform or "", runtime=runtime or "")
