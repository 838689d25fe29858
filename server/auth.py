"""Bearer tokens and roles.

A token reads ``ef_<id>_<secret>``. Only the sha256 of the secret is stored and
it is compared in constant time. Roles: ``admin`` (everything, including tokens
and devices), ``user`` (submit and read), ``agent`` (lease, renew and report its
own device's runs), ``enroll`` (one-time: exchanged for an agent token).

These helpers take a session and never commit. Reading the bearer header and
refusing a role are the API's (``edgefarm.server.api.deps``).
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from sqlalchemy import Row, bindparam, select
from sqlalchemy.orm import Session

from edgefarm.shared.contract.enums import Role
from edgefarm.shared.contract.ids import parse_id

from .tables import Device, Token, utcnow

PREFIX = "ef_"


@dataclass(frozen=True)
class Principal:
    token_id: int
    role: Role
    device_id: Optional[int] = None
    #: the agent's device as a result records it (name, platform, capabilities), when
    #: read with the token (``AGENT_TOKEN_BY_ID``)
    device: Optional[Dict[str, Any]] = None


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
    """``(id, secret)`` of a well-formed token, else None (never an exception)."""
    if not token.startswith(PREFIX):
        return None
    text_id, sep, secret = token[len(PREFIX):].partition("_")
    token_id = parse_id(text_id)
    if not sep or token_id is None or not secret:
        return None
    return token_id, secret


_TOKENS = Token.__table__
#: A token's row by id, as a plain Core statement (compiled once, no ORM loading: every
#: request of every agent runs it).
TOKEN_BY_ID = select(
    _TOKENS.c.id, _TOKENS.c.role, _TOKENS.c.name, _TOKENS.c.secret_hash, _TOKENS.c.revoked,
    _TOKENS.c.used_at, _TOKENS.c.device_id,
).where(_TOKENS.c.id == bindparam("token_id"))


_DEVICES = Device.__table__
#: The same, with the token's device (a report records it with its result): one statement.
AGENT_TOKEN_BY_ID = (
    select(*TOKEN_BY_ID.selected_columns, _DEVICES.c.name.label("device_name"),
           _DEVICES.c.platform.label("device_platform"),
           _DEVICES.c.capabilities.label("device_capabilities"))
    .select_from(_TOKENS.outerjoin(_DEVICES, _DEVICES.c.id == _TOKENS.c.device_id))
    .where(_TOKENS.c.id == bindparam("token_id"))
)


def device_snapshot(name: str, platform: str, capabilities: Optional[dict]) -> Dict[str, Any]:
    """A device as a result records it."""
    return {"name": name, "platform": platform, **(capabilities or {})}


def token_credential(token: str) -> Optional[Tuple[int, str]]:
    """``(id, SHA-256 of the secret)`` of a well-formed token, else None: what a statement
    compares with the token's row (``queue``'s agent-token checks)."""
    parsed = parse_token(token)
    return (parsed[0], hash_secret(parsed[1])) if parsed is not None else None


def verify_token(session: Session, token: str, statement=TOKEN_BY_ID) -> Optional[Row]:
    """The token's row (id, role, name, secret_hash, revoked, used_at, device_id) when
    the token is well formed, known, matches and is not revoked; else None."""
    parsed = parse_token(token)
    if parsed is None:
        return None
    row = session.connection().execute(statement, {"token_id": parsed[0]}).first()
    expected = row.secret_hash if row is not None else hash_secret("")
    ok = hmac.compare_digest(expected, hash_secret(parsed[1]))
    if row is None or not ok or row.revoked:
        return None
    return row


def mark_used(session: Session, token_id: int) -> None:
    row = session.get(Token, token_id)
    row.used_at = utcnow()
