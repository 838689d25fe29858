"""Requests before the contract reads them.

* ``RequestLimits``: an ASGI middleware that refuses a body over ``MAX_BODY_BYTES``
  with 413 before anything parses it, whether its Content-Length says so or it
  streams more than it declared (multipart uploads of models and datasets are left
  to ``uploads``, which streams them into the store under their own, larger
  limits), and a path or query string with a NUL character (400), which no text
  column of PostgreSQL can hold.
* ``ContractRoute``: the route class of every API router. Its JSON reader refuses
  what ``json.loads`` accepts but JSON does not (``NaN``, ``Infinity``), numbers
  too long to be any field of the contract and NUL characters in text, as 422
  problems.
* ``FILE_RESPONSE``: how the file downloads are documented.
"""

import json
from typing import Any, Callable, List

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgefarm.shared.contract.ids import MAX_DB_INT, parse_id
from edgefarm.shared.contract.schemas import Problem

from ..problems import MEDIA_TYPE, PROBLEM_TYPE_BASE

#: The largest JSON (or form) body the server reads: a report with the most raw
#: samples the contract allows (``MAX_REPORT_SAMPLES`` in each of its two latency
#: statistics) is about 5 MB.
MAX_BODY_BYTES = 8 * 1024 * 1024
#: The routes that stream multipart uploads into the store (``uploads``).
UPLOAD_PATHS = frozenset({"/api/v1/models", "/api/v1/datasets"})
#: Digits of the longest number a body may spell (2^63 has 19; floats rarely 25).
MAX_NUMBER_CHARS = 40


#: How a file download is documented: the stored bytes, as sent.
FILE_RESPONSE = {200: {"description": "the stored file", "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


class BodyTooLarge(Exception):
    pass


async def _refuse(scope: Scope, send: Send, detail: str, status: int = 413,
                  title: str = "Request body too large", kind: str = "body-too-large") -> None:
    body = Problem(type=PROBLEM_TYPE_BASE + kind, title=title, status=status, detail=detail,
                   instance=scope.get("path", "").replace("\x00", ""))
    payload = json.dumps(body.model_dump(mode="json")).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})


class RequestLimits:
    """Refuses NUL characters in the path or query; reads a non-multipart body whole
    (at most ``max_bytes``) before the app runs."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            await _refuse(scope, send, "the path or query holds a NUL character (%00)", 400,
                          "Malformed request", "nul-character")
            return
        if self._exempt(scope):
            await self.app(scope, receive, send)
            return
        limit = f"the limit is {self.max_bytes} bytes"
        declared = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if declared and (parse_id(declared, MAX_DB_INT) or 0) > self.max_bytes:
            await _refuse(scope, send, f"the body declares {declared} bytes; {limit}")
            return
        try:
            messages = await self._read(receive)
        except BodyTooLarge:
            await _refuse(scope, send, f"the body is longer than the limit; {limit}")
            return
        replay = iter(messages)

        async def replayed() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)

    @staticmethod
    def _exempt(scope: Scope) -> bool:
        """A multipart upload to an upload route (any other route reads its body whole)."""
        if scope["method"] != "POST" or scope["path"] not in UPLOAD_PATHS:
            return False
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        return content_type.lower().startswith(b"multipart/")

    async def _read(self, receive: Receive) -> List[Message]:
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                raise BodyTooLarge()
            if not message.get("more_body", False):
                return messages


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; send finite numbers only")


def _number(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise ValueError(f"a number of {len(text)} characters is longer than any field allows")
        return kind(text)
    return parse


def strict_json(body: bytes) -> Any:
    """``json.loads`` that refuses NaN, Infinity, overlong numbers and NUL characters in
    text (as JSONDecodeError)."""
    try:
        if b"\\u0000" in body if isinstance(body, bytes) else "\\u0000" in body:
            raise ValueError("text must not hold NUL characters (\\u0000)")
        return json.loads(body, parse_constant=_constant, parse_int=_number(int),
                          parse_float=_number(float))
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise
        doc = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        raise json.JSONDecodeError(str(exc), doc[:200], 0) from exc


class _ContractRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


class ContractRoute(APIRoute):
    """An API route whose JSON body is read by ``strict_json``."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Any:
            return await handler(_ContractRequest(request.scope, request.receive))

        return route_handler
