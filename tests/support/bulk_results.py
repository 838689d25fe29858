"""Many results in a real farm's database, fast: bulk SQL inserts (executemany
through SQLAlchemy Core) that copy results the farm already holds.

The copies keep each template's body (so every row reads back as a valid
``ResultOut``) and spread over the (model, device) pairs of the templates, in
new jobs of ``runs_per_job`` runs each, ids and creation times increasing. Used
by the tests that need more results than any internal limit and by
``benchmarks/read_times.py``.
"""

from datetime import datetime, timedelta, timezone
from typing import Dict, List

from sqlalchemy import create_engine, func, select

from edgefarm.server.tables import Job, JobModel, Result, Run

BATCH = 5000


def _copy(row, table, **changes) -> Dict[str, object]:
    values = {c.name: getattr(row, c.name) for c in table.columns if c.name != "id"}
    values.update(changes)
    return values


def fill_results(database_url: str, count: int, runs_per_job: int = 2000) -> List[int]:
    """Insert ``count`` results copied from the existing ones; returns the new result ids."""
    engine = create_engine(database_url)
    jobs_t, links_t, runs_t, results_t = (Job.__table__, JobModel.__table__, Run.__table__,
                                          Result.__table__)
    try:
        with engine.begin() as conn:
            templates = conn.execute(select(results_t).order_by(results_t.c.id)).all()
            if not templates:
                raise ValueError("the farm holds no result to copy")
            first_job = conn.execute(select(jobs_t).where(jobs_t.c.id == templates[0].job_id)).one()
            template_run = conn.execute(select(runs_t).where(runs_t.c.id == templates[0].run_id)).one()
            start = datetime.now(timezone.utc) - timedelta(seconds=count)
            new_ids: List[int] = []
            for offset in range(0, count, runs_per_job):
                size = min(runs_per_job, count - offset)
                job_id = conn.execute(jobs_t.insert().values(
                    _copy(first_job, jobs_t, name=f"bulk {offset // runs_per_job + 1}"))
                ).inserted_primary_key[0]
                models = sorted({t.model_id for t in templates})
                conn.execute(links_t.insert(), [{"job_id": job_id, "model_id": m, "position": i}
                                                for i, m in enumerate(models)])
                picks = [templates[(offset + i) % len(templates)] for i in range(size)]
                moments = [start + timedelta(seconds=offset + i) for i in range(size)]
                for b in range(0, size, BATCH):
                    conn.execute(runs_t.insert(), [
                        _copy(template_run, runs_t, job_id=job_id, model_id=t.model_id,
                              device_id=t.device_id, state="succeeded", created_at=when)
                        for t, when in zip(picks[b:b + BATCH], moments[b:b + BATCH])])
                run_ids = list(conn.scalars(select(runs_t.c.id).where(runs_t.c.job_id == job_id)
                                            .order_by(runs_t.c.id)))
                before = conn.scalar(select(func.max(results_t.c.id)))
                for b in range(0, size, BATCH):
                    conn.execute(results_t.insert(), [
                        _copy(t, results_t, run_id=run_id, job_id=job_id, created_at=when)
                        for t, run_id, when in zip(picks[b:b + BATCH], run_ids[b:b + BATCH],
                                                   moments[b:b + BATCH])])
                new_ids.extend(conn.scalars(select(results_t.c.id).where(
                    results_t.c.id > before).order_by(results_t.c.id)))
        if engine.dialect.name == "postgresql":  # what autovacuum does to a table that grew
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM (FREEZE, ANALYZE)")
        return new_ids
    finally:
        engine.dispose()
