"""Tokens (an admin's): create, list and revoke. Agent tokens are issued at
enrollment (``leases.enroll``), never here."""

from typing import List

from sqlalchemy import select

from edgefarm.shared.contract.enums import Role
from edgefarm.shared.contract.schemas import TokenCreate, TokenOut

from ..auth import issue_token
from ..context import AppContext
from ..tables import Token
from .convert import token_out
from .errors import Invalid
from .lookups import get_row


def create_token(ctx: AppContext, body: TokenCreate) -> TokenOut:
    """A new token; the answer is the only place its plaintext appears."""
    if body.role == Role.agent:
        raise Invalid(
            "Invalid role",
            "agent tokens are issued at enrollment; create an 'enroll' token and run "
            "'edgefarm-agent enroll' with it",
        )
    with ctx.db.write() as session:
        row, secret = issue_token(session, body.role, body.name)
        return token_out(row, secret)


def list_tokens(ctx: AppContext) -> List[TokenOut]:
    with ctx.db.read() as session:
        return [token_out(row) for row in session.scalars(select(Token).order_by(Token.id))]


def revoke_token(ctx: AppContext, token_id: int) -> TokenOut:
    """Revoked at once: every request and dashboard session re-reads its token."""
    with ctx.db.write() as session:
        row = get_row(session, Token, token_id, "token")
        row.revoked = True
        return token_out(row)
