"""What can go wrong talking to an EdgeFarm server, sorted once for every client.

Every failure of a request becomes one ``FarmError`` subclass:

* ``NetworkError`` (no answer; ``TimedOut`` when none came in time) and
  ``ServerUnavailable`` (5xx, or 429 asking to slow down, honouring a numeric
  ``Retry-After``) are ``TransientError``s: the same request may work later;
* ``AccessDenied`` (401/403: the token is refused) and ``ProtocolMismatch`` (426)
  will not go away by retrying; a person must act;
* ``Conflict`` (409: for an agent, the lease is gone);
* ``Rejected`` (any other 4xx: the request itself is wrong), ``NotFound`` (404);
* ``UnexpectedAnswer``: a success whose body is not what the contract says;
* ``DigestMismatch``: a download whose sha256 is not the one asked for.

A problem+json body (RFC 9457) is parsed into the contract's ``Problem`` here and
nowhere else; ``summary`` is the one line a person reads (``title: detail``).
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Type

import httpx
from pydantic import ValidationError

from edgefarm.shared.contract.schemas import Problem


class FarmError(Exception):
    """A request to the server at ``server_url`` failed.

    ``status`` is the HTTP status (None when no answer came), ``problem`` the
    parsed problem+json body if there was one, ``summary`` the failure in one
    line without the request (``Not a model file: neither TFLite nor ONNX``),
    ``retry_after`` the seconds the server asked to wait, if it said."""

    retryable = False

    def __init__(self, message: str, *, server_url: str, status: Optional[int] = None,
                 problem: Optional[Problem] = None, summary: Optional[str] = None,
                 retry_after: Optional[float] = None):
        super().__init__(message)
        self.message = message
        self.server_url = server_url
        self.status = status
        self.problem = problem
        self.summary = summary if summary is not None else message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class TransientError(FarmError):
    """The same request may succeed later: retry it with backoff."""

    retryable = True


class NetworkError(TransientError):
    """No answer: the server could not be reached or the transfer broke off."""


class TimedOut(NetworkError):
    """No answer within the timeout."""


class ServerUnavailable(TransientError):
    """5xx (the server failed) or 429 (it asks to slow down)."""


class DigestMismatch(TransientError):
    """A downloaded file's sha256 is not the one asked for (it was discarded)."""


class AccessDenied(FarmError):
    """401/403: the server refuses this token."""


class ProtocolMismatch(FarmError):
    """426: client and server speak different versions of the wire protocol."""


class Conflict(FarmError):
    """409: the resource changed under the request (for an agent: the lease is gone)."""


class Rejected(FarmError):
    """Any other 4xx: the request itself is wrong; retrying will not help."""


class NotFound(Rejected):
    """404: no such resource."""


class UnexpectedAnswer(FarmError):
    """A success whose body does not parse as the contract says."""


#: Message templates a client may set per error class; ``{text}`` is the request
#: and the server's answer, e.g. ``POST /api/v1/agents/lease -> 401 Unauthorized: ...``.
Hints = Mapping[Type[FarmError], str]

_BY_STATUS: Dict[int, Type[FarmError]] = {
    401: AccessDenied, 403: AccessDenied, 404: NotFound, 409: Conflict, 426: ProtocolMismatch,
    429: ServerUnavailable,
}


def error_class(status: int) -> Type[FarmError]:
    """The error class of an answer with this (failure) status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerUnavailable if status >= 500 else Rejected


def parse_problem(response: httpx.Response) -> Optional[Problem]:
    """The problem+json body of ``response``, or None when it has none (any JSON
    object with a ``title`` counts, whatever its content type says)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or not body.get("title"):
        return None
    fields = {key: value for key, value in body.items() if value is not None}
    fields.setdefault("status", response.status_code)
    try:
        return Problem.model_validate(fields)
    except ValidationError:
        return None


def problem_message(response: httpx.Response, problem: Optional[Problem] = None) -> str:
    """``Title: detail`` from a problem body, else the status and the body's first line."""
    problem = problem if problem is not None else parse_problem(response)
    if problem is not None:
        return f"{problem.title}: {problem.detail}" if problem.detail else problem.title
    text = response.text.strip()
    first = text.splitlines()[0][:200] if text else ""
    reason = response.reason_phrase or "error"
    return f"HTTP {response.status_code} {reason}" + (f": {first}" if first else "")


def error_for_response(response: httpx.Response, server_url: str, hints: Optional[Hints] = None) -> FarmError:
    """The sorted error for an answer with status 400 or above (its body read)."""
    status = response.status_code
    problem = parse_problem(response)
    summary = problem_message(response, problem)
    request = f"{response.request.method} {response.request.url.path}"
    text = f"{request} -> {status} {summary}" if problem is not None else f"{request} -> {summary}"
    kind = error_class(status)
    message = (hints or {}).get(kind, "{text}").format(text=text)
    retry_after = _retry_after(response) if kind is ServerUnavailable else None
    return kind(message, server_url=server_url, status=status, problem=problem, summary=summary,
                retry_after=retry_after)


def error_for_transport(exc: httpx.HTTPError, server_url: str, started: bool = False) -> FarmError:
    """The sorted error for a request that got no (whole) answer; ``started`` when
    the answer had begun to arrive and broke off."""
    if isinstance(exc, httpx.TimeoutException):
        return TimedOut(f"the server at {server_url} did not answer in time ({exc})",
                        server_url=server_url, summary=str(exc))
    if isinstance(exc, httpx.TransportError):
        what = (f"the answer from {server_url} was interrupted" if started
                else f"cannot reach the server at {server_url}")
        return NetworkError(f"{what}: {exc}", server_url=server_url, summary=str(exc))
    return UnexpectedAnswer(f"unexpected answer from {server_url}: {exc}", server_url=server_url)


def _retry_after(response: httpx.Response) -> Optional[float]:
    """``Retry-After`` in seconds when it is a number (an HTTP date is ignored)."""
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None
