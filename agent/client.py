"""The agent's HTTP client: one method per endpoint, and the one place where
errors are sorted (network errors, 429 and 5xx are retryable; 401/403 and a
protocol mismatch are fatal; 409 means the lease is gone)."""

import random
import time
from pathlib import Path
from typing import Callable, Optional

import httpx

from edgefarm.shared.contract import PROTOCOL_HEADER, PROTOCOL_VERSION
from edgefarm.shared.contract.digests import sha256_file
from edgefarm.shared.contract.schemas import (
    AgentHeartbeat,
    AgentHeartbeatResponse,
    DeviceCapabilities,
    EnrollRequest,
    EnrollResponse,
    Lease,
    RunHeartbeat,
    RunHeartbeatResponse,
    RunRelease,
    RunReport,
    RunReportResponse,
)

from . import __version__


class AgentError(Exception):
    """Base of the sorted errors."""


class Retryable(AgentError):
    def __init__(self, message: str, retry_after: Optional[float] = None):
        super().__init__(message)
        self.retry_after = retry_after


class Fatal(AgentError):
    """The agent cannot go on (bad token, protocol mismatch): stop with this message."""


class LeaseLost(AgentError):
    """409: the run was requeued or finished; drop it."""


class Rejected(AgentError):
    """Any other 4xx: the request itself is wrong; retrying will not help."""


def _problem_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{body.get('title', '')}: {body.get('detail', '')}".strip(": ")
    except ValueError:
        return response.text[:200]


def sort_response(response: httpx.Response) -> None:
    """Raise the sorted error for a failed response; return for 2xx."""
    status = response.status_code
    if status < 400:
        return
    text = f"{response.request.method} {response.request.url.path} -> {status} {_problem_text(response)}"
    if status in (401, 403):
        raise Fatal(f"the server refused this agent's token ({text}); re-enrol the agent")
    if status == 426:
        raise Fatal(f"protocol version mismatch ({text}); upgrade the agent or the server")
    if status == 409:
        raise LeaseLost(text)
    if status == 429 or status >= 500:
        after = response.headers.get("retry-after")
        raise Retryable(text, float(after) if after and after.isdigit() else None)
    raise Rejected(text)


class Backoff:
    """Exponential backoff with full jitter: 1, 2, 4 ... up to ``cap`` seconds."""

    def __init__(self, base: float = 1.0, cap: float = 60.0):
        self.base, self.cap, self.failures = base, cap, 0

    def next_delay(self, hint: Optional[float] = None) -> float:
        self.failures += 1
        if hint is not None:
            return min(hint, self.cap)
        return random.uniform(0, min(self.cap, self.base * 2 ** (self.failures - 1)))

    def reset(self) -> None:
        self.failures = 0


class AgentClient:
    def __init__(self, server_url: str, token: Optional[str] = None,
                 transport: Optional[httpx.BaseTransport] = None, timeout: float = 30.0):
        headers = {PROTOCOL_HEADER: str(PROTOCOL_VERSION), "User-Agent": f"edgefarm-agent/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=server_url.rstrip("/"), headers=headers,
                                 timeout=timeout, transport=transport)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, timeout: Optional[float] = None, **kwargs) -> httpx.Response:
        try:
            if timeout is not None:
                kwargs["timeout"] = timeout
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Retryable(f"cannot reach the server at {self.http.base_url}: {exc}") from exc
        sort_response(response)
        return response

    def info(self) -> dict:
        return self._call("GET", "/api/v1/info").json()

    def enroll(self, name: str, capabilities: DeviceCapabilities) -> EnrollResponse:
        body = EnrollRequest(name=name, capabilities=capabilities, protocol_version=PROTOCOL_VERSION)
        response = self._call("POST", "/api/v1/agents/enroll", json=body.model_dump(mode="json"))
        return EnrollResponse.model_validate(response.json())

    def heartbeat(self, capabilities: Optional[DeviceCapabilities] = None) -> AgentHeartbeatResponse:
        body = AgentHeartbeat(capabilities=capabilities).model_dump(mode="json")
        response = self._call("POST", "/api/v1/agents/heartbeat", json=body)
        return AgentHeartbeatResponse.model_validate(response.json())

    def lease(self, wait_seconds: float) -> Optional[Lease]:
        response = self._call("POST", "/api/v1/agents/lease", json={"wait_seconds": wait_seconds},
                              timeout=wait_seconds + 30)
        if response.status_code == 204:
            return None
        return Lease.model_validate(response.json())

    def renew(self, run_id: int, lease_id: str, state=None, progress=None) -> RunHeartbeatResponse:
        body = RunHeartbeat(lease_id=lease_id, state=state, progress=progress).model_dump(mode="json")
        response = self._call("POST", f"/api/v1/runs/{run_id}/heartbeat", json=body)
        return RunHeartbeatResponse.model_validate(response.json())

    def release(self, run_id: int, lease_id: str, reason: str) -> None:
        body = RunRelease(lease_id=lease_id, reason=reason).model_dump(mode="json")
        self._call("POST", f"/api/v1/runs/{run_id}/release", json=body)

    def report(self, run_id: int, report: RunReport) -> RunReportResponse:
        response = self._call("POST", f"/api/v1/runs/{run_id}/report",
                              json=report.model_dump(mode="json"))
        return RunReportResponse.model_validate(response.json())

    def download(self, url: str, dest: Path, sha256: str,
                 progress: Optional[Callable[[int, Optional[int]], None]] = None,
                 attempts: int = 5) -> None:
        """Fetch ``url`` into ``dest`` (resuming a partial file with Range) and check its sha256."""
        backoff = Backoff(base=0.5, cap=10)
        for attempt in range(1, attempts + 1):
            try:
                self._download_once(url, dest, progress)
                break
            except Retryable:
                if attempt == attempts:
                    raise
                time.sleep(backoff.next_delay())
        digest = sha256_file(dest)
        if digest != sha256:
            dest.unlink()
            raise Retryable(f"download of {url} has sha256 {digest}, expected {sha256}; discarded")

    def _download_once(self, url: str, dest: Path, progress) -> None:
        have = dest.stat().st_size if dest.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with self.http.stream("GET", url, headers=headers, timeout=60) as response:
                if response.status_code == 416:  # already complete
                    return
                sort_response(response)
                mode = "ab" if response.status_code == 206 else "wb"
                done = have if mode == "ab" else 0
                total = _total_size(response, done)
                with open(dest, mode) as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
        except httpx.TransportError as exc:
            raise Retryable(f"download of {url} interrupted: {exc}") from exc


def _total_size(response: httpx.Response, offset: int) -> Optional[int]:
    length = response.headers.get("content-length")
    return offset + int(length) if length and length.isdigit() else None
