"""The processes the main job supervises: the server and the local agent, each in
its own session with its output in a log file, started on a free port, watched
while the job runs, and stopped in order (the agent first, then the server)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from edgefarm.shared.client import FarmClient, FarmError

from .output import say

SERVER_START_SECONDS = 60


class DemoError(Exception):
    """A step of the main job failed; the message says which and where to look."""


class Child:
    """A subprocess in its own session (Ctrl-C reaches only the main job, which stops
    its children in order), with stdout and stderr in a log file."""

    def __init__(self, name: str, args: List[str], log_path: Path, env: Dict[str, str]):
        self.name, self.log_path = name, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, *args], env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> bool:
        """True when the process ended within ``timeout``; killed otherwise."""
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return False

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self, gone: str = "exited") -> None:
        """DemoError (``the agent <gone>``, with the end of its log) when the process has ended."""
        if not self.alive():
            raise DemoError(f"the {self.name} {gone} ({self.log_path}):\n{self.log_tail()}")


def choose_port(wanted: int) -> int:
    """``wanted`` when nothing listens on it, else a free port (said on stderr)."""
    for port in (wanted, 0):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen = sock.getsockname()[1]
        if port == 0:
            say(f"port {wanted} is in use; the demo uses port {chosen} instead")
        return chosen
    raise DemoError("no free TCP port on 127.0.0.1")


def start_server(data_dir: Path, port: int, env: Dict[str, str]) -> Child:
    """``edgefarm-server serve`` on ``port``, returned once ``/api/v1/info`` answers."""
    server = Child("server", ["-m", "edgefarm.server.cli", "serve", "--data-dir", str(data_dir),
                              "--port", str(port), "--log-level", "warning"],
                   data_dir / "server.log", env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_SECONDS
    with FarmClient(url, timeout=1, user_agent="edgefarm-demo") as probe:
        while time.monotonic() < deadline:
            if not server.alive():
                raise DemoError(f"the server exited at start:\n{server.log_tail()}")
            try:
                probe.info()
                return server
            except FarmError:
                time.sleep(0.1)
    raise DemoError(f"the server did not answer {url}/api/v1/info within {SERVER_START_SECONDS} s:\n"
                    f"{server.log_tail()}")


def stop_children(agent: Optional[Child], server: Optional[Child]) -> None:
    """The agent first (it ends its long poll, then exits), then the server. An agent
    still polling after a grace (a long poll set by the environment) is unblocked by
    stopping the server."""
    if agent is not None:
        agent.terminate()
        try:
            agent.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            if server is not None:
                server.terminate()
        agent.wait(30)
    if server is not None:
        server.terminate()
        server.wait(15)
