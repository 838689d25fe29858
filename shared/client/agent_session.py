"""``AgentSession``: what a device agent says to the server, one method per agent
endpoint (enroll, device heartbeat, lease long poll, renew, release, report), and
the resumable download of models and datasets, checked against their sha256.

Every request carries the protocol version (``X-EdgeFarm-Protocol``); failures
are the sorted ``FarmError``s, with messages that tell the person reading the
agent's log what to do about a refused token or a protocol mismatch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import httpx

from edgefarm.shared.contract import PROTOCOL_HEADER, PROTOCOL_VERSION
from edgefarm.shared.contract.digests import sha256_file
from edgefarm.shared.contract.enums import RunState
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

from .backoff import Backoff
from .errors import AccessDenied, DigestMismatch, Hints, ProtocolMismatch, TransientError
from .http import ApiClient

#: ``(bytes so far, total bytes if known)`` during a download.
Progress = Callable[[int, Optional[int]], None]


class AgentSession(ApiClient):
    """An agent's session on one server: with its agent token, or with a one-time
    enrollment token for ``enroll``."""

    HINTS: Hints = {
        AccessDenied: "the server refused this agent's token ({text}); re-enroll the agent",
        ProtocolMismatch: "protocol version mismatch ({text}); upgrade the agent or the server",
    }

    def __init__(self, server_url: str, token: Optional[str] = None,
                 transport: Optional[httpx.BaseTransport] = None, timeout: float = 30.0):
        super().__init__(server_url, token, user_agent="edgefarm-agent", timeout=timeout,
                         transport=transport, headers={PROTOCOL_HEADER: str(PROTOCOL_VERSION)})

    def enroll(self, name: str, capabilities: DeviceCapabilities) -> EnrollResponse:
        """Exchange the enrollment token for this device's own agent token."""
        body = EnrollRequest(name=name, capabilities=capabilities, protocol_version=PROTOCOL_VERSION)
        response = self._request("POST", "/agents/enroll", json=body.model_dump(mode="json"))
        return self._parse(response, EnrollResponse)

    def heartbeat(self, capabilities: Optional[DeviceCapabilities] = None) -> AgentHeartbeatResponse:
        """The device is alive (with its capabilities, when they changed); the answer sets the pace."""
        body = AgentHeartbeat(capabilities=capabilities).model_dump(mode="json")
        return self._parse(self._request("POST", "/agents/heartbeat", json=body), AgentHeartbeatResponse)

    def lease(self, wait_seconds: float) -> Optional[Lease]:
        """A run to do, waiting up to ``wait_seconds`` for one (long poll); None when none came."""
        response = self._request("POST", "/agents/lease", json={"wait_seconds": wait_seconds},
                                 timeout=wait_seconds + 30)
        if response.status_code == 204:
            return None
        return self._parse(response, Lease)

    def renew(self, run_id: int, lease_id: str, state: Optional[RunState] = None,
              progress: Optional[dict] = None) -> RunHeartbeatResponse:
        """Keep the lease alive; the answer says whether the run was cancelled."""
        body = RunHeartbeat(lease_id=lease_id, state=state, progress=progress).model_dump(mode="json")
        response = self._request("POST", f"/runs/{run_id}/heartbeat", json=body)
        return self._parse(response, RunHeartbeatResponse)

    def release(self, run_id: int, lease_id: str, reason: str) -> None:
        """Give the run back to the queue (the agent is stopping)."""
        body = RunRelease(lease_id=lease_id, reason=reason).model_dump(mode="json")
        self._request("POST", f"/runs/{run_id}/release", json=body)

    def report(self, run_id: int, report: RunReport) -> RunReportResponse:
        response = self._request("POST", f"/runs/{run_id}/report", json=report.model_dump(mode="json"))
        return self._parse(response, RunReportResponse)

    # ------------------------------------------------------------ downloads

    def download(self, url: str, dest: Path, sha256: str, progress: Optional[Progress] = None,
                 attempts: int = 5) -> None:
        """Fetch ``url`` into ``dest`` (resuming a partial file with Range) and check its
        sha256; a wrong file is removed and raised as ``DigestMismatch``."""
        backoff = Backoff(base=0.5, cap=10)
        for attempt in range(1, attempts + 1):
            try:
                self._download_once(url, dest, progress)
                break
            except TransientError:
                if attempt == attempts:
                    raise
                time.sleep(backoff.next_delay())
        digest = sha256_file(dest)
        if digest != sha256:
            dest.unlink()
            raise DigestMismatch(f"download of {url} has sha256 {digest}, expected {sha256}; discarded",
                                 server_url=self.url)

    def _download_once(self, url: str, dest: Path, progress: Optional[Progress]) -> None:
        have = dest.stat().st_size if dest.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self._stream("GET", url, accept=(416,), headers=headers, timeout=60) as response:
            if response.status_code == 416:  # the partial file is already complete
                return
            mode = "ab" if response.status_code == 206 else "wb"
            done = have if mode == "ab" else 0
            total = _total_size(response, done)
            with open(dest, mode) as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)


def _total_size(response: httpx.Response, offset: int) -> Optional[int]:
    length = response.headers.get("content-length")
    return offset + int(length) if length and length.isdigit() else None
