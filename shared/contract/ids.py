"""Whole numbers on the wire: row ids, counts, sizes, offsets, and the one
parser that reads an id out of text (a token, a session cookie, a model
reference, a path segment).

The databases store ids and counters as signed 64-bit integers (SQLite's
INTEGER, PostgreSQL's bigint; ``integer`` columns hold 32 bits, see
``MAX_INT32``), so every whole number a client sends is bounded before it
reaches one: a larger one is a validation error (HTTP 422), never a crash.
``parse_id`` accepts ASCII digits only: ``str.isdigit`` is also true of
characters such as "²" that ``int`` cannot read.
"""

from typing import Annotated, Optional

from pydantic import Field

#: The largest signed 64-bit integer: the bound of every id and counter.
MAX_DB_INT = 2**63 - 1
#: The largest value of a 32-bit ``integer`` column (PostgreSQL), e.g. a dataset's sample count.
MAX_INT32 = 2**31 - 1
#: ASCII digits of ``MAX_DB_INT``: a longer digit string is no id.
MAX_ID_DIGITS = len(str(MAX_DB_INT))

#: A row id: 1 .. 2^63-1.
DbId = Annotated[int, Field(ge=1, le=MAX_DB_INT)]
#: A count, size or offset: 0 .. 2^63-1.
Count = Annotated[int, Field(ge=0, le=MAX_DB_INT)]

_ASCII_DIGITS = frozenset("0123456789")


def parse_id(text: str) -> Optional[int]:
    """The row id ``text`` spells (ASCII digits, 1 .. 2^63-1), else None."""
    if not text or len(text) > MAX_ID_DIGITS or not _ASCII_DIGITS.issuperset(text):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_DB_INT else None
