"""The plumbing every EdgeFarm client shares: one ``httpx.Client`` on one server's
``/api/v1``, every request and streamed download going through one place that
turns transport failures and error answers into the sorted ``FarmError``s, and
parses bodies into the contract's schemas.

The transport is passed in (``httpx.MockTransport`` in unit tests).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Collection, Dict, Iterator, List, Optional, Type, TypeVar, Union

import httpx
from pydantic import BaseModel, ValidationError

from edgefarm.shared import __version__
from edgefarm.shared.contract.schemas import MAX_PAGE_SIZE, ServerInfo

from .errors import FarmError, Hints, UnexpectedAnswer, error_for_response, error_for_transport

API = "/api/v1"
#: Items asked for per page when a list is read whole (the largest page a server gives).
PAGE_SIZE = MAX_PAGE_SIZE
T = TypeVar("T", bound=BaseModel)
Timeout = Union[float, httpx.Timeout]


class ApiClient:
    """A bearer token (if any) and fixed headers on one server; ``HINTS`` are the
    message templates of this kind of client (see ``errors.Hints``)."""

    HINTS: Hints = {}

    def __init__(self, url: str, token: Optional[str] = None, *, user_agent: str,
                 headers: Optional[Dict[str, str]] = None, timeout: Timeout = 30.0,
                 transport: Optional[httpx.BaseTransport] = None):
        self.url = url.rstrip("/")
        sent = {"User-Agent": f"{user_agent}/{__version__}", **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=self.url + API, headers=sent, timeout=timeout,
                                 transport=transport)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> ServerInfo:
        """The server's name, version and protocol version (no token needed)."""
        return self._parse(self._request("GET", "/info"), ServerInfo)

    # ------------------------------------------------------------ requests

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer to one request; a ``FarmError`` for no answer or a status >= 400."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, self.url) from exc
        if response.status_code >= 400:
            raise error_for_response(response, self.url, self.HINTS)
        return response

    @contextmanager
    def _stream(self, method: str, url: str, accept: Collection[int] = (), **kwargs: Any
                ) -> Iterator[httpx.Response]:
        """A streamed answer, its body read by the caller inside the ``with``;
        failures sorted as in ``_request``, a broken transfer included. Statuses
        in ``accept`` are handed to the caller even when they are >= 400."""
        started = False
        try:
            with self.http.stream(method, url, **kwargs) as response:
                started = True
                if response.status_code >= 400 and response.status_code not in accept:
                    response.read()
                    raise error_for_response(response, self.url, self.HINTS)
                yield response
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, self.url, started=started) from exc

    # ------------------------------------------------------------ bodies

    def _parse(self, response: httpx.Response, model: Type[T]) -> T:
        try:
            return model.model_validate(response.json())
        except ValueError as exc:  # not JSON, or a pydantic ValidationError
            raise self._unexpected(response, exc)

    def _parse_list(self, response: httpx.Response, model: Type[T]) -> List[T]:
        try:
            data = response.json()
        except ValueError as exc:
            raise self._unexpected(response, exc)
        if not isinstance(data, list):
            raise self._unexpected(response, "expected a list")
        try:
            return [model.model_validate(item) for item in data]
        except ValidationError as exc:
            raise self._unexpected(response, exc)

    def _pages(self, path: str, params: Dict[str, Any]) -> Iterator[httpx.Response]:
        """Each page of a paginated list: the first from ``path`` and ``params``, then
        each one the server's ``Link: <...>; rel="next"`` header names (a path under
        the server's URL), until a page has none."""
        response = self._request("GET", path, params=params)
        yield response
        while "next" in response.links:
            response = self._request("GET", self.url + response.links["next"]["url"])
            yield response

    def _parse_all(self, path: str, model: Type[T], params: Optional[Dict[str, Any]] = None,
                   most: Optional[int] = None) -> List[T]:
        """Every item of a paginated list, page after page; only the first ``most`` if given."""
        items: List[T] = []
        size = PAGE_SIZE if most is None else max(1, min(PAGE_SIZE, most))
        for response in self._pages(path, dict(params or {}, limit=size)):
            items.extend(self._parse_list(response, model))
            if most is not None and len(items) >= most:
                return items[:most]
        return items

    def _unexpected(self, response: httpx.Response, why: object) -> FarmError:
        return UnexpectedAnswer(f"unexpected answer from {self.url}{response.request.url.path}: {why}",
                                server_url=self.url, status=response.status_code)
