"""What every request handler needs: settings, database, artifact store, waker,
and the FastAPI dependencies that authenticate the caller."""

from dataclasses import dataclass

from fastapi import Depends, Request

from edgefarm.shared.contract import PROTOCOL_HEADER, PROTOCOL_VERSION
from edgefarm.shared.contract.enums import Role

from .auth import Principal, authenticate, check_role
from .config import Settings
from .db import Database
from .notify import Waker
from .problems import ProblemException
from .storage import ArtifactStore


@dataclass
class AppContext:
    settings: Settings
    db: Database
    store: ArtifactStore
    waker: Waker

    def base_url(self, request: Request) -> str:
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")


def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx


def get_principal(request: Request, ctx: AppContext = Depends(get_ctx)) -> Principal:
    with ctx.db.read() as session:
        return authenticate(session, request)


def reader(principal: Principal = Depends(get_principal)) -> Principal:
    """Users and admins read; agents and enrolment tokens do not."""
    return check_role(principal, Role.user)


def submitter(principal: Principal = Depends(get_principal)) -> Principal:
    return check_role(principal, Role.user)


def admin(principal: Principal = Depends(get_principal)) -> Principal:
    return check_role(principal, Role.admin)


def check_protocol(request: Request) -> None:
    sent = request.headers.get(PROTOCOL_HEADER)
    if sent is not None and sent != str(PROTOCOL_VERSION):
        raise ProblemException(
            426, "Protocol version mismatch",
            f"this server speaks EdgeFarm protocol {PROTOCOL_VERSION}, the agent sent {sent}; "
            "upgrade the agent (or the server) so that both match",
            kind="protocol-mismatch",
        )


def agent(
    request: Request, principal: Principal = Depends(get_principal)
) -> Principal:
    check_protocol(request)
    if principal.role != Role.agent or principal.device_id is None:
        raise ProblemException(
            403, "Forbidden", "only an enrolled agent's token can do this", kind="forbidden"
        )
    return principal


def downloader(principal: Principal = Depends(get_principal)) -> Principal:
    """Artifacts can be fetched by users and by agents (which download their runs' inputs)."""
    return check_role(principal, Role.user, Role.agent)
