"""Real agent processes for tests: enroll with ``edgefarm-agent enroll`` and
serve with ``edgefarm-agent run``, each in its own config, state and cache."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

from tests.support.servers import PROJECT


class AgentProcess:
    def __init__(self, farm, home: Path, name: str = "agent", labels=(), platform: Optional[str] = None,
                 python: Optional[str] = None):
        self.farm, self.home, self.name = farm, Path(home), name
        self.python = python or sys.executable
        self.config = self.home / "agent.toml"
        self.log_path = self.home / "agent.log"
        self.proc: Optional[subprocess.Popen] = None
        self.env = dict(os.environ, EDGEFARM_LOG_LEVEL="INFO")
        self.device_id: Optional[int] = None
        self._enroll(labels, platform)

    def _enroll(self, labels, platform) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        token = self.farm.admin.post("/api/v1/tokens", json={"role": "enroll"}).json()["token"]
        args = ["enroll", "--server", self.farm.url, "--token", token, "--config", str(self.config),
                "--name", self.name, "--state-dir", str(self.home / "state"),
                "--cache-dir", str(self.home / "cache")]
        for label in labels:
            args += ["--label", label]
        if platform:
            args += ["--platform", platform]
        result = subprocess.run([self.python, "-m", "edgefarm.agent.cli", *args], cwd=PROJECT, env=self.env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        devices = self.farm.user.get("/api/v1/devices").json()
        self.device_id = next(d["id"] for d in devices if d["name"] == self.name)

    def start(self) -> "AgentProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.python, "-m", "edgefarm.agent.cli", "run", "--config", str(self.config)],
                                     cwd=PROJECT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def run_children(parent_pid: int) -> List[Tuple[int, str]]:
    """(pid, spec path) of the run processes (``edgefarm.agent.execute``) of an agent."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            ppid = int(process_stat(int(entry.name))[1])
        except (OSError, TypeError, IndexError):
            continue
        if ppid == parent_pid and "edgefarm.agent.execute" in argv:
            found.append((int(entry.name), argv[argv.index("edgefarm.agent.execute") + 1]))
    return found


def process_stat(pid: int) -> Optional[List[str]]:
    """State, ppid, pgrp, session ... of a process from /proc, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def process_state(pid: int) -> Optional[str]:
    """The process's state letter (R, S, T stopped, Z zombie...), None when it is gone."""
    stat = process_stat(pid)
    return stat[0] if stat else None


def gone(pid: int) -> bool:
    return process_state(pid) in (None, "Z", "X")


def wait_for(predicate, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_job(farm, job_id: int, timeout: float = 180) -> dict:
    final = ("succeeded", "failed", "cancelled")

    def done():
        job = farm.user.get(f"/api/v1/jobs/{job_id}").json()
        return job if job["state"] in final else None

    return wait_for(done, timeout, 0.3, f"job {job_id} to finish")
