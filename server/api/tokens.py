"""Tokens (admin only): create, list, revoke."""

from typing import List

from fastapi import APIRouter, Depends
from sqlalchemy import select

from edgefarm.shared.contract.enums import Role
from edgefarm.shared.contract.schemas import TokenCreate, TokenOut

from ..auth import Principal, issue_token
from ..context import AppContext
from ..problems import ProblemException, not_found
from ..tables import Token
from .deps import admin, get_ctx

router = APIRouter(prefix="/tokens", tags=["tokens"])


def token_out(row: Token, secret: str = None) -> TokenOut:
    return TokenOut(
        id=row.id, role=row.role, name=row.name, created_at=row.created_at, used_at=row.used_at,
        revoked=row.revoked, device_id=row.device_id, token=secret,
    )


@router.post("", response_model=TokenOut, status_code=201)
def create_token(
    body: TokenCreate, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(admin)
) -> TokenOut:
    if body.role == Role.agent:
        raise ProblemException(
            422, "Invalid role",
            "agent tokens are issued at enrolment; create an 'enrol' token and run "
            "'edgefarm-agent enroll' with it",
        )
    with ctx.db.write() as session:
        row, secret = issue_token(session, body.role, body.name)
        return token_out(row, secret)


@router.get("", response_model=List[TokenOut])
def list_tokens(ctx: AppContext = Depends(get_ctx), _: Principal = Depends(admin)) -> List[TokenOut]:
    with ctx.db.read() as session:
        return [token_out(row) for row in session.scalars(select(Token).order_by(Token.id))]


@router.delete("/{token_id}", response_model=TokenOut)
def revoke_token(
    token_id: int, ctx: AppContext = Depends(get_ctx), _: Principal = Depends(admin)
) -> TokenOut:
    with ctx.db.write() as session:
        row = session.get(Token, token_id)
        if row is None:
            raise not_found("token", token_id)
        row.revoked = True
        return token_out(row)
