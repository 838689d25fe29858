"""Sign-in and sign-out: ``/login`` exchanges a pasted user or admin token
for a signed session cookie (see ``session`` for what the cookie holds);
``/logout`` ends the session on the server (a copy of the cookie stops working)
and clears it. The sign-in form carries a one-time nonce that must
match a SameSite=Strict cookie, so another site cannot sign a browser in."""

import hmac
import secrets

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from edgefarm.shared.contract.enums import Role

from ..auth import verify_token
from .render import page
from .session import (
    LOGIN_COOKIE,
    REFUSED_ROLES,
    SESSION_COOKIE,
    SESSION_SECONDS,
    end_session,
    make_session,
    safe_next,
    set_cookie,
)

router = APIRouter(include_in_schema=False)


def login_page(request: Request, target: str, error: str = "", notice: str = "",
               status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = page(request, "login.html", status, csrf=nonce, next=safe_next(target),
                    error=error, notice=notice)
    set_cookie(response, request, LOGIN_COOKIE, nonce, max_age=3600, path="/login")
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/", signed_out: bool = False) -> Response:
    return login_page(request, next, notice="You are signed out." if signed_out else "")


@router.post("/login")
def login(request: Request, token: str = Form(""), csrf: str = Form(""),
          next: str = Form("/")) -> Response:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf):
        return login_page(request, next, "The sign-in form expired or came from another site. "
                          "Paste the token again.", status=403)
    ctx = request.app.state.ctx
    with ctx.db.read() as session:
        row = verify_token(session, token.strip())
        if row is None:
            return login_page(request, next, "That token is unknown, revoked or malformed "
                              "(a token reads ef_<number>_<secret>).", status=401)
        if row.role not in (Role.user, Role.admin):
            return login_page(request, next, REFUSED_ROLES[Role(row.role)], status=403)
        cookie = make_session(request.app.state.dashboard_key, row)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(response, request, SESSION_COOKIE, cookie, SESSION_SECONDS)
    response.delete_cookie(LOGIN_COOKIE, path="/login", httponly=True, samesite="strict")
    return response


@router.api_route("/logout", methods=["GET", "POST"])
def logout(request: Request) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with request.app.state.ctx.db.write() as session:
            end_session(request.app.state.dashboard_key, cookie, session)
    response = RedirectResponse("/login?signed_out=1", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
