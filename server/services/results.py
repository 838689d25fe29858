"""Results: the filtered list (and its CSV), one result, and the family
comparison (every variant of a family on every device, the newest result of
each, with deltas against the family's original). Lists are read a page at a
time, the comparison by one grouped query. The arithmetic of the comparison is
``edgefarm.server.compare``'s; this module reads what it compares."""

import csv
import io
from datetime import datetime
from typing import Iterable, List, Optional

from sqlalchemy import Select, func, or_, select, true

from edgefarm.shared.contract.ids import parse_id
from edgefarm.shared.contract.schemas import DEFAULT_PAGE_SIZE, CompareOut, ResultOut, ResultVersus

from .. import statistics
from ..compare import CSV_COLUMNS, compare_cells, flat_row, platform_spread
from ..context import AppContext
from ..tables import Dataset, Device, Job, Model, Result
from .convert import model_out, result_out
from .devices import describe
from .errors import NotFound
from .pages import Page
from .references import first_original


def _joined() -> Select:
    """Each result with what its answer names: model, device, dataset and the job's task."""
    return (
        select(Result, Model, Device, Dataset, Job.task)
        .join(Model, Model.id == Result.model_id).join(Device, Device.id == Result.device_id)
        .join(Job, Job.id == Result.job_id).outerjoin(Dataset, Dataset.id == Result.dataset_id)
    )


def _ref_filter(column_id, column_name, ref: str):
    row_id = parse_id(ref)
    if row_id is not None:
        return or_(column_id == row_id, column_name == ref)
    return column_name == ref


def _filtered(query: Select, *, model: Optional[str] = None, family: Optional[str] = None,
              variant: Optional[str] = None, device: Optional[str] = None,
              platform: Optional[str] = None, runtime: Optional[str] = None,
              task: Optional[str] = None, job: Optional[int] = None,
              since: Optional[datetime] = None, until: Optional[datetime] = None) -> Select:
    """``query`` (over results joined to their model, device and job) narrowed by the filters:
    ``model`` is an id, name or sha256, ``device`` an id or name, ``variant`` a quantization
    or a variant label."""
    if model:
        query = query.where(or_(_ref_filter(Model.id, Model.name, model), Model.sha256 == model))
    if family:
        query = query.where(Model.family == family)
    if variant:
        query = query.where(or_(Model.quantization == variant, Model.variant_label == variant))
    if device:
        query = query.where(_ref_filter(Device.id, Device.name, device))
    if platform:
        query = query.where(Device.platform == platform)
    if runtime:
        query = query.where(Result.runtime == runtime)
    if task:
        query = query.where(Job.task == task)
    if job is not None:
        query = query.where(Result.job_id == job)
    if since:
        query = query.where(Result.created_at >= since)
    if until:
        query = query.where(Result.created_at <= until)
    return query


def _narrow(query: Select, filters: dict) -> Select:
    """``query`` over results narrowed by the filters, joining only the tables they name."""
    if any(filters.get(k) for k in ("model", "family", "variant")):
        query = query.join(Model, Model.id == Result.model_id)
    if filters.get("device") or filters.get("platform"):
        query = query.join(Device, Device.id == Result.device_id)
    if filters.get("task"):
        query = query.join(Job, Job.id == Result.job_id)
    return _filtered(query, **filters)


def _count(session, filters: dict) -> int:
    """How many results the filters hold."""
    return int(session.scalar(_narrow(select(func.count(Result.id)), filters)) or 0)


def find_results(
    session, base_url: str, *, limit: int = DEFAULT_PAGE_SIZE, offset: int = 0,
    after: Optional[int] = None, before: Optional[int] = None, newest_first: bool = False,
    **filters,
) -> Page[ResultOut]:
    """One page of the results the filters hold, in id order (``newest_first``: from the
    newest). ``after``/``before`` are cursors: only results with a larger/smaller id. The
    page's cursor continues the list past it: an index seek, however deep (``offset``
    pages count the rows they skip)."""
    ids = _narrow(select(Result.id), filters)
    if after is not None:
        ids = ids.where(Result.id > after)
    if before is not None:
        ids = ids.where(Result.id < before)
    order = Result.id.desc() if newest_first else Result.id
    # the page's ids first, on the narrow rows of an index (an offset skips them there),
    # then the page's results with what they name
    chosen = list(session.scalars(ids.order_by(order).limit(limit + 1).offset(offset)))
    rows = session.execute(_joined().where(Result.id.in_(chosen)).order_by(order)).all() if chosen else []
    items = [result_out(r, m, d, ds, t, base_url) for r, m, d, ds, t in rows[:limit]]
    page = Page(items, _count(session, filters), limit, offset, by_cursor=True)
    if len(rows) > limit:
        page.cursor = ("before" if newest_first else "after", items[-1].id)
    return page


def list_results(ctx: AppContext, base_url: str, **options) -> Page[ResultOut]:
    """``find_results`` in a read transaction of its own."""
    with ctx.db.read() as session:
        return find_results(session, base_url, **options)


def get_result(ctx: AppContext, result_id: int, base_url: str) -> ResultOut:
    with ctx.db.read() as session:
        row = session.execute(_joined().where(Result.id == result_id)).first()
        if row is None:
            raise NotFound("result", result_id)
        result = result_out(*row, base_url)
    return result.model_copy(update={"intervals": statistics.result_intervals(result)})


def versus(ctx: AppContext, base_id: int, result_id: int, base_url: str,
           confidence: float = statistics.CONFIDENCE) -> ResultVersus:
    """Result ``result_id`` against ``base_id``: latency shift and accuracy difference."""
    base, result = get_result(ctx, base_id, base_url), get_result(ctx, result_id, base_url)
    return ResultVersus(base_result_id=base.id, result_id=result.id,
                        latency=statistics.latency_shift(base, result, confidence),
                        accuracy=statistics.accuracy_shift(base, result, confidence))


def newest_result_ids(session, family: str, platform: Optional[str] = None,
                      runtime: Optional[str] = None) -> List[int]:
    """The id of the newest result of each (model, device) of the family: for each pair
    of a family model and a device, one ``max(id)`` seek on ``ix_results_model_device``,
    however many results the pair holds."""
    newest = select(func.max(Result.id)).where(Result.model_id == Model.id,
                                               Result.device_id == Device.id)
    if runtime:
        newest = newest.where(Result.runtime == runtime)
    pairs = select(newest.scalar_subquery()).select_from(Model).join(Device, true()).where(
        Model.family == family)
    if platform:
        pairs = pairs.where(Device.platform == platform)
    return [i for i in session.scalars(pairs) if i is not None]


def compare_family(ctx: AppContext, family: str, base_url: str, platform: Optional[str] = None,
                   runtime: Optional[str] = None) -> CompareOut:
    """Variants of one family x devices, the newest result of each, with deltas against
    the base model (the family's original, else its oldest model)."""
    with ctx.db.read() as session:
        models = list(session.scalars(select(Model).where(Model.family == family).order_by(Model.id)))
        if not models:
            raise NotFound("model family", family)
        base = first_original(models) or models[0]
        newest = newest_result_ids(session, family, platform, runtime)
        results = [result_out(r, m, d, ds, t, base_url) for r, m, d, ds, t in session.execute(
            _joined().where(Result.id.in_(newest)).order_by(Result.id))]
        device_ids = sorted({r.device_id for r in results})
        devices = [describe(session, session.get(Device, i), ctx) for i in device_ids]
        return CompareOut(
            family=family, base_model_id=base.id, models=[model_out(m, base_url) for m in models],
            devices=devices, cells=compare_cells(results, base.id), spread=platform_spread(results),
        )


def to_csv(results: Iterable[ResultOut]) -> str:
    """One row per result with the columns of ``compare.CSV_COLUMNS``, its intervals
    included (computed once per result, then cached)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow(flat_row(result, statistics.result_intervals(result)))
    return buffer.getvalue()
