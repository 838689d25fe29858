"""The regression watch: a series' history, baselines (admins and users set
them), per-family thresholds (admins), and the regressions found."""

from typing import Annotated, List, Optional

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from edgefarm.shared.contract.ids import MAX_ID
from edgefarm.shared.contract.watch import (
    BaselineOut,
    BaselineSet,
    FamilyThresholds,
    HistoryOut,
    RegressionOut,
    Series,
    Thresholds,
)

from ..auth import Principal
from ..context import AppContext
from ..services import watch
from .bodies import ContractRoute
from .deps import Offset, RowId, admin, get_ctx, reader, submitter
from .pages import DEFAULT_LIMIT, Limit, send_page

router = APIRouter(tags=["regression watch"], route_class=ContractRoute)

#: A model family in a path (as long as the column that stores it).
Family = Annotated[str, Path(min_length=1, max_length=200, description="model family")]


@router.get("/history", response_model=HistoryOut)
def get_history(
    family: str = Query(..., min_length=1, max_length=200),
    variant: str = Query(..., min_length=1, max_length=200, description="variant label or quantization"),
    device: int = Query(..., ge=1, le=MAX_ID, description="device id"),
    runtime: str = Query(..., min_length=1, max_length=32),
    limit: int = Query(watch.HISTORY_LIMIT, ge=1, le=1000, description="the newest points"),
    ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader),
) -> HistoryOut:
    """A series' results over time (oldest first), with the median's interval, version
    changes, the baseline and the regressed metrics of each point."""
    series = Series(family=family, variant=variant, device_id=device, runtime=runtime)
    return watch.history(ctx, series, limit)


@router.post("/baselines", response_model=BaselineOut, status_code=201)
def set_baseline(
    body: BaselineSet, ctx: AppContext = Depends(get_ctx), principal: Principal = Depends(submitter),
) -> BaselineOut:
    """Hold a series to a result (``result_id``) or to its newest result (``series``)."""
    return watch.set_baseline(ctx, body, principal.token_id)


@router.get("/baselines", response_model=List[BaselineOut])
def list_baselines(
    request: Request, response: Response, family: Optional[str] = None,
    limit: Limit = DEFAULT_LIMIT, offset: Offset = 0,
    ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader),
):
    return send_page(request, response, watch.list_baselines(ctx, limit, offset, family))


@router.delete("/baselines/{baseline_id}", response_model=BaselineOut)
def delete_baseline(
    baseline_id: RowId, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(submitter),
) -> BaselineOut:
    """The series is no longer watched (its regressions stay)."""
    return watch.delete_baseline(ctx, baseline_id)


@router.get("/thresholds/{family}", response_model=FamilyThresholds)
def get_thresholds(
    family: Family, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader),
) -> FamilyThresholds:
    return watch.get_thresholds(ctx, family)


@router.put("/thresholds/{family}", response_model=FamilyThresholds)
def set_thresholds(
    family: Family, body: Thresholds, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(admin),
) -> FamilyThresholds:
    """The family's own thresholds, for results reported from now on."""
    return watch.set_thresholds(ctx, family, body)


@router.get("/regressions", response_model=List[RegressionOut])
def list_regressions(
    request: Request, response: Response,
    job: Optional[int] = Query(None, ge=1, le=MAX_ID), result: Optional[int] = Query(None, ge=1, le=MAX_ID),
    family: Optional[str] = None, limit: Limit = DEFAULT_LIMIT, offset: Offset = 0,
    ctx: AppContext = Depends(get_ctx), _: Principal = Depends(reader),
):
    """Regressions found, newest first (``X-Total-Count``, ``Link: rel="next"``)."""
    page = watch.list_regressions(ctx, job=job, result=result, family=family, limit=limit, offset=offset)
    return send_page(request, response, page)
