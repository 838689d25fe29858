"""The farm at a glance, as plain values (strings, numbers, dicts), never rows:
the server's identity and health, the dashboard's counts, the family list,
the choices of the results filters and the id-to-name maps of the job cards."""

from dataclasses import dataclass
from typing import Dict, List, Tuple

from sqlalchemy import distinct, func, literal_column, select, text

from edgefarm.shared.contract import PROTOCOL_VERSION
from edgefarm.shared.contract.enums import Task
from edgefarm.shared.contract.schemas import ServerInfo

from .. import __version__
from ..context import AppContext
from ..tables import Device, Job, Model, Result


def server_info(ctx: AppContext) -> ServerInfo:
    """Version, protocol and database; reading it proves the database answers."""
    with ctx.db.read() as session:
        session.execute(text("SELECT 1"))
    return ServerInfo(version=__version__, protocol_version=PROTOCOL_VERSION, database=ctx.db.dialect)


def _families(session) -> List[dict]:
    variants = dict(session.execute(
        select(Model.family, func.count(Model.id)).group_by(Model.family)).all())
    family_of = dict(session.execute(select(Model.id, Model.family)).all())
    results: Dict[str, int] = {}
    for model_id, count in session.execute(  # counted on an index, not by reading results
            select(Result.model_id, func.count()).group_by(Result.model_id)):
        results[family_of[model_id]] = results.get(family_of[model_id], 0) + count
    return [{"name": name, "variants": count, "results": results.get(name, 0)}
            for name, count in sorted(variants.items())]


def families(ctx: AppContext) -> List[dict]:
    """Each family with its number of variants and results."""
    with ctx.db.read() as session:
        return _families(session)


@dataclass
class Summary:
    families: List[dict]
    result_count: int
    job_counts: Dict[str, int]  # job state -> jobs


def summary(ctx: AppContext) -> Summary:
    with ctx.db.read() as session:
        results = int(session.scalar(select(func.count(Result.id))) or 0)
        jobs = dict(session.execute(select(Job.state, func.count(Job.id)).group_by(Job.state)).all())
        return Summary(_families(session), results, jobs)


def _strings(session, column) -> List[str]:
    return [v for v in session.scalars(select(distinct(column)).order_by(column)) if v]


def _indexed_strings(session, column) -> List[str]:
    """The distinct values of an indexed column of a big table, one index seek per value
    (a recursive walk from each value to the next) rather than a scan of every row."""
    step = select(func.min(column)).where(column > literal_column("walk.value")).scalar_subquery()
    walk = select(func.min(column).label("value")).cte("walk", recursive=True)
    walk = walk.union_all(select(step).select_from(walk).where(walk.c.value.is_not(None)))
    return [v for v in session.scalars(select(walk.c.value).where(walk.c.value.is_not(None))) if v]


def filter_choices(ctx: AppContext) -> Dict[str, List[str]]:
    """What each filter of the results table offers."""
    with ctx.db.read() as session:
        variants = set(_strings(session, Model.quantization)) | set(_strings(session, Model.variant_label))
        return {
            "model": _strings(session, Model.name), "family": _strings(session, Model.family),
            "variant": sorted(variants), "device": _strings(session, Device.name),
            "platform": _strings(session, Device.platform),
            "runtime": _indexed_strings(session, Result.runtime),
            "task": [str(t) for t in Task],
        }


def names(ctx: AppContext) -> Tuple[Dict[int, str], Dict[int, str]]:
    """(model id -> name, device id -> name)."""
    with ctx.db.read() as session:
        return (dict(session.execute(select(Model.id, Model.name)).all()),
                dict(session.execute(select(Device.id, Device.name)).all()))
