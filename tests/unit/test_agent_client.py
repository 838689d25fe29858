"""Error sorting in the agent's client, on an in-memory transport."""

import httpx
import pytest

from edgefarm.agent.client import AgentClient, Backoff, Fatal, LeaseLost, Rejected, Retryable
from edgefarm.agent.config import (
    AgentConfig,
    ConfigError,
    dump_config,
    load_config,
    save_config,
    write_secret,
)
from edgefarm.agent.spool import Spool
from edgefarm.shared.contract.schemas import RunReport


def client_answering(status, body=None, headers=None):
    def handler(request):
        return httpx.Response(status, json=body or {"title": "t", "detail": "d"}, headers=headers)

    return AgentClient("http://farm", "tok", transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("status,error", [
    (401, Fatal), (403, Fatal), (426, Fatal), (409, LeaseLost), (429, Retryable),
    (500, Retryable), (502, Retryable), (503, Retryable), (404, Rejected), (422, Rejected),
])
def test_errors_are_sorted_once(status, error):
    with pytest.raises(error):
        client_answering(status).renew(1, "lease")


def test_retry_after_is_honoured():
    with pytest.raises(Retryable) as info:
        client_answering(503, headers={"Retry-After": "7"}).lease(1)
    assert info.value.retry_after == 7.0
    assert Backoff(cap=60).next_delay(info.value.retry_after) == 7.0


def test_network_error_is_retryable():
    def handler(request):
        raise httpx.ConnectError("refused")

    client = AgentClient("http://farm", "tok", transport=httpx.MockTransport(handler))
    with pytest.raises(Retryable, match="cannot reach the server"):
        client.lease(1)


def test_protocol_header_and_token_are_sent():
    seen = {}

    def handler(request):
        seen.update(request.headers)
        return httpx.Response(204)

    AgentClient("http://farm", "tok", transport=httpx.MockTransport(handler)).lease(1)
    assert seen["authorization"] == "Bearer tok" and seen["x-edgefarm-protocol"] == "1"


def test_backoff_grows_and_is_capped():
    backoff = Backoff(base=1, cap=8)
    delays = [backoff.next_delay() for _ in range(10)]
    assert all(0 <= d <= 8 for d in delays)
    assert backoff.failures == 10


def test_config_round_trip_and_unknown_keys(tmp_path):
    config = AgentConfig(server_url="http://farm:8000", labels=["lab2"], threads=4,
                         runtime_options={"tflite": {"delegate": "/usr/lib/x.so"}})
    path = tmp_path / "agent.toml"
    save_config(config, path)
    loaded = load_config(path)
    assert loaded == config
    path.write_text("colour = 'red'\n" + dump_config(config))
    with pytest.raises(ConfigError, match="colour"):
        load_config(path)
    with pytest.raises(ConfigError, match="enroll"):
        load_config(tmp_path / "missing.toml")


def test_token_file_is_private(tmp_path):
    path = tmp_path / "state" / "agent.token"
    write_secret(path, "ef_1_secret")
    assert path.stat().st_mode & 0o777 == 0o600
    assert AgentConfig(token_file=str(path)).read_token() == "ef_1_secret"


def test_spool_survives_and_clears(tmp_path):
    spool = Spool(tmp_path / "spool")
    report = RunReport(lease_id="l1", state="failed", error="boom")
    spool.put(7, report)
    again = Spool(tmp_path / "spool")  # a restarted agent
    [(path, run_id, loaded)] = list(again.pending())
    assert run_id == 7 and loaded == report
    again.done(path)
    assert len(again) == 0
