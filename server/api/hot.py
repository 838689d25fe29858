"""The two requests every agent sends in a loop, lease and report, answered without
FastAPI's routing, dependency solving and body handling, which cost more server time
than the database work of a claim or a report (``benchmarks/fleet.py``).

``HotPaths`` is an ASGI middleware inside ``RequestLimits`` (so bodies are bounded
already). It takes a request only when it is well formed: ``POST
/api/v1/agents/lease`` or ``POST /api/v1/runs/{id}/report`` with a canonical row id, a
bearer token, the protocol header absent or this server's, a JSON content type and a
body that ``strict_json`` and the contract accept. It then answers exactly as the
documented routes do (``agents.answer_lease`` and ``runs.answer_report`` are theirs
too), and a refusal raised by the service (unknown token, lease not current, ...) is
turned into its problem by the application's own exception handlers. Anything else,
including a body the contract refuses, goes to the routes with the body replayed: they
give the documented 4xx answers, and nothing was read or written before."""

import inspect
import re
from typing import Any, Callable, List, Optional, Tuple

from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgefarm.shared.contract import PROTOCOL_HEADER, PROTOCOL_VERSION
from edgefarm.shared.contract.ids import MAX_ID
from edgefarm.shared.contract.schemas import LeaseRequest, RunReport

from .agents import answer_lease
from .bodies import strict_json
from .runs import answer_report

LEASE_PATH = "/api/v1/agents/lease"
REPORT_PATH = re.compile(r"/api/v1/runs/([1-9][0-9]{0,18})/report")
_PROTOCOL = PROTOCOL_HEADER.lower().encode("latin-1")
_PROTOCOL_VALUE = str(PROTOCOL_VERSION).encode("latin-1")


def _headers_fit(scope: Scope) -> bool:
    """A bearer token, a JSON body, and this server's protocol (or none named)."""
    bearer = json_body = False
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            bearer = scheme.lower() == b"bearer" and bool(token.strip())
        elif name == b"content-type":
            json_body = value.split(b";")[0].strip().lower() == b"application/json"
        elif name == _PROTOCOL and value != _PROTOCOL_VALUE:
            return False
    return bearer and json_body


def _route(scope: Scope) -> Optional[Tuple[str, Optional[int]]]:
    """("lease", None) or ("report", run id) when the request is one this path takes."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return None
    path = scope["path"]
    if path == LEASE_PATH:
        found: Tuple[str, Optional[int]] = ("lease", None)
    else:
        match = REPORT_PATH.fullmatch(path)
        if match is None or int(match.group(1)) > MAX_ID:
            return None
        found = ("report", int(match.group(1)))
    return found if _headers_fit(scope) else None


async def _read_body(receive: Receive) -> Tuple[bytes, List[Message]]:
    messages: List[Message] = []
    chunks = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return b"", messages  # the client went away: the routes see it as it came
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), messages


class HotPaths:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _route(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        body, messages = await _read_body(receive)
        parsed = _parse(route[0], body) if messages[-1]["type"] == "http.request" else None
        if parsed is None:  # the routes answer it, with the body replayed
            replay = iter(messages)

            async def replayed() -> Message:
                return next(replay, None) or await receive()

            await self.app(scope, replayed, send)
            return
        request = Request(scope, receive)
        application = scope["app"]
        ctx = application.state.ctx
        try:
            if route[0] == "lease":
                response = await answer_lease(ctx, request, parsed)
            else:
                response = await answer_report(ctx, request, route[1], parsed)
        except Exception as exc:
            handler = _handler_for(application, exc)
            if handler is None:
                raise  # a server error, as the routes would give it
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, receive, send)


def _parse(kind: str, body: bytes) -> Any:
    """The request's body as the contract reads it, or None (the routes answer then)."""
    try:
        data = strict_json(body)
        return LeaseRequest.model_validate(data) if kind == "lease" else RunReport.model_validate(data)
    except (ValueError, ValidationError):
        return None


def _handler_for(application: Any, exc: Exception) -> Optional[Callable]:
    """The application's exception handler for ``exc`` (nearest class first), as
    Starlette's ``ExceptionMiddleware`` would pick it."""
    handlers = application.exception_handlers
    for kind in type(exc).__mro__:
        if kind in handlers and kind is not Exception:
            return handlers[kind]
    return None
