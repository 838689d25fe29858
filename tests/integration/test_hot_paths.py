"""``HotPaths`` answers an agent's well-formed lease and report itself, exactly as the
documented routes answer them, and leaves everything else to the routes.

Two applications on one SQLite database, each served by a real uvicorn on a loopback
port from a thread of the test's process: one as ``create_app`` builds it, one without
``HotPaths``. The same request to both gets the same status, content type
and body; which of them ``HotPaths`` answered is counted."""

import contextlib
import json
import socket
import threading
import time

import httpx
import pytest

pytest.importorskip("fastapi")

import uvicorn  # noqa: E402

from edgefarm.server.api import hot  # noqa: E402
from edgefarm.server.app import create_app  # noqa: E402
from edgefarm.server.auth import issue_token  # noqa: E402
from edgefarm.server.config import Settings  # noqa: E402
from edgefarm.shared.contract import PROTOCOL_HEADER, PROTOCOL_VERSION  # noqa: E402
from edgefarm.shared.contract.enums import Role  # noqa: E402
from edgefarm.shared.formats.tflite_builder import tiny_tflite  # noqa: E402
from tests.support.servers import sample_result  # noqa: E402

LEASE = "/api/v1/agents/lease"
VOLATILE = {"lease_id", "lease_expires_at", "run_id", "result_id", "instance"}


@pytest.fixture
def farm(tmp_path, monkeypatch):
    served = []
    for name in ("answer_lease", "answer_report"):
        original = getattr(hot, name)

        async def counted(*args, _original=original, _name=name):
            served.append(_name)
            return await _original(*args)

        monkeypatch.setattr(hot, name, counted)
    settings = Settings(data_dir=tmp_path / "data")
    fast, plain = create_app(settings), create_app(settings)
    plain.user_middleware = [m for m in plain.user_middleware if m.cls is not hot.HotPaths]
    assert len(fast.user_middleware) == len(plain.user_middleware) + 1
    with served_on_loopback(fast) as fast_client, served_on_loopback(plain) as plain_client:
        with fast.state.ctx.db.write() as session:
            _, admin = issue_token(session, Role.admin, "admin")
            _, user = issue_token(session, Role.user, "user")
        yield Farm(fast_client, plain_client, admin, user, served)


@contextlib.contextmanager
def served_on_loopback(app):
    """uvicorn serving ``app`` from a thread, on a free loopback port; an httpx client to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


class Farm:
    def __init__(self, fast, plain, admin, user, served):
        self.fast, self.plain, self.served = fast, plain, served
        self.admin = {"Authorization": f"Bearer {admin}"}
        self.user = {"Authorization": f"Bearer {user}"}

    def enroll(self, name: str) -> dict:
        caps = {"platform": "pc", "labels": [], "arch": "x86_64", "cores": 2,
                "runtimes": [{"name": "tflite", "version": "2", "accelerators": ["cpu"]}]}
        answer = self.fast.post("/api/v1/agents/enroll", headers=self.admin, json={
            "name": name, "capabilities": caps, "protocol_version": PROTOCOL_VERSION}).json()
        return {"id": answer["device_id"], "headers": {
            "Authorization": f"Bearer {answer['agent_token']}", PROTOCOL_HEADER: str(PROTOCOL_VERSION)}}

    def job_for(self, device: dict, seed: int) -> None:
        model = self.fast.post("/api/v1/models", headers=self.user,
                               files={"file": (f"m{seed}.tflite", tiny_tflite(seed=seed))},
                               data={"meta": json.dumps({"name": f"m{seed}", "task": "latency"})}).json()
        answer = self.fast.post("/api/v1/jobs", headers=self.user, json={
            "models": [str(model["id"])], "devices": f"id={device['id']}", "task": "latency"})
        assert answer.status_code == 201, answer.text

    def both(self, path: str, headers: dict, **kwargs) -> tuple:
        """The same request to both applications: (fast answer, plain answer, whether
        HotPaths answered the first)."""
        before = len(self.served)
        fast = self.fast.post(path, headers=headers, **kwargs)
        took = len(self.served) > before
        plain = self.plain.post(path, headers=headers, **kwargs)
        assert len(self.served) == before + took  # the plain application never uses it
        return fast, plain, took


def same(fast, plain) -> None:
    assert (fast.status_code, fast.headers.get("content-type")) == (plain.status_code, plain.headers.get("content-type"))
    first, second = fast.json() if fast.content else None, plain.json() if plain.content else None
    if isinstance(first, dict):
        first = {k: v for k, v in first.items() if k not in VOLATILE}
        second = {k: v for k, v in second.items() if k not in VOLATILE}
    assert first == second


def test_well_formed_requests_and_the_services_refusals_are_answered_as_the_routes_answer(farm):
    agent, other = farm.enroll("a"), farm.enroll("b")
    # no work yet: 204 from both
    fast, plain, took = farm.both(LEASE, agent["headers"], json={"wait_seconds": 0})
    assert took and fast.status_code == 204 and not fast.content
    same(fast, plain)

    farm.job_for(agent, 1)
    farm.job_for(agent, 2)
    fast, plain, took = farm.both(LEASE, agent["headers"], json={"wait_seconds": 0})
    assert took and fast.status_code == plain.status_code == 200
    assert fast.headers["content-type"] == plain.headers["content-type"] == "application/json"
    first, second = fast.json(), plain.json()
    assert first["run_id"] != second["run_id"]  # one run each
    assert first.keys() == second.keys()

    refusals = [
        # the service's refusals, raised after the body was read: HotPaths answers them
        (LEASE, {"Authorization": "Bearer ef_1_not-a-secret"}, {"wait_seconds": 0}, 401),
        (LEASE, farm.user, {"wait_seconds": 0}, 403),
        (f"/api/v1/runs/{first['run_id']}/report", other["headers"],
         {"lease_id": first["lease_id"], "state": "succeeded", "result": sample_result()}, 404),
        (f"/api/v1/runs/{first['run_id']}/report", agent["headers"],
         {"lease_id": "0" * 36, "state": "succeeded", "result": sample_result()}, 409),
        (f"/api/v1/runs/{first['run_id']}/report", agent["headers"],
         {"lease_id": first["lease_id"], "state": "succeeded"}, 422),  # no result to store
    ]
    for path, headers, body, status in refusals:
        fast, plain, took = farm.both(path, headers, json=body)
        assert took and fast.status_code == status, (path, fast.text)
        assert fast.headers["content-type"].startswith("application/problem+json")
        same(fast, plain)
    assert fast.headers.get("www-authenticate") is None
    unknown, _, _ = farm.both(LEASE, {"Authorization": "Bearer ef_1_not-a-secret"}, json={})
    assert unknown.headers["www-authenticate"] == "Bearer"

    for lease in (first, second):
        body = {"lease_id": lease["lease_id"], "state": "succeeded", "result": sample_result()}
        answer = farm.fast.post(f"/api/v1/runs/{lease['run_id']}/report", headers=agent["headers"], json=body)
        assert answer.status_code == 200 and answer.json()["result_id"]
        repeat, again, took = farm.both(f"/api/v1/runs/{lease['run_id']}/report", agent["headers"], json=body)
        assert took and repeat.json()["duplicate"] is again.json()["duplicate"] is True
        same(repeat, again)
    results = farm.fast.get("/api/v1/results", headers=farm.user).json()
    assert len(results) == 2  # one result per run, stored once


def test_requests_it_does_not_take_reach_the_routes(farm):
    agent = farm.enroll("a")
    farm.job_for(agent, 3)
    lease = farm.fast.post(LEASE, headers=agent["headers"], json={"wait_seconds": 0}).json()
    report = f"/api/v1/runs/{lease['run_id']}/report"
    good = {"lease_id": lease["lease_id"], "state": "succeeded", "result": sample_result()}
    cases = [
        (LEASE, agent["headers"], {"content": b"{not json"}, 422),
        (LEASE, agent["headers"], {"json": {"wait_seconds": -1}}, 422),
        (LEASE, agent["headers"], {"content": b'{"wait_seconds": NaN}'}, 422),
        (LEASE, {}, {"json": {"wait_seconds": 0}}, 401),
        (LEASE, {**agent["headers"], PROTOCOL_HEADER: "999"}, {"json": {"wait_seconds": 0}}, 426),
        (report, agent["headers"], {"json": {**good, "state": "exploded"}}, 422),
        (report, {k: v for k, v in agent["headers"].items() if k != "Authorization"}, {"json": good}, 401),
        ("/api/v1/runs/0/report", agent["headers"], {"json": good}, 422),
        ("/api/v1/runs/99999999999999999999/report", agent["headers"], {"json": good}, 422),
    ]
    for path, headers, kwargs, status in cases:
        fast, plain, took = farm.both(path, headers, **kwargs)
        assert not took, (path, kwargs)
        assert fast.status_code == status, (path, kwargs, fast.text)
        same(fast, plain)
    # a non-canonical id is the routes' to read; the run is reported once, by the route
    before = len(farm.served)
    answer = farm.fast.post(f"/api/v1/runs/0{lease['run_id']}/report", headers=agent["headers"], json=good)
    assert answer.status_code == 200 and len(farm.served) == before
    repeat = farm.fast.post(report, headers=agent["headers"], json=good)
    assert repeat.json()["duplicate"] is True and len(farm.served) == before + 1
