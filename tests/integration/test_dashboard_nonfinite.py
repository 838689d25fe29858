"""Results stored with NaN or infinite figures (by an older server, or written to
the database directly) render as missing ("—") on every dashboard page instead
of failing the page. SQLite only: PostgreSQL's json type refuses NaN, so such a
body cannot be stored there in the first place."""

import re

import pytest
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session

from edgefarm.server.tables import Result
from tests.integration.test_dashboard import sign_in
from tests.support.servers import populate_family

NAN, INF = float("nan"), float("inf")


def poison(body: dict) -> dict:
    """The body with NaN and infinite latency figures, samples and metrics."""
    latency = dict(body["latency_ms"], p50=NAN, p90=INF, mean=NAN, std=NAN, max=INF,
                   samples=[1.0, NAN, 2.0, INF, -INF])
    return dict(body, latency_ms=latency, init_ms=NAN, first_inference_ms=INF,
                metrics={**body["metrics"], "top1": NAN})


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_pages_render_nan_and_inf_results_as_missing(farm, tmp_path):
    populate_family(farm, tmp_path)
    engine = create_engine(farm.server.database_url)
    try:
        with Session(engine) as session, session.begin():
            results = session.scalars(select(Result).order_by(Result.id)).all()
            assert len(results) == 6
            for row in results[:3]:  # net-fp32, net-int8, net-pruned on one device
                session.execute(update(Result).where(Result.id == row.id).values(
                    body=poison(row.body), p50_ms=NAN, p90_ms=INF, accuracy=NAN))
            poisoned = [row.id for row in results[:3]]
    finally:
        engine.dispose()
    stored = farm.user.get(f"/api/v1/results/{poisoned[0]}")
    assert stored.status_code == 200, stored.text
    body = stored.json()  # what today's contract cannot hold is shown as missing
    assert body["latency_ms"] is None and body["init_ms"] is None and body["metrics"]["top1"] is None
    assert len(farm.user.get("/api/v1/results").json()) == 6
    client = sign_in(farm, farm.user_token)
    try:
        pages = ["/", "/results", "/results?sort=p50", "/results?sort=accuracy&order=desc",
                 "/compare/net", "/jobs"]
        pages += [f"/results/{rid}" for rid in poisoned]
        for page in pages:
            response = client.get(page)
            assert response.status_code == 200, (page, response.text[:2000])
            shown = re.findall(r".{60}\b(?:nan|inf)\b.{20}", response.text, re.I | re.S)
            assert shown == [], page
        assert client.get("/results.csv").status_code == 200  # an export keeps the stored values
        assert "—" in client.get(f"/results/{poisoned[0]}").text
    finally:
        client.close()
