"""Server identity and health: ``GET /api/v1/info`` (no token needed)."""

from fastapi import APIRouter, Depends

from edgefarm.shared.contract.schemas import ServerInfo

from ..context import AppContext
from ..services import overview
from .bodies import ContractRoute
from .deps import get_ctx

router = APIRouter(tags=["info"], route_class=ContractRoute)


@router.get("/info", response_model=ServerInfo)
def server_info(ctx: AppContext = Depends(get_ctx)) -> ServerInfo:
    return overview.server_info(ctx)
