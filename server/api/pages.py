"""Paginated lists on the wire: the body stays a JSON array (the shape every
client already reads), and two headers say where it stands: ``X-Total-Count``
(rows in the whole list) and, when more follow, ``Link: <path?query>;
rel="next"`` (a path under the server's URL, the SDK follows it)."""

from typing import Annotated, Dict, Optional, TypeVar
from urllib.parse import urlencode

from fastapi import Query, Request, Response

from edgefarm.shared.contract.schemas import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

from ..services.pages import Page

T = TypeVar("T")

#: How many rows one page holds.
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="rows per page")]
DEFAULT_LIMIT = DEFAULT_PAGE_SIZE


def next_link(request: Request, changes: Dict[str, Optional[str]]) -> str:
    """This request's path and query with ``changes`` applied (None removes a parameter)."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    params += [(k, v) for k, v in changes.items() if v is not None]
    return request.url.path + ("?" + urlencode(params) if params else "")


def send_page(request: Request, response: Response, page: Page[T]):
    """The page's items, with its ``X-Total-Count`` and ``Link`` headers set on ``response``."""
    response.headers["X-Total-Count"] = str(page.total)
    if page.has_next:
        if page.cursor is not None:
            name, row_id = page.cursor
            changes = {name: str(row_id), "offset": None}
        else:
            changes = {"offset": str(page.offset + len(page.items))}
        changes["limit"] = str(page.limit)
        response.headers["Link"] = f'<{next_link(request, changes)}>; rel="next"'
    return page.items
