"""The FastAPI dependencies of the API: the application's ``AppContext``, the
caller named by its bearer token, the role each endpoint needs and the agent's
protocol header. Their refusals are problems (401, 403, 426) answered before a
handler runs. Also the bounded path and query parameters every router uses
(``RowId``, ``Offset``, ``Moment``): out of range is a 422, never a database error."""

import re
from datetime import datetime
from typing import Annotated, Any, Optional

from fastapi import Depends, Path, Query, Request
from pydantic import BeforeValidator
from sqlalchemy.orm import Session

from edgefarm.shared.contract import PROTOCOL_HEADER, PROTOCOL_VERSION
from edgefarm.shared.contract.enums import Role
from edgefarm.shared.contract.ids import MAX_DB_INT, MAX_ID

from ..auth import AGENT_TOKEN_BY_ID, TOKEN_BY_ID, Principal, device_snapshot, verify_token
from ..context import AppContext
from ..problems import ProblemException

#: A row id in a path: 1 .. 2^31-1 (``edgefarm.shared.contract.ids``).
RowId = Annotated[int, Path(ge=1, le=MAX_ID, description="row id")]
#: How many rows a list skips.
Offset = Annotated[int, Query(ge=0, le=MAX_DB_INT, description="rows to skip")]

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _rfc3339(value: Any) -> Any:
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("expected an RFC 3339 date-time such as 2026-12-01T00:00:00Z")
    return value


#: A date-time query parameter: RFC 3339 text only (no Unix timestamps), as documented.
Moment = Annotated[Optional[datetime], BeforeValidator(_rfc3339)]


async def get_ctx(request: Request) -> AppContext:
    """Async (it does no I/O): FastAPI runs a plain ``def`` dependency in the threadpool,
    a hop per request that costs more than the lookup."""
    return request.app.state.ctx


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ProblemException(
            401, "Unauthorized",
            "this endpoint needs a token: send 'Authorization: Bearer <token>' "
            "(create one with 'edgefarm-server create-token --role user')",
            kind="unauthorized", headers={"WWW-Authenticate": "Bearer"},
        )
    return value.strip()


def authenticate(session: Session, request: Request, with_device: bool = False) -> Principal:
    """The request's token (``with_device``: and its device, in the same statement)."""
    row = verify_token(session, bearer_token(request), AGENT_TOKEN_BY_ID if with_device else TOKEN_BY_ID)
    if row is None:
        raise ProblemException(
            401, "Unauthorized", "the token is unknown, revoked or malformed",
            kind="unauthorized", headers={"WWW-Authenticate": "Bearer"},
        )
    if row.role == Role.enroll and row.used_at is not None:
        raise ProblemException(
            401, "Unauthorized", "this enrollment token has already been used", kind="unauthorized"
        )
    device = None
    if with_device and row.device_name is not None:
        device = device_snapshot(row.device_name, row.device_platform, row.device_capabilities)
    return Principal(token_id=row.id, role=Role(row.role), device_id=row.device_id, device=device)


def check_role(principal: Principal, *roles: Role) -> Principal:
    if principal.role == Role.admin or principal.role in roles:
        return principal
    allowed = ", ".join(sorted({"admin", *(str(r) for r in roles)}))
    raise ProblemException(
        403, "Forbidden",
        f"a {principal.role} token cannot do this; it needs one of: {allowed}",
        kind="forbidden",
    )


def get_principal(request: Request, ctx: AppContext = Depends(get_ctx)) -> Principal:
    with ctx.db.read() as session:
        return authenticate(session, request)


async def reader(principal: Principal = Depends(get_principal)) -> Principal:
    """Users and admins read; agents and enrollment tokens do not."""
    return check_role(principal, Role.user)


async def submitter(principal: Principal = Depends(get_principal)) -> Principal:
    return check_role(principal, Role.user)


async def admin(principal: Principal = Depends(get_principal)) -> Principal:
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


def _only_agents(principal: Principal) -> Principal:
    if principal.role != Role.agent or principal.device_id is None:
        raise ProblemException(
            403, "Forbidden", "only an enrolled agent's token can do this", kind="forbidden"
        )
    return principal


async def agent(
    request: Request, principal: Principal = Depends(get_principal)
) -> Principal:
    check_protocol(request)
    return _only_agents(principal)


async def agent_headers(request: Request) -> None:
    """The agent routes on the hot path (lease, report) read the token in their own
    session (``authenticate_agent``); this checks what needs no database first, so a
    missing token or another protocol is refused before the body is read."""
    bearer_token(request)
    check_protocol(request)


def authenticate_agent(session: Session, request: Request, with_device: bool = False) -> Principal:
    """The enrolled agent named by the request's token, read in the caller's session
    (``with_device``: with its device, ``Principal.device``)."""
    return _only_agents(authenticate(session, request, with_device))


async def downloader(principal: Principal = Depends(get_principal)) -> Principal:
    """Artifacts can be fetched by users and by agents (which download their runs' inputs)."""
    return check_role(principal, Role.user, Role.agent)
