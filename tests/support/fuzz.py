"""Property-based fuzzing of a running server's REST API with schemathesis.

``seed_farm`` stores a little of everything (a model, a registered dataset, an
enrolled agent, a job) so that generated requests meet real rows; ``fuzz_api``
loads the server's own OpenAPI document and, for every operation, sends
``examples`` generated requests (valid ones, then invalid ones) with a seeded
Hypothesis, as admin, user or (agent operations) agent. Each response is checked:
no 5xx, and its status code, content type and body as the document says.
Used by ``tests/integration/test_api_fuzz.py`` and ``benchmarks/fuzz_api.py``.
"""

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from edgefarm.shared.contract import PROTOCOL_HEADER, PROTOCOL_VERSION
from edgefarm.shared.formats.tflite_builder import tiny_tflite

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
AGENT_PATH = re.compile(r"^/api/v1/(agents/(heartbeat|lease)|runs/\{[^}]+\}/(heartbeat|release|report))$")
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


@dataclass
class Violation:
    operation: str
    status: Optional[int]
    message: str


@dataclass
class FuzzReport:
    requests: int = 0
    server_errors: int = 0
    violations: List[Violation] = field(default_factory=list)
    per_operation: Dict[str, int] = field(default_factory=dict)

    def summary(self, limit: int = 10) -> str:
        lines = [f"{self.requests} requests, {self.server_errors} server errors, "
                 f"{len(self.violations)} schema violations over {len(self.per_operation)} operations"]
        lines += [f"  {v.operation} -> {v.status}: {v.message[:400]}" for v in self.violations[:limit]]
        return "\n".join(lines)


def seed_farm(farm, folder) -> Dict[str, str]:
    """Store a model, a registered dataset, an agent and a job; returns the tokens by role
    (admin, user, agent) and the ids that must survive (``protected_tokens``)."""
    path = folder / "fuzz.tflite"
    path.write_bytes(tiny_tflite())
    model = farm.push_model(path, name="fuzz", family="fuzz", task="classification")
    farm.user.post("/api/v1/datasets/register", json={
        "name": "fuzz-set", "layout": "imagenet-val", "path": "/data/fuzz", "sha256": "0" * 64})
    agent = farm.enroll("fuzz-pc")
    farm.submit(models=[str(model["id"])], devices="all")
    tokens = {role: getattr(farm, f"{role}_token") for role in ("admin", "user")}
    tokens["agent"] = agent.token
    return tokens


def _token_ids(tokens: Dict[str, str]) -> Tuple[str, ...]:
    return tuple(token.split("_")[1] for token in tokens.values())


def _fuzz_operation(operation, base_url: str, tokens: Dict[str, str], examples: int, seed: int,
                    mode, report: FuzzReport, session: requests.Session) -> None:
    protected = _token_ids(tokens)
    is_agent = bool(AGENT_PATH.match(operation.path))
    readers = ("admin", "user")
    turn = [0]

    @hypothesis.seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        if operation.method.upper() == "DELETE" and operation.path.endswith("{token_id}"):
            hypothesis.assume(str(case.path_parameters.get("token_id")) not in protected)
        role = "agent" if is_agent else readers[turn[0] % 2]
        turn[0] += 1
        headers = {"Authorization": f"Bearer {tokens[role]}",
                   PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        report.requests += 1
        report.per_operation[operation.label] = report.per_operation.get(operation.label, 0) + 1
        if response.status_code >= 500:
            report.server_errors += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (FailureGroup, Exception) as exc:  # every kind of check failure is counted
            report.violations.append(Violation(operation.label, response.status_code, str(exc)))

    try:
        run()
    except hypothesis.errors.Unsatisfiable:  # e.g. no invalid request exists for GET /info
        pass


def fuzz_api(base_url: str, tokens: Dict[str, str], examples: int = 10, seed: int = 0,
             modes=MODES) -> FuzzReport:
    """Fuzz every operation of the server's OpenAPI document; returns what was seen."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    report = FuzzReport()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in modes:
                _fuzz_operation(operation, base_url, tokens, examples, seed, mode, report, session)
    return report
