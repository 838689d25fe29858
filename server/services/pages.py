"""One page of a list: the rows a query holds from ``offset`` on, at most
``limit`` of them, and how many the whole list holds. Every list the API and the
dashboard serve is read a page at a time; the page size is bounded by the
contract (``schemas.MAX_PAGE_SIZE``)."""

from dataclasses import dataclass
from typing import Callable, Generic, List, Optional, Tuple, TypeVar

from sqlalchemy import Select, func, select

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    items: List[T]
    total: int
    limit: int
    offset: int = 0
    #: the cursor that continues the list past this page when it goes on:
    #: (``after`` or ``before``, a row id)
    cursor: Optional[Tuple[str, int]] = None
    #: the list was read by a cursor: it goes on exactly when ``cursor`` is set
    by_cursor: bool = False

    @property
    def has_next(self) -> bool:
        if self.by_cursor:
            return self.cursor is not None
        return self.offset + len(self.items) < self.total


def count_of(session, query: Select) -> int:
    """How many rows ``query`` holds, its order and page left out."""
    inner = query.order_by(None).limit(None).offset(None).subquery()
    return int(session.scalar(select(func.count()).select_from(inner)) or 0)


def read_page(session, query: Select, limit: int, offset: int, convert: Callable[..., T]) -> Page[T]:
    """The ``offset``/``limit`` page of ``query`` (one entity per row), each row through ``convert``."""
    rows = session.scalars(query.limit(limit).offset(offset)).all()
    total = count_of(session, query) if rows or offset else 0
    return Page([convert(row) for row in rows], total, limit, offset)
