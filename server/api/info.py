"""Server identity and health: ``GET /api/v1/info`` (no token needed)."""

from fastapi import APIRouter, Depends

from edgefarm.shared.contract.schemas import ServerInfo

from ..context import AppContext
from ..services import overview
from .deps import get_ctx

router = APIRouter(tags=["info"])


@router.get("/info", response_model=ServerInfo)
def server_info(ctx: AppContext = Depends(get_ctx)) -> ServerInfo:
    return overview.server_info(ctx)
