"""Real server processes for tests: ``ServerProcess`` runs ``edgefarm-server
serve`` (uvicorn) on a free loopback port against a given database, and
``Farm`` bundles it with admin and user tokens and small helpers for the agent
side of the protocol (enroll, lease, heartbeat, report) spoken over HTTP."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Optional

import httpx

from edgefarm.shared.contract import PROTOCOL_HEADER, PROTOCOL_VERSION

PROJECT = Path(__file__).resolve().parents[2]
FIXTURES = PROJECT.parent / "shared" / "fixtures"
DEEPLAB = FIXTURES / "deeplabv3_mnv2_dm05_pascal_fp32.tflite"
DEEPLAB_SHA256 = "504e35c9848e5f2f904cacbb7bd92e333071762f761211fa561c1855292bd0c3"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_cli(*args: str, env: Optional[Dict[str, str]] = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "edgefarm.server.cli", *args], cwd=PROJECT, env=env,
        capture_output=True, text=True, timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"edgefarm-server {' '.join(args)} failed: {result.stderr}")
    return result.stdout.strip()


class ServerProcess:
    def __init__(self, data_dir: Path, database_url: str, port: Optional[int] = None,
                 **settings: object):
        self.data_dir, self.database_url = Path(data_dir), database_url
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        self.env.update({"EDGEFARM_DATA_DIR": str(self.data_dir), "EDGEFARM_DATABASE_URL": database_url})
        for key, value in settings.items():
            self.env[f"EDGEFARM_{key.upper()}"] = str(value)
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.data_dir / f"server-{self.port}.log"

    def migrate(self) -> None:
        server_cli("migrate", env=self.env)

    def start(self, timeout: float = 30) -> "ServerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.database_url.startswith("sqlite"):
            self.migrate()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgefarm.server.cli", "serve", "--port", str(self.port),
             "--log-level", "warning"],
            cwd=PROJECT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/api/v1/info", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log_path.read_text()}")

    def create_token(self, role: str) -> str:
        return server_cli("create-token", "--role", role, env=self.env)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def capabilities(platform: str = "pc", labels=(), runtimes=None) -> dict:
    runtimes = runtimes or [{"name": "tflite", "version": "test", "accelerators": ["cpu"]},
                            {"name": "null", "version": "test", "accelerators": ["cpu"]}]
    return {"platform": platform, "labels": list(labels), "arch": "x86_64", "cores": 2,
            "runtimes": runtimes}


class Farm:
    """A running server with an admin and a user client, plus agent helpers."""

    def __init__(self, server: ServerProcess):
        self.server = server
        self.url = server.url
        self.admin_token = server.create_token("admin")
        self.user_token = server.create_token("user")
        self.admin = self.client(self.admin_token)
        self.user = self.client(self.user_token)

    def client(self, token: Optional[str] = None, **headers: str) -> httpx.Client:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def enroll(self, name: str = "dev", **caps) -> "AgentSession":
        enroll_token = self.admin.post("/api/v1/tokens", json={"role": "enroll"}).json()["token"]
        body = {"name": name, "capabilities": capabilities(**caps), "protocol_version": PROTOCOL_VERSION}
        with self.client(enroll_token) as client:
            response = client.post("/api/v1/agents/enroll", json=body)
        assert response.status_code == 201, response.text
        data = response.json()
        return AgentSession(self, data["device_id"], data["agent_token"])

    def push_model(self, path: Path, **meta) -> dict:
        import json

        with open(path, "rb") as handle:
            response = self.user.post(
                "/api/v1/models", files={"file": (Path(path).name, handle)},
                data={"meta": json.dumps(meta)},
            )
        assert response.status_code in (200, 201), response.text
        return response.json()

    def submit(self, **job) -> dict:
        response = self.user.post("/api/v1/jobs", json=job)
        assert response.status_code == 201, response.text
        return response.json()

    def close(self) -> None:
        self.admin.close()
        self.user.close()


class AgentSession:
    """The agent side of the protocol, as plain HTTP calls."""

    def __init__(self, farm: Farm, device_id: int, token: str):
        self.device_id, self.token = device_id, token
        self.http = farm.client(token, **{PROTOCOL_HEADER: str(PROTOCOL_VERSION)})

    def lease(self, wait: float = 0) -> Optional[dict]:
        response = self.http.post("/api/v1/agents/lease", json={"wait_seconds": wait})
        if response.status_code == 204:
            return None
        assert response.status_code == 200, response.text
        return response.json()

    def heartbeat(self, lease: dict, **body) -> httpx.Response:
        return self.http.post(f"/api/v1/runs/{lease['run_id']}/heartbeat",
                              json={"lease_id": lease["lease_id"], **body})

    def report(self, lease: dict, state: str = "succeeded", result: Optional[dict] = None,
               error: Optional[str] = None) -> httpx.Response:
        if result is None and state == "succeeded":
            result = sample_result()
        body = {"lease_id": lease["lease_id"], "state": state, "result": result, "error": error}
        return self.http.post(f"/api/v1/runs/{lease['run_id']}/report", json=body)


def sample_result(p50: float = 10.0, miou: Optional[float] = None, top1: Optional[float] = None,
                  size: int = 1000) -> dict:
    samples = [p50 - 1, p50, p50 + 1]
    metrics = {"miou": miou, "top1": top1, "sample_count": 3}
    return {
        "runtime": {"name": "tflite", "version": "2.3.0", "accelerator": "cpu", "threads": 2},
        "agent_version": "0.1.0", "init_ms": 5.0, "first_inference_ms": p50 * 2,
        "latency_ms": {"count": 3, "mean": p50, "std": 0.8, "min": p50 - 1, "p50": p50,
                       "p90": p50 + 0.8, "p99": p50 + 1, "max": p50 + 1, "samples": samples},
        "model_size_bytes": size, "peak_rss_bytes": 50_000_000,
        "metrics": {k: v for k, v in metrics.items() if v is not None},
    }


FAMILY_FIGURES = {  # (model index, platform) -> (p50 ms, top-1)
    (0, "pc"): (10.0, 0.90), (1, "pc"): (5.0, 0.88), (2, "pc"): (12.0, 0.85),
    (0, "rpi3"): (100.0, 0.90), (1, "rpi3"): (50.0, 0.89), (2, "rpi3"): (40.0, 0.80),
}


def populate_family(farm: Farm, folder: Path) -> dict:
    """A base model and two variants of family 'net', each run on a pc and an rpi3
    (agents spoken over HTTP), with the figures of ``FAMILY_FIGURES``."""
    from edgefarm.shared.formats.tflite_builder import tiny_tflite

    specs = [("net-fp32", {}), ("net-int8", {"quantization": "int8"}),
             ("net-pruned", {"quantization": "none", "sparsity": 0.9, "label": "pruned-0.9"})]
    models = []
    for i, (name, variant) in enumerate(specs):
        path = Path(folder) / f"{name}.tflite"
        path.write_bytes(tiny_tflite(seed=i))
        models.append(farm.push_model(path, name=name, family="net", task="classification",
                                      variant=variant))
    pc, pi = farm.enroll("pc-1"), farm.enroll("pi-1", platform="rpi3", labels=["lab2"])
    job = farm.submit(models=[str(m["id"]) for m in models], devices="all")
    index = {m["id"]: i for i, m in enumerate(models)}
    for agent, platform in ((pc, "pc"), (pi, "rpi3")):
        while (lease := agent.lease()) is not None:
            which = index[lease["model"]["id"]]
            p50, top1 = FAMILY_FIGURES[(which, platform)]
            response = agent.report(lease, result=sample_result(p50=p50, top1=top1, size=1000 + which))
            assert response.status_code == 200
    return {"models": models, "pc": pc, "pi": pi, "job": job}
