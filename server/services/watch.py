"""The regression watch: series and their history, baselines, per-family
thresholds, and the check of every new result against its series' baseline.

``check_result`` runs inside a report's write transaction (``leases.report``): the
regressions found are stored with the result and announced through the webhook
outbox in the same commit. The significance test itself never runs under the write
lock: a report whose series has a baseline is rolled back (``JudgeFirst``), judged by
``prejudge`` in a read transaction and stored again with that verdict (a series
without a baseline costs the report one read). The decision itself is
``server.verdicts``'.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from edgefarm.shared.contract.enums import RunState
from edgefarm.shared.contract.rules import headline_metric
from edgefarm.shared.contract.schemas import DEFAULT_PAGE_SIZE, RunReport
from edgefarm.shared.contract.watch import (
    DEFAULT_THRESHOLDS,
    BaselineOut,
    BaselineSet,
    FamilyThresholds,
    HistoryOut,
    HistoryPoint,
    RegressionOut,
    Rule,
    Series,
    Thresholds,
)
from edgefarm.shared.stats.quantiles import quantile_ci

from ..context import AppContext
from ..tables import (
    Baseline,
    Dataset,
    Device,
    Job,
    Model,
    Regression,
    RegressionThresholds,
    Result,
    Run,
    utcnow,
)
from ..verdicts import CONFIDENCE, MIN_SAMPLES, Finding, figures_of, judge
from .errors import Invalid, NotFound
from .lookups import get_row
from .pages import Page, read_page

HISTORY_LIMIT = 200  # points on one history answer (the newest)


def variant_of(model: Model) -> str:
    """A model's place in its family: its variant label, else its quantization."""
    return model.variant_label or model.quantization


def series_of(result: Result, model: Model) -> Series:
    return Series(family=model.family, variant=variant_of(model), device_id=result.device_id,
                  runtime=result.runtime)


def _in_series(series: Series):
    """Results (joined to their model) of ``series``."""
    variant = or_(Model.variant_label == series.variant,
                  and_(Model.variant_label.is_(None), Model.quantization == series.variant))
    return and_(Model.family == series.family, variant, Result.device_id == series.device_id,
                Result.runtime == series.runtime)


def thresholds_for(session: Session, family: str) -> Thresholds:
    row = session.get(RegressionThresholds, family)
    return Thresholds.model_validate(row.thresholds) if row is not None else DEFAULT_THRESHOLDS


def _baseline_row(session: Session, series: Series) -> Optional[Baseline]:
    return session.scalar(select(Baseline).where(
        Baseline.family == series.family, Baseline.variant == series.variant,
        Baseline.device_id == series.device_id, Baseline.runtime == series.runtime))


_BASELINES = Baseline.__table__
_BASELINE_OF = select(_BASELINES.c.result_id).where(
    _BASELINES.c.family == bindparam("family"), _BASELINES.c.variant == bindparam("variant"),
    _BASELINES.c.device_id == bindparam("device_id"), _BASELINES.c.runtime == bindparam("runtime"))
_RUNS = Run.__table__
_RUN_OF_REPORT = (select(_RUNS.c.device_id, _RUNS.c.model_id, _RUNS.c.job_id)
                  .where(_RUNS.c.id == bindparam("run_id")))


def series_for(ctx: AppContext, session: Session, model_id: int, device_id: int, runtime: str) -> Series:
    """The series of a result of ``model_id`` on ``device_id`` with ``runtime``; the model's
    family and variant are read once per process (a model's never change;
    ``AppContext.lease_parts`` is cleared when a model is deleted)."""
    family, variant = family_and_variant(ctx, session, model_id)
    return Series(family=family, variant=variant, device_id=device_id, runtime=runtime)


def family_and_variant(ctx: AppContext, session: Session, model_id: int) -> Tuple[str, str]:
    """A model's family and variant, read once per process (``series_for``)."""
    return ctx.lease_parts.get(("series", model_id), lambda: _family_and_variant(session, model_id))


def _family_and_variant(session: Session, model_id: int) -> Tuple[str, str]:
    model = session.get(Model, model_id)
    return model.family, variant_of(model)


def baseline_result_id(session: Session, series: Series) -> Optional[int]:
    """The result the series is held to, or None: one prebuilt Core read."""
    return session.connection().execute(_BASELINE_OF, {
        "family": series.family, "variant": series.variant, "device_id": series.device_id,
        "runtime": series.runtime}).scalar()


def _figures(result: Result):
    return figures_of(result.body or {}, result.accuracy, result.accuracy_metric, result.dataset_sha256)


# ---------------------------------------------------------------- the check


class JudgeFirst(Exception):
    """Raised in a report's transaction when its result's series has a baseline and the
    result was not judged beforehand: the caller rolls back and judges it outside the
    write lock (``prejudge``)."""


@dataclass(frozen=True)
class Prejudged:
    """A report's result judged before the report's write transaction: against which
    baseline result (None: its series has none) and what regressed."""

    baseline_result_id: Optional[int]
    findings: List[Finding]


def prejudge(ctx: AppContext, run_id: int, device_id: Optional[int],
             report: RunReport) -> Optional[Prejudged]:
    """Judge a reported result against its series' baseline in a read transaction of its
    own, so that the significance test (tens of ms for thousands of raw times) never holds
    the write lock. None when the report stores no result or names no run of the device
    (``device_id`` None: the run's device, the agent's token being checked in the report's
    own transaction, which is the one that stores anything)."""
    body = report.result
    if body is None or report.state != RunState.succeeded:
        return None
    with ctx.db.read_each() as session:
        run = session.connection().execute(_RUN_OF_REPORT, {"run_id": run_id}).first()
        if run is None or run.device_id is None or device_id not in (None, run.device_id):
            return None
        series = series_for(ctx, session, run.model_id, run.device_id, body.runtime.name)
        baseline_id = baseline_result_id(session, series)
        if baseline_id is None:
            return Prejudged(None, [])
        base = session.get(Result, baseline_id)
        job = session.get(Job, run.job_id)
        dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
        accuracy, metric = headline_metric(body.metrics)
        new = figures_of(body.model_dump(mode="json", include={"latency_ms", "agreement", "metrics"}),
                         accuracy, metric, dataset.sha256 if dataset else None)
        return Prejudged(base.id, judge(_figures(base), new, thresholds_for(session, series.family)))


def check_result(session: Session, result: Result, prejudged: Optional[Prejudged] = None) -> List[Regression]:
    """Compare a new result with its series' baseline and store what regressed (never
    the baseline with itself). ``prejudged`` is used when it was judged against the
    baseline the series still has; otherwise the result is judged here. The caller owns
    the transaction."""
    model = session.get(Model, result.model_id)
    series = series_of(result, model)
    baseline = _baseline_row(session, series)
    if baseline is None or baseline.result_id == result.id:
        return []
    if prejudged is not None and prejudged.baseline_result_id == baseline.result_id:
        found = prejudged.findings
    else:  # no judgement beforehand, or the baseline changed since
        base = session.get(Result, baseline.result_id)
        found = judge(_figures(base), _figures(result), thresholds_for(session, series.family))
    rows = [Regression(
        result_id=result.id, baseline_result_id=baseline.result_id, job_id=result.job_id,
        family=series.family, variant=series.variant, device_id=series.device_id, runtime=series.runtime,
        metric=f.metric, rule=str(f.rule), baseline_value=f.baseline_value, value=f.value,
        change=f.change, threshold=f.threshold, low=f.low, high=f.high, detail=f.detail,
        created_at=utcnow(),
    ) for f in found]
    session.add_all(rows)
    session.flush()
    return rows


# ---------------------------------------------------------------- baselines and thresholds


def _baseline_out(row: Baseline, result: Result, device: Device) -> BaselineOut:
    return BaselineOut(
        id=row.id, series=Series(family=row.family, variant=row.variant, device_id=row.device_id,
                                 runtime=row.runtime),
        device_name=device.name, result_id=result.id, p50_ms=result.p50_ms, accuracy=result.accuracy,
        accuracy_metric=result.accuracy_metric, runtime_version=result.runtime_version,
        created_at=row.created_at,
    )


def _newest_of(session: Session, series: Series) -> Result:
    result = session.scalar(select(Result).join(Model, Model.id == Result.model_id)
                            .where(_in_series(series)).order_by(Result.id.desc()).limit(1))
    if result is None:
        raise NotFound("result of series", series.model_dump())
    return result


def set_baseline(ctx: AppContext, body: BaselineSet, token_id: Optional[int]) -> BaselineOut:
    """Hold the result's series to it (or the series' newest result); replaces the old baseline."""
    if (body.result_id is None) == (body.series is None):
        raise Invalid("Invalid baseline", "give either result_id or series, not both or neither")
    with ctx.db.write() as session:
        if body.result_id is not None:
            result = get_row(session, Result, body.result_id, "result")
        else:
            result = _newest_of(session, body.series)
        series = series_of(result, session.get(Model, result.model_id))
        row = _baseline_row(session, series)
        if row is None:
            row = Baseline(family=series.family, variant=series.variant, device_id=series.device_id,
                           runtime=series.runtime, result_id=result.id)
            session.add(row)
        row.result_id, row.created_by, row.created_at = result.id, token_id, utcnow()
        session.flush()
        return _baseline_out(row, result, session.get(Device, result.device_id))


def list_baselines(ctx: AppContext, limit: int = DEFAULT_PAGE_SIZE, offset: int = 0,
                   family: Optional[str] = None) -> Page[BaselineOut]:
    with ctx.db.read() as session:
        query = select(Baseline).order_by(Baseline.id)
        if family:
            query = query.where(Baseline.family == family)
        return read_page(session, query, limit, offset, lambda row: _baseline_out(
            row, session.get(Result, row.result_id), session.get(Device, row.device_id)))


def delete_baseline(ctx: AppContext, baseline_id: int) -> BaselineOut:
    with ctx.db.write() as session:
        row = get_row(session, Baseline, baseline_id, "baseline")
        out = _baseline_out(row, session.get(Result, row.result_id), session.get(Device, row.device_id))
        session.delete(row)
        return out


def get_thresholds(ctx: AppContext, family: str) -> FamilyThresholds:
    with ctx.db.read() as session:
        row = session.get(RegressionThresholds, family)
        return FamilyThresholds(family=family, default=row is None,
                                thresholds=thresholds_for(session, family))


def set_thresholds(ctx: AppContext, family: str, thresholds: Thresholds) -> FamilyThresholds:
    """A family's own thresholds (they apply to results reported from now on)."""
    with ctx.db.write() as session:
        row = session.get(RegressionThresholds, family)
        if row is None:
            row = RegressionThresholds(family=family)
            session.add(row)
        row.thresholds, row.updated_at = thresholds.model_dump(), utcnow()
        return FamilyThresholds(family=family, default=False, thresholds=thresholds)


# ---------------------------------------------------------------- regressions


def regression_out(row: Regression, device_name: str) -> RegressionOut:
    return RegressionOut(
        id=row.id, result_id=row.result_id, baseline_result_id=row.baseline_result_id,
        job_id=row.job_id, device_name=device_name,
        series=Series(family=row.family, variant=row.variant, device_id=row.device_id, runtime=row.runtime),
        metric=row.metric, rule=Rule(row.rule), baseline_value=row.baseline_value, value=row.value,
        change=row.change, threshold=row.threshold, low=row.low, high=row.high, detail=row.detail,
        created_at=row.created_at,
    )


def find_regressions(session: Session, *, job: Optional[int] = None, result: Optional[int] = None,
                     family: Optional[str] = None, limit: int = DEFAULT_PAGE_SIZE,
                     offset: int = 0) -> Page[RegressionOut]:
    """Regressions, newest first, narrowed by job, result or family."""
    query = select(Regression).order_by(Regression.id.desc())
    if job is not None:
        query = query.where(Regression.job_id == job)
    if result is not None:
        query = query.where(Regression.result_id == result)
    if family:
        query = query.where(Regression.family == family)
    names: Dict[int, str] = {}

    def convert(row: Regression) -> RegressionOut:
        if row.device_id not in names:
            names[row.device_id] = session.get(Device, row.device_id).name
        return regression_out(row, names[row.device_id])

    return read_page(session, query, limit, offset, convert)


def list_regressions(ctx: AppContext, **filters) -> Page[RegressionOut]:
    with ctx.db.read() as session:
        return find_regressions(session, **filters)


def regressed_metrics(session: Session, result_ids: List[int]) -> Dict[int, List[str]]:
    """The regressed metrics of each of these results that has any."""
    if not result_ids:
        return {}
    rows = session.execute(select(Regression.result_id, Regression.metric)
                           .where(Regression.result_id.in_(result_ids))).all()
    found: Dict[int, List[str]] = {}
    for result_id, metric in rows:
        found.setdefault(result_id, []).append(metric)
    return found


def recent_regressions(ctx: AppContext, limit: int = 10) -> List[RegressionOut]:
    return list_regressions(ctx, limit=limit).items


# ---------------------------------------------------------------- history


def _median_interval(samples) -> Tuple[Optional[float], Optional[float]]:
    if len(samples) < MIN_SAMPLES:
        return None, None
    interval = quantile_ci(samples, 0.5, CONFIDENCE)
    return interval.low, interval.high


def _changes(before: Optional[HistoryPoint], point: HistoryPoint) -> List[str]:
    if before is None:
        return []
    names = (("runtime_version", "runtime"), ("agent_version", "agent"), ("os", "OS"))
    return [f"{label} {getattr(before, key) or '?'} -> {getattr(point, key) or '?'}"
            for key, label in names if getattr(before, key) != getattr(point, key)]


def history(ctx: AppContext, series: Series, limit: int = HISTORY_LIMIT) -> HistoryOut:
    """The series' newest ``limit`` results, oldest first, with the median's interval,
    version changes from one point to the next, the baseline and the regressions."""
    with ctx.db.read() as session:
        device = get_row(session, Device, series.device_id, "device")
        where = _in_series(series)
        total = int(session.scalar(select(func.count(Result.id)).join(Model, Model.id == Result.model_id)
                                   .where(where)) or 0)
        rows = session.execute(select(Result, Model).join(Model, Model.id == Result.model_id).where(where)
                               .order_by(Result.id.desc()).limit(limit)).all()[::-1]
        baseline = _baseline_row(session, series)
        regressed = regressed_metrics(session, [r.id for r, _ in rows])
        points: List[HistoryPoint] = []
        for result, model in rows:
            body = result.body or {}
            low, high = _median_interval((body.get("latency_ms") or {}).get("samples") or [])
            point = HistoryPoint(
                result_id=result.id, job_id=result.job_id, created_at=result.created_at,
                model_id=model.id, model_name=model.name, p50_ms=result.p50_ms, p50_low=low,
                p50_high=high, accuracy=result.accuracy, accuracy_metric=result.accuracy_metric,
                psnr_db=(body.get("agreement") or {}).get("psnr_db"),
                runtime_version=result.runtime_version, agent_version=result.agent_version,
                os=(result.device_snapshot or {}).get("os"),
                baseline=baseline is not None and baseline.result_id == result.id,
                regressions=sorted(regressed.get(result.id, [])),
            )
            point.changes = _changes(points[-1] if points else None, point)
            points.append(point)
        return HistoryOut(series=series, device_name=device.name, total=total, points=points,
                          baseline_result_id=baseline.result_id if baseline else None,
                          thresholds=thresholds_for(session, series.family))


def series_list(ctx: AppContext, limit: int = 100) -> List[Tuple[Series, str, int]]:
    """Every series that has results: (series, device name, result count), busiest first."""
    with ctx.db.read() as session:
        variant = func.coalesce(Model.variant_label, Model.quantization)
        rows = session.execute(
            select(Model.family, variant, Result.device_id, Result.runtime, func.count(Result.id))
            .join(Model, Model.id == Result.model_id)
            .group_by(Model.family, variant, Result.device_id, Result.runtime)
            .order_by(func.count(Result.id).desc()).limit(limit)).all()
        names = {d.id: d.name for d in session.scalars(select(Device))}
    return [(Series(family=f, variant=v, device_id=d, runtime=r), names.get(d, str(d)), n)
            for f, v, d, r, n in rows]
