"""Results: list and filter, CSV and JSON export, one result by id, and the
family comparison (variants side by side across devices)."""

from typing import Annotated, List, Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from edgefarm.shared.contract.ids import MAX_ID
from edgefarm.shared.contract.schemas import CompareOut, LayerTableOut, ResultOut, ResultVersus

from ..auth import Principal
from ..context import AppContext
from ..services import layers, results
from .bodies import ContractRoute
from .deps import Moment, Offset, RowId, get_ctx, reader
from .pages import DEFAULT_LIMIT, Limit, send_page

#: The list as CSV (``format=csv`` or ``Accept: text/csv``).
CSV_RESPONSE = {200: {"content": {"text/csv": {"schema": {"type": "string"}}}}}

router = APIRouter(prefix="/results", tags=["results"], route_class=ContractRoute)


@router.get("", response_model=List[ResultOut], responses=CSV_RESPONSE)
def list_results(
    request: Request, http_response: Response,
    model: Optional[str] = Query(None, description="model id, name or sha256"),
    family: Optional[str] = None,
    variant: Optional[str] = Query(
        None, description="quantization (none, fp16, dynamic, int8) or variant label"
    ),
    device: Optional[str] = Query(None, description="device id or name"),
    platform: Optional[str] = None, runtime: Optional[str] = None, task: Optional[str] = None,
    job: Optional[int] = Query(None, ge=1, le=MAX_ID, description="job id"),
    since: Annotated[Moment, Query(description="results created at or after (RFC 3339)")] = None,
    until: Annotated[Moment, Query(description="results created before (RFC 3339)")] = None,
    format: str = Query("json", pattern="^(json|csv)$"),
    order: str = Query("asc", pattern="^(asc|desc)$", description="by id: asc (oldest first) or desc"),
    after: Optional[int] = Query(None, ge=0, le=MAX_ID, description="only results with a larger id"),
    before: Optional[int] = Query(None, ge=1, le=MAX_ID, description="only results with a smaller id"),
    limit: Limit = DEFAULT_LIMIT, offset: Offset = 0,
    ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader),
):
    """One page of results (``X-Total-Count`` counts them all; ``Link: rel="next"`` names
    the next page, by an id cursor). CSV pages carry the header line each."""
    page = results.list_results(
        ctx, ctx.base_url(request), model=model, family=family, variant=variant, device=device,
        platform=platform, runtime=runtime, task=task, job=job, since=since, until=until,
        limit=limit, offset=offset, after=after, before=before, newest_first=order == "desc",
    )
    wants_csv = format == "csv" or "text/csv" in request.headers.get("accept", "")
    if wants_csv:
        exported = Response(results.to_csv(page.items), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": 'attachment; filename="results.csv"'})
        send_page(request, exported, page)
        return exported
    return send_page(request, http_response, page)


@router.get("/compare", response_model=CompareOut)
def compare_family(
    request: Request, family: str, platform: Optional[str] = None, runtime: Optional[str] = None,
    ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader),
) -> CompareOut:
    """Variants of one family x devices, with deltas against the base model."""
    return results.compare_family(ctx, family, ctx.base_url(request), platform, runtime)


@router.get("/{result_id}", response_model=ResultOut)
def get_result(
    result_id: RowId, request: Request, ctx: AppContext = Depends(get_ctx),
    _: Principal = Depends(reader),
) -> ResultOut:
    return results.get_result(ctx, result_id, ctx.base_url(request))


@router.get("/{result_id}/layers", response_model=LayerTableOut, responses=CSV_RESPONSE)
def get_result_layers(
    result_id: RowId, request: Request, format: str = Query("json", pattern="^(json|csv)$"),
    ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader),
):
    """The result's layer table: per-layer time and drift (``format=csv``: the rows as CSV)."""
    table = layers.result_layers(ctx, result_id, ctx.base_url(request))
    if format == "csv" or "text/csv" in request.headers.get("accept", ""):
        filename = f"result-{result_id}-layers.csv"
        return Response(layers.to_csv(table), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    return table
@router.get("/{base_id}/versus/{result_id}", response_model=ResultVersus)
def versus(
    base_id: RowId, result_id: RowId, request: Request,
    confidence: float = Query(0.95, ge=0.5, le=0.999, description="confidence level of the intervals"),
    ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader),
) -> ResultVersus:
    """Whether result ``result_id`` differs from ``base_id`` beyond noise: the Hodges-Lehmann
    latency shift and the paired accuracy difference with their 95% intervals and verdicts
    ("better", "worse", "no significant difference" or "not testable")."""
    return results.versus(ctx, base_id, result_id, ctx.base_url(request), confidence)
