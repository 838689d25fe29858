"""The dashboard's error pages. ``DashboardError`` is shown as ``error.html``
with its status. ``DashboardRoute`` is the route class of the pages: a domain
error of the services (``edgefarm.server.services.errors``) raised while a page
is built becomes that error page, with the status and words the API answers
the same refusal with (``edgefarm.server.problems.domain_status``)."""

from typing import Callable, Coroutine, Optional

from fastapi import Request, Response
from fastapi.routing import APIRoute

from ..problems import domain_status
from ..services.errors import DomainError


class DashboardError(Exception):
    """Rendered as an HTML page (``error.html``) with the given status."""

    def __init__(self, status: int, title: str, message: str, sign_in: Optional[str] = None):
        super().__init__(message)
        self.status, self.title, self.message = status, title, message
        self.sign_in = sign_in  # the /login link to offer, if any


class DashboardRoute(APIRoute):
    """A page: the services' refusals become error pages, not problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[None, None, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except DomainError as exc:
                raise DashboardError(domain_status(exc), exc.title, exc.detail) from exc

        return page_handler
