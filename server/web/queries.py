"""The few reads only the dashboard needs, returning plain values (strings,
numbers, dicts), never table rows: the choices of the filter menus, id-to-name
maps, the family list and the overview counts. Everything else the pages show
comes from the API's own functions (``edgefarm.server.api.*``)."""

from typing import Dict, List

from sqlalchemy import distinct, func, select

from edgefarm.shared.contract.enums import Task

from ..tables import Device, Job, Model, Result


def _strings(session, column) -> List[str]:
    return [v for v in session.scalars(select(distinct(column)).order_by(column)) if v]


def filter_choices(session) -> Dict[str, List[str]]:
    """What each filter menu of the results page offers."""
    variants = set(_strings(session, Model.quantization)) | set(_strings(session, Model.variant_label))
    return {
        "model": _strings(session, Model.name), "family": _strings(session, Model.family),
        "variant": sorted(variants), "device": _strings(session, Device.name),
        "platform": _strings(session, Device.platform), "runtime": _strings(session, Result.runtime),
        "task": [str(t) for t in Task],
    }


def model_names(session) -> Dict[int, str]:
    return dict(session.execute(select(Model.id, Model.name)).all())


def device_names(session) -> Dict[int, str]:
    return dict(session.execute(select(Device.id, Device.name)).all())


def families(session) -> List[dict]:
    """Each family with its number of variants and results, for the compare index."""
    variants = dict(session.execute(
        select(Model.family, func.count(Model.id)).group_by(Model.family)).all())
    results = dict(session.execute(
        select(Model.family, func.count(Result.id)).join(Result, Result.model_id == Model.id)
        .group_by(Model.family)).all())
    return [{"name": name, "variants": count, "results": results.get(name, 0)}
            for name, count in sorted(variants.items())]


def result_count(session) -> int:
    return int(session.scalar(select(func.count(Result.id))) or 0)


def job_counts(session) -> Dict[str, int]:
    return dict(session.execute(select(Job.state, func.count(Job.id)).group_by(Job.state)).all())
