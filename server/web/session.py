"""Who is looking at the dashboard: the server secret, the signed session
cookie, the per-session CSRF token and the ``current_viewer`` dependency.

The cookie never holds the token. After a person pastes a user or admin token
on ``/login`` the cookie holds ``v1.<token id>.<issued>.<nonce>.<signature>``,
where the signature is an HMAC-SHA256, keyed with the ``secret_key`` file of
the data dir, over the other fields and the token's stored secret hash. Each
request re-reads the token row, so revoking a token ends its sessions at once;
``/logout`` records the session's nonce (table ``revoked_sessions``), so a copy
of the cookie taken before sign-out no longer works; a session also ends after
``SESSION_SECONDS``. The cookie is HttpOnly and
SameSite=Strict. A session's CSRF token is an HMAC of its cookie: it needs no
storage and differs per session. Replicas behind one load balancer must share
the ``secret_key`` file (put the data dir on the shared storage).

Scripts can read pages with ``Authorization: Bearer <token>`` instead; the
forms (cancel) need a session.
"""

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Tuple
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import delete

from edgefarm.shared.contract.enums import Role
from edgefarm.shared.contract.ids import MAX_DB_INT, parse_id

from ..auth import Principal, verify_token
from ..tables import RevokedSession, Token
from .errors import DashboardError

SESSION_COOKIE = "edgefarm_session"
LOGIN_COOKIE = "edgefarm_login"
SESSION_SECONDS = 7 * 24 * 3600
SECRET_FILE = "secret_key"
CREATE_TOKEN_HINT = "create one with 'edgefarm-server create-token --role user'"
REFUSED_ROLES = {
    Role.agent: "This is an agent token: it belongs to one device and only speaks the agent "
                "protocol. Sign in with a user or admin token (" + CREATE_TOKEN_HINT + ").",
    Role.enroll: "This is an enrollment token: an agent exchanges it once for its own token. "
                "Sign in with a user or admin token (" + CREATE_TOKEN_HINT + ").",
}


@dataclass(frozen=True)
class Viewer:
    principal: Principal
    label: str  # "user token #3 (alice)"
    csrf: Optional[str]  # None when the page was read with an Authorization header

    @property
    def can_cancel(self) -> bool:
        return self.csrf is not None and self.principal.role in (Role.user, Role.admin)


def load_secret_key(data_dir: Path) -> bytes:
    """The server secret, created (mode 0600) on first start; atomic across replicas."""
    path = Path(data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        try:
            os.link(scratch, path)  # fails if another process won the race: use theirs
        except FileExistsError:
            pass
        finally:
            scratch.unlink()
    key = path.read_text().strip()
    if len(key) < 32:
        raise RuntimeError(f"{path} is too short to be a secret key; delete it to make a new one")
    return key.encode()


def _sign(key: bytes, *parts: str) -> str:
    mac = hmac.new(key, "|".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def make_session(key: bytes, token: Token) -> str:
    issued, nonce = str(int(time.time())), secrets.token_urlsafe(12)
    signature = _sign(key, "session", str(token.id), issued, nonce, token.secret_hash)
    return f"v1.{token.id}.{issued}.{nonce}.{signature}"


def _cookie_fields(cookie: str) -> Optional[Tuple[int, int, str, str]]:
    """``(token id, issued, nonce, signature)`` of a well-formed cookie."""
    parts = cookie.split(".")
    if len(parts) != 5 or parts[0] != "v1":
        return None
    token_id, issued = parse_id(parts[1]), parse_id(parts[2], MAX_DB_INT)
    if token_id is None or issued is None or not parts[3]:
        return None
    return token_id, issued, parts[3], parts[4]


def _verified(key: bytes, cookie: str, session) -> Optional[Tuple[Token, str, int]]:
    """``(token row, nonce, issued)`` of a cookie this server signed, not expired,
    whose token still stands; None otherwise. Revoked sessions are not checked."""
    fields = _cookie_fields(cookie)
    if fields is None:
        return None
    token_id, issued, nonce, signature = fields
    if time.time() - issued > SESSION_SECONDS:
        return None
    row = session.get(Token, token_id)
    if row is None or row.revoked:
        return None
    expected = _sign(key, "session", str(token_id), str(issued), nonce, row.secret_hash)
    return (row, nonce, issued) if hmac.compare_digest(expected, signature) else None


def read_session(key: bytes, cookie: str, session) -> Optional[Token]:
    """The token a session cookie stands for, or None if forged, expired, signed out
    or its token revoked."""
    found = _verified(key, cookie, session)
    if found is None or session.get(RevokedSession, found[1]) is not None:
        return None
    return found[0]


def end_session(key: bytes, cookie: str, session) -> bool:
    """Revoke the session of this cookie (in ``session``'s transaction, not committed)
    and prune revocations past their expiry; False when the cookie signs no one in."""
    found = _verified(key, cookie, session)
    if found is None:
        return False
    row, nonce, issued = found
    now = datetime.now(timezone.utc)
    session.execute(delete(RevokedSession).where(RevokedSession.expires_at < now))
    if session.get(RevokedSession, nonce) is None:
        expires = datetime.fromtimestamp(issued + SESSION_SECONDS, timezone.utc)
        session.add(RevokedSession(nonce=nonce, token_id=row.id, expires_at=expires))
    return True


def csrf_for(key: bytes, cookie: str) -> str:
    return _sign(key, "csrf", cookie)


def check_csrf(viewer: Viewer, sent: Optional[str]) -> None:
    if viewer.csrf is None or not sent or not hmac.compare_digest(viewer.csrf, sent):
        raise DashboardError(
            403, "Form check failed",
            "This form did not come from your current dashboard session (CSRF check failed). "
            "Reload the page and try again.",
        )


def refuse_non_reader(role: str) -> None:
    if role not in (Role.user, Role.admin):
        message = REFUSED_ROLES.get(Role(role), "This token cannot read the dashboard.")
        raise DashboardError(403, "This token cannot sign in", message, sign_in="/login")


def token_label(row: Token) -> str:
    return f"{row.role} token #{row.id}" + (f" ({row.name})" if row.name else "")


def sign_in_link(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?next=" + quote(target, safe="")


def current_viewer(request: Request) -> Viewer:
    """Dependency of every page: the session cookie's token, or a bearer token."""
    ctx, key = request.app.state.ctx, request.app.state.dashboard_key
    with ctx.db.read() as session:
        if request.headers.get("authorization"):
            scheme, _, value = request.headers["authorization"].partition(" ")
            row = verify_token(session, value.strip()) if scheme.lower() == "bearer" else None
            if row is None:
                raise DashboardError(401, "Token refused", "The token in the Authorization header "
                                     "is unknown, revoked or malformed.", sign_in="/login")
            refuse_non_reader(row.role)
            return Viewer(Principal(row.id, Role(row.role), row.device_id), token_label(row), None)
        cookie = request.cookies.get(SESSION_COOKIE)
        row = read_session(key, cookie, session) if cookie else None
        if row is None:
            why = "Your session has ended." if cookie else "The dashboard shows the farm's results."
            raise DashboardError(401, "You need to sign in",
                                 f"{why} Sign in with a user or admin token to continue.",
                                 sign_in=sign_in_link(request))
        refuse_non_reader(row.role)
        return Viewer(Principal(row.id, Role(row.role), row.device_id), token_label(row),
                      csrf_for(key, cookie))


def safe_next(target: Optional[str]) -> str:
    """Only local paths: never redirect a person to another site after sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int,
               path: str = "/") -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
