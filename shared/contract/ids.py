"""Whole numbers on the wire: row ids, counts, sizes, offsets, and the one
parser that reads an id out of text (a token, a session cookie, a model
reference, a path segment).

Row ids are 32-bit ``integer`` columns on PostgreSQL (64-bit on SQLite), so an
id is 1 .. ``MAX_ID``; counters and offsets are bounded by the signed 64-bit
range both databases compute in (``MAX_DB_INT``). Every whole number a client
sends is bounded before it reaches a database: a larger one is a validation
error (HTTP 422), never a crash. ``parse_id`` accepts ASCII digits only:
``str.isdigit`` is also true of characters such as "²" that ``int`` cannot read.
"""

from typing import Annotated, Optional

from pydantic import Field

#: The largest signed 64-bit integer: the bound of every count, size and offset.
MAX_DB_INT = 2**63 - 1
#: The largest value of a 32-bit ``integer`` column (PostgreSQL): the bound of row ids
#: and of counts stored in such a column (a dataset's sample count).
MAX_INT32 = 2**31 - 1
#: The largest row id.
MAX_ID = MAX_INT32

#: A row id: 1 .. 2^31-1.
DbId = Annotated[int, Field(ge=1, le=MAX_ID)]
#: A count, size or offset: 0 .. 2^63-1.
Count = Annotated[int, Field(ge=0, le=MAX_DB_INT)]

_ASCII_DIGITS = frozenset("0123456789")


def parse_id(text: str, maximum: int = MAX_ID) -> Optional[int]:
    """The whole number ``text`` spells in ASCII digits, 1 .. ``maximum`` (a row id by
    default), else None."""
    if not text or len(text) > len(str(maximum)) or not _ASCII_DIGITS.issuperset(text):
        return None
    value = int(text)
    return value if 1 <= value <= maximum else None
