"""The client SDK on an in-memory transport: errors sorted once (both clients),
problem+json parsing, the agent's headers, uploads, backoff, and the job wait
loop with a fake clock."""

import json
from datetime import datetime, timezone

import httpx
import pytest

from edgefarm.shared.client import (
    AccessDenied,
    AgentSession,
    Backoff,
    Conflict,
    FarmClient,
    NetworkError,
    NotFound,
    ProtocolMismatch,
    Rejected,
    ServerUnavailable,
    TimedOut,
    TransientError,
    UnexpectedAnswer,
    problem_message,
)
from tests.support.clock import FakeClock

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def session_answering(status, body=None, headers=None):
    def handler(request):
        return httpx.Response(status, json=body or {"title": "t", "detail": "d"}, headers=headers)

    return AgentSession("http://farm", "tok", transport=httpx.MockTransport(handler))


def farm_answering(status, body=None, text=""):
    def handler(request):
        if body is not None:
            return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})
        return httpx.Response(status, text=text)

    return FarmClient("http://farm:8000", "t", transport=httpx.MockTransport(handler))


# ---------------------------------------------------------------- errors, sorted once


@pytest.mark.parametrize("status,error", [
    (401, AccessDenied), (403, AccessDenied), (426, ProtocolMismatch), (409, Conflict),
    (429, TransientError), (500, TransientError), (502, TransientError), (503, TransientError),
    (404, Rejected), (422, Rejected),
])
def test_errors_are_sorted_once(status, error):
    with pytest.raises(error):
        session_answering(status).renew(1, "lease")


@pytest.mark.parametrize("status,error,retryable", [
    (401, AccessDenied, False), (404, NotFound, False), (409, Conflict, False), (415, Rejected, False),
    (426, ProtocolMismatch, False), (429, ServerUnavailable, True), (503, ServerUnavailable, True),
])
def test_both_clients_sort_alike_and_keep_the_problem(status, error, retryable):
    problem = {"title": "Nope", "status": status, "detail": "because"}
    with pytest.raises(error) as info:
        farm_answering(status, problem).list_models()
    exc = info.value
    assert exc.status == status and exc.retryable is retryable and exc.server_url == "http://farm:8000"
    assert exc.problem is not None and exc.problem.title == "Nope" and exc.summary == "Nope: because"
    assert str(exc) == f"GET /api/v1/models -> {status} Nope: because"


def test_agent_messages_say_what_to_do():
    with pytest.raises(AccessDenied, match="refused this agent's token .* re-enroll the agent"):
        session_answering(401).heartbeat()
    with pytest.raises(ProtocolMismatch, match="upgrade the agent or the server"):
        session_answering(426).heartbeat()


def test_retry_after_is_honoured():
    with pytest.raises(TransientError) as info:
        session_answering(503, headers={"Retry-After": "7"}).lease(1)
    assert info.value.retry_after == 7.0
    assert Backoff(cap=60).next_delay(info.value.retry_after) == 7.0
    with pytest.raises(ServerUnavailable) as dated:
        session_answering(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}).lease(1)
    assert dated.value.retry_after is None


def test_network_error_is_retryable():
    def handler(request):
        raise httpx.ConnectError("refused")

    client = AgentSession("http://farm", "tok", transport=httpx.MockTransport(handler))
    with pytest.raises(TransientError, match="cannot reach the server"):
        client.lease(1)


def test_timeout_is_a_retryable_network_error():
    def handler(request):
        raise httpx.ReadTimeout("slow", request=request)

    client = FarmClient("http://farm:8000", "t", transport=httpx.MockTransport(handler))
    with pytest.raises(TimedOut) as info:
        client.get_job(1)
    assert isinstance(info.value, NetworkError) and info.value.retryable
    assert info.value.status is None and info.value.summary == "slow"


def test_a_body_off_the_contract_is_an_unexpected_answer():
    def handler(request):
        return httpx.Response(200, json={"id": "not a number"})

    client = FarmClient("http://farm:8000", "t", transport=httpx.MockTransport(handler))
    with pytest.raises(UnexpectedAnswer, match="unexpected answer from http://farm:8000/api/v1/jobs/3"):
        client.get_job(3)
    with pytest.raises(UnexpectedAnswer, match="expected a list"):
        client.list_jobs()


def test_protocol_header_and_token_are_sent():
    seen = {}

    def handler(request):
        seen.update(request.headers)
        return httpx.Response(204)

    AgentSession("http://farm", "tok", transport=httpx.MockTransport(handler)).lease(1)
    assert seen["authorization"] == "Bearer tok" and seen["x-edgefarm-protocol"] == "1"


def test_backoff_grows_and_is_capped():
    backoff = Backoff(base=1, cap=8)
    delays = [backoff.next_delay() for _ in range(10)]
    assert all(0 <= d <= 8 for d in delays)
    assert backoff.failures == 10


# ---------------------------------------------------------------- problem+json


def test_problem_message_without_problem_body():
    response = httpx.Response(404, text="<html>nope</html>")
    assert problem_message(response) == "HTTP 404 Not Found: <html>nope</html>"


def test_problem_message_with_title_only():
    response = httpx.Response(400, json={"title": "Bad request", "status": 400, "detail": None})
    assert problem_message(response) == "Bad request"


# ---------------------------------------------------------------- the farm client


def test_requests_carry_the_token_and_stream_uploads(tmp_path):
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["auth"] = request.headers["authorization"]
        seen["body"] = request.read()
        return httpx.Response(201, json=model_json())

    client = FarmClient("http://farm:8000/", "secret", transport=httpx.MockTransport(handler))
    path = tmp_path / "m.tflite"
    path.write_bytes(b"TFL3" * 10)
    with open(path, "rb") as handle:
        model, created = client.push_model(handle, "m.tflite", {"name": "m"})
    assert created and model.id == 1 and seen["auth"] == "Bearer secret"
    assert b'name="meta"' in seen["body"] and b"TFL3TFL3" in seen["body"]
    assert json.dumps({"name": "m"}).encode() in seen["body"]


def test_push_tells_an_already_stored_model(tmp_path):
    client = FarmClient("http://farm:8000", "t",
                        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=model_json())))
    path = tmp_path / "m.tflite"
    path.write_bytes(b"TFL3")
    with open(path, "rb") as handle:
        model, created = client.push_model(handle, "m.tflite", {})
    assert not created and model.sha256 == "a" * 64


def test_references_are_one_path_segment():
    paths = []

    def handler(request):
        paths.append(request.url.raw_path.decode())
        return httpx.Response(404, json={"title": "Not found", "status": 404, "detail": "no such model"})

    client = FarmClient("http://farm:8000", "t", transport=httpx.MockTransport(handler))
    with pytest.raises(NotFound, match="no such model"):
        client.get_model(" deeplab/v3 fp32 ")
    assert paths == ["/api/v1/models/deeplab%2Fv3%20fp32"]


def model_json() -> dict:
    return {"id": 1, "name": "m", "family": "m", "format": "tflite", "sha256": "a" * 64,
            "size_bytes": 40, "variant": {}, "created_at": NOW.isoformat(),
            "download_url": "http://farm:8000/api/v1/models/1/file"}


# ---------------------------------------------------------------- waiting for a job


def job_json(state: str, **counts: int) -> dict:
    return {"id": 4, "state": state, "task": "latency", "models": [1], "settings": {}, "devices": "all",
            "priority": 0, "timeout_seconds": 60, "max_attempts": 3, "created_at": NOW.isoformat(),
            "counts": counts}


def scripted_farm(*answers):
    """A farm whose GET /jobs/4 gives ``answers`` in turn (the last one repeats)."""
    queue = list(answers)

    def handler(request):
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return answer(request) if callable(answer) else answer

    return FarmClient("http://farm:8000", "t", transport=httpx.MockTransport(handler))


def test_wait_tolerates_a_few_transient_failures_and_reports_each_poll():
    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    client = scripted_farm(httpx.Response(200, json=job_json("queued", queued=1)), refuse,
                           httpx.Response(503, text="busy"),
                           httpx.Response(200, json=job_json("succeeded", succeeded=1)))
    clock, updates, retries = FakeClock(), [], []
    job, ended = client.wait_for_job(4, on_update=lambda j: updates.append(str(j.state)),
                                     on_retry=retries.append, clock=clock, sleep=clock.sleep)
    assert ended and str(job.state) == "succeeded" and updates == ["queued", "succeeded"]
    assert [type(e) for e in retries] == [NetworkError, ServerUnavailable]
    assert clock.now == 3.0  # one interval before the poll, one after each failure


def test_wait_gives_up_after_too_many_failures_and_at_once_on_a_4xx():
    busy = httpx.Response(503, text="busy")
    clock = FakeClock()
    client = scripted_farm(httpx.Response(200, json=job_json("running", running=1)), busy)
    with pytest.raises(ServerUnavailable):
        client.wait_for_job(4, max_failures=3, clock=clock, sleep=clock.sleep)
    retries = []
    gone = httpx.Response(404, json={"title": "Not found", "status": 404, "detail": "no job 4"})
    client = scripted_farm(httpx.Response(200, json=job_json("running", running=1)), gone)
    with pytest.raises(NotFound):
        client.wait_for_job(4, on_retry=retries.append, clock=clock, sleep=clock.sleep)
    assert retries == []


def test_wait_times_out_with_the_last_state():
    clock = FakeClock()
    client = scripted_farm(httpx.Response(200, json=job_json("waiting")))
    job, ended = client.wait_for_job(4, timeout=2.5, interval=1.0, clock=clock, sleep=clock.sleep)
    assert not ended and str(job.state) == "waiting" and clock.now == pytest.approx(2.5)



def test_lists_and_the_csv_export_are_read_page_after_page():
    """The SDK follows ``Link: rel="next"`` (a path under the server's URL) to the last page and
    joins CSV pages under one header line."""
    seen = []

    def handler(request):
        seen.append(str(request.url))
        after = int(request.url.params.get("after", "0"))
        if request.url.params.get("format") == "csv":
            body = "id,name\n" + "".join(f"{i},r{i}\n" for i in (after + 1, after + 2))
            more = {"Link": f'</api/v1/results?format=csv&after={after + 2}>; rel="next"'} if after < 2 else {}
            return httpx.Response(200, text=body, headers=more)
        links = {"Link": '</api/v1/datasets?offset=1&limit=500>; rel="next"'} if not after and "offset" not in request.url.params else {}
        return httpx.Response(200, json=[], headers=links)

    client = FarmClient("http://farm:8000/prefix", "t", transport=httpx.MockTransport(handler))
    assert client.results_csv({"family": "net"}) == "id,name\n1,r1\n2,r2\n3,r3\n4,r4\n"
    assert seen[0].startswith("http://farm:8000/prefix/api/v1/results?") and "limit=500" in seen[0]
    assert seen[1] == "http://farm:8000/prefix/api/v1/results?format=csv&after=2"
    assert client.list_datasets() == [] and seen[-1].endswith("/api/v1/datasets?offset=1&limit=500")
    assert len(seen) == 4
