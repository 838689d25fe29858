"""Errors as RFC 9457 problem details (``application/problem+json``).

Every failure the API reports, including request validation and the domain
errors of the services (``edgefarm.server.services.errors``, each class with
its status in ``DOMAIN_STATUS``), goes through here so that clients get one
shape with a message a person understands.
"""

from typing import Any, List, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
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


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemException, _problem)
    app.add_exception_handler(errors.DomainError, _domain_problem)
    app.add_exception_handler(RequestValidationError, _validation_problem)
    app.add_exception_handler(StarletteHTTPException, _http_problem)

