"""Server identity and health: ``GET /api/v1/info`` (no token needed)."""

from fastapi import APIRouter, Depends
from sqlalchemy import text

from edgefarm.shared.contract import PROTOCOL_VERSION
from edgefarm.shared.contract.schemas import ServerInfo

from .. import __version__
from ..context import AppContext
from .deps import get_ctx

router = APIRouter(tags=["info"])


@router.get("/info", response_model=ServerInfo)
def server_info(ctx: AppContext = Depends(get_ctx)) -> ServerInfo:
    with ctx.db.read() as session:
        session.execute(text("SELECT 1"))
    return ServerInfo(version=__version__, protocol_version=PROTOCOL_VERSION, database=ctx.db.dialect)
