"""Bearer tokens and roles.

A token reads ``ef_<id>_<secret>``. Only the sha256 of the secret is stored and
it is compared in constant time. Roles: ``admin`` (everything, including tokens
and devices), ``user`` (submit and read), ``agent`` (lease, renew and report its
own device's runs), ``enrol`` (one-time: exchanged for an agent token).
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Optional, Tuple

from fastapi import Request
from sqlalchemy.orm import Session

from edgefarm.shared.contract.enums import Role

from .problems import ProblemException
from .tables import Token, utcnow

PREFIX = "ef_"


@dataclass(frozen=True)
class Principal:
    token_id: int
    role: Role
    device_id: Optional[int] = None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(
    session: Session, role: Role, name: Optional[str] = None, device_id: Optional[int] = None
) -> Tuple[Token, str]:
    """Create a token row; returns it and the one-time plaintext token."""
    secret = secrets.token_urlsafe(32)
    row = Token(role=str(role), name=name, secret_hash=hash_secret(secret), device_id=device_id)
    session.add(row)
    session.flush()
    return row, f"{PREFIX}{row.id}_{secret}"


def parse_token(token: str) -> Optional[Tuple[int, str]]:
    if not token.startswith(PREFIX):
        return None
    token_id, sep, secret = token[len(PREFIX):].partition("_")
    if not sep or not token_id.isdigit() or not secret:
        return None
    return int(token_id), secret


def verify_token(session: Session, token: str) -> Optional[Token]:
    parsed = parse_token(token)
    if parsed is None:
        return None
    row = session.get(Token, parsed[0])
    expected = row.secret_hash if row is not None else hash_secret("")
    ok = hmac.compare_digest(expected, hash_secret(parsed[1]))
    if row is None or not ok or row.revoked:
        return None
    return row


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


def authenticate(session: Session, request: Request) -> Principal:
    row = verify_token(session, bearer_token(request))
    if row is None:
        raise ProblemException(
            401, "Unauthorized", "the token is unknown, revoked or malformed",
            kind="unauthorized", headers={"WWW-Authenticate": "Bearer"},
        )
    if row.role == Role.enrol and row.used_at is not None:
        raise ProblemException(
            401, "Unauthorized", "this enrolment token has already been used", kind="unauthorized"
        )
    return Principal(token_id=row.id, role=Role(row.role), device_id=row.device_id)


def check_role(principal: Principal, *roles: Role) -> Principal:
    if principal.role == Role.admin or principal.role in roles:
        return principal
    allowed = ", ".join(sorted({"admin", *(str(r) for r in roles)}))
    raise ProblemException(
        403, "Forbidden",
        f"a {principal.role} token cannot do this; it needs one of: {allowed}",
        kind="forbidden",
    )


def mark_used(session: Session, token_id: int) -> None:
    row = session.get(Token, token_id)
    row.used_at = utcnow()
