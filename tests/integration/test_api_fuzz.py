"""Property-based fuzzing of the REST API (schemathesis) against a real server on
SQLite and on PostgreSQL: every operation of the server's own OpenAPI document,
valid and invalid generated requests with admin, user and agent tokens, a fixed
seed and a bounded number of examples. No response may be a server error, and
each must match the document (status code, content type, body schema).
``benchmarks/fuzz_api.py`` runs the same for longer."""

import pytest

pytest.importorskip("schemathesis")

from tests.support.fuzz import fuzz_api, seed_farm  # noqa: E402

#: Examples per operation and generation mode: about 1,700 requests, under a minute here.
EXAMPLES = 25
SEED = 20261207


def test_every_operation_survives_generated_requests(start_farm, tmp_path):
    farm = start_farm(poll_wait_seconds=0.2)
    tokens = seed_farm(farm, tmp_path)
    report = fuzz_api(farm.url, tokens, examples=EXAMPLES, seed=SEED)
    assert len(report.per_operation) >= 30, report.per_operation
    assert report.requests >= 20 * len(report.per_operation) // 2
    assert report.server_errors == 0 and not report.violations, report.summary()
    log = farm.server.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
