"""Finding rows by the references people use: any row by its id, a model by
id, sha256 (full, or at least 8 leading hex digits) or name (the newest wins),
a dataset by id or name. A miss raises ``NotFound``; nothing here commits."""

from typing import Any, Optional, Type, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefarm.shared.contract.ids import parse_id

from ..tables import Dataset, Model
from .errors import NotFound

Row = TypeVar("Row")


def get_row(session: Session, table: Type[Row], row_id: int, what: str, **options: Any) -> Row:
    """The row of ``table`` with this id; ``what`` names it in the not-found message."""
    row = session.get(table, row_id, **options)
    if row is None:
        raise NotFound(what, row_id)
    return row


def _by_id(session: Session, table: Type[Row], ref: str) -> Optional[Row]:
    """The row whose id is ``ref``, when ``ref`` spells an id and such a row exists."""
    row_id = parse_id(ref)
    return session.get(table, row_id) if row_id is not None else None


def find_model(session: Session, ref: str) -> Model:
    """A model by id, full or abbreviated (>= 8 hex) sha256, or name (newest wins)."""
    ref = ref.strip()
    model = _by_id(session, Model, ref)
    if model is not None:
        return model
    query = select(Model).order_by(Model.id.desc())
    if len(ref) >= 8 and all(c in "0123456789abcdef" for c in ref):
        model = session.scalars(query.where(Model.sha256.startswith(ref))).first()
        if model is not None:
            return model
    model = session.scalars(query.where(Model.name == ref)).first()
    if model is None:
        raise NotFound("model", ref)
    return model


def find_dataset(session: Session, ref: str) -> Dataset:
    """A dataset by id or name."""
    ref = ref.strip()
    dataset = _by_id(session, Dataset, ref)
    if dataset is None:
        dataset = session.scalar(select(Dataset).where(Dataset.name == ref))
    if dataset is None:
        raise NotFound("dataset", ref)
    return dataset
