"""Errors as RFC 9457 problem details (``application/problem+json``).

Every failure the API reports, including request validation and the domain
errors of the services (``edgefarm.server.services.errors``, each class with
its status in ``DOMAIN_STATUS``), goes through here so that clients get one
shape with a message a person understands. ``document_problems`` writes the
same into the OpenAPI document: each operation lists the problem statuses it
can answer (``problem_statuses``), as ``application/problem+json`` ``Problem``.
"""

import re
from typing import Any, Dict, List, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgefarm.shared.contract.schemas import Problem, ProblemError

from .services import errors

PROBLEM_TYPE_BASE = "https://edgefarm.dev/problems/"
MEDIA_TYPE = "application/problem+json"


class ProblemException(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        kind: Optional[str] = None,
        errors: Optional[List[ProblemError]] = None,
        headers: Optional[dict] = None,
    ):
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.kind = kind or title.lower().replace(" ", "-")
        self.errors = errors or []
        self.headers = headers


def problem_response(request: Request, exc: ProblemException) -> JSONResponse:
    body = Problem(
        type=PROBLEM_TYPE_BASE + exc.kind,
        title=exc.title,
        status=exc.status,
        detail=exc.detail,
        instance=str(request.url.path),
        errors=exc.errors,
    )
    return JSONResponse(
        body.model_dump(mode="json"), status_code=exc.status, media_type=MEDIA_TYPE,
        headers=exc.headers,
    )


def _describe(error: dict) -> str:
    if error.get("type") == "json_invalid":
        return f"the body is not valid JSON: {(error.get('ctx') or {}).get('error', 'unreadable')}"
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    where = ".".join(loc)
    return f"{where}: {error.get('msg')}" if where else str(error.get("msg"))


def _validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [ProblemError(loc=list(e.get("loc", ())), msg=e.get("msg", "")) for e in exc.errors()]
    detail = "; ".join(_describe(e) for e in exc.errors()[:5]) or "the request is invalid"
    return problem_response(
        request, ProblemException(422, "Invalid request", detail, kind="validation", errors=errors)
    )


def _http_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    titles = {401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed"}
    title = titles.get(exc.status_code, "Error")
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    problem = ProblemException(exc.status_code, title, detail, headers=getattr(exc, "headers", None))
    return problem_response(request, problem)


def _problem(request: Request, exc: ProblemException) -> Any:
    return problem_response(request, exc)


#: The HTTP status of each domain error class (a subclass answers as its nearest listed base).
DOMAIN_STATUS = {
    errors.NotFound: 404, errors.Conflict: 409, errors.Invalid: 422, errors.Unauthorized: 401,
    errors.Forbidden: 403, errors.Gone: 410, errors.UnsupportedMedia: 415,
    errors.ProtocolMismatch: 426, errors.InsufficientStorage: 507, errors.DomainError: 400,
}


def domain_status(exc: errors.DomainError) -> int:
    return next(DOMAIN_STATUS[cls] for cls in type(exc).__mro__ if cls in DOMAIN_STATUS)


def _domain_problem(request: Request, exc: errors.DomainError) -> JSONResponse:
    problem = ProblemException(domain_status(exc), exc.title, exc.detail, kind=exc.code)
    return problem_response(request, problem)


#: What each problem status means, as the OpenAPI document says it.
PROBLEM_DESCRIPTIONS = {
    400: "Malformed request", 401: "Missing, unknown or revoked token",
    403: "The token's role may not do this", 404: "No such resource",
    409: "Conflicts with what is stored", 410: "The stored file is missing",
    413: "Request body too large", 415: "Unsupported upload",
    422: "Invalid request", 426: "Agent protocol version mismatch",
}
_AGENT_PATH = re.compile(r"^/api/v1/(agents/|runs/\{[^}]+\}/(heartbeat|release|report)$)")


def problem_statuses(path: str, method: str, operation: Dict[str, Any]) -> List[int]:
    """The problem statuses an API operation can answer."""
    statuses = {400, 422}
    if path != "/api/v1/info":
        statuses |= {401, 403, 404}
    if method != "get":
        statuses |= {409, 413}
    if "multipart/form-data" in operation.get("requestBody", {}).get("content", {}):
        statuses.add(415)
    if path.endswith("/file"):  # missing from the store; a dataset kept on the devices
        statuses |= {409, 410}
    if _AGENT_PATH.match(path):
        statuses.add(426)
    return sorted(statuses)


def _problem_schemas() -> Dict[str, Any]:
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    found = schema.pop("$defs", {})
    found["Problem"] = schema
    return found


def document_problems(app: FastAPI) -> None:
    """Make ``app.openapi()`` describe the problem responses the API really sends."""

    def openapi() -> Dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version,
                                   description=app.description, routes=app.routes)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            schemas.update(_problem_schemas())
            content = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
            for path, operations in document.get("paths", {}).items():
                for method, operation in operations.items():
                    responses = operation.setdefault("responses", {})
                    for status in problem_statuses(path, method, operation):
                        responses[str(status)] = {
                            "description": PROBLEM_DESCRIPTIONS[status], "content": content}
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemException, _problem)
    app.add_exception_handler(errors.DomainError, _domain_problem)
    app.add_exception_handler(RequestValidationError, _validation_problem)
    app.add_exception_handler(StarletteHTTPException, _http_problem)

