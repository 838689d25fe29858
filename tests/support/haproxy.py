"""Debian's ``haproxy`` in front of N server processes on loopback, configured from the
project's own ``deploy/haproxy.cfg`` (the file docker-compose.yml mounts): only the ``bind``
line and the ``server`` lines are rewritten (and a runtime API socket is added, for
``HAProxy.command``), so the tests exercise the shipped timeouts, health check and retry rules.

    with HAProxy(folder, [("127.0.0.1", a.port), ("127.0.0.1", b.port)]) as balancer:
        httpx.get(balancer.url + "/api/v1/info")
"""

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterable, Optional, Tuple

import httpx

from tests.support.servers import PROJECT, free_port

TEMPLATE = PROJECT / "deploy" / "haproxy.cfg"
_SERVER_LINE = re.compile(r"^(\s*)server\s+\S+\s+\S+(.*)$")
_BIND_LINE = re.compile(r"^(\s*)bind\s+\S+(.*)$")


def haproxy_binary() -> Optional[str]:
    return shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).is_file()), None)


def render_config(backends: Iterable[Tuple[str, int]], port: int, template: Path = TEMPLATE,
                  admin_socket: Optional[Path] = None) -> str:
    """The template with its frontend bound to 127.0.0.1:``port`` and one ``server`` line
    per (host, port) backend, named replica-1..N, in place of the template's own; with
    ``admin_socket``, HAProxy's runtime API listens there (``HAProxy.command``)."""
    backends = list(backends)
    out, placed = [], False
    for line in template.read_text().splitlines():
        if admin_socket is not None and line.strip() == "global":
            out += [line, f"    stats socket {admin_socket} mode 600 level admin"]
            continue
        server, bind = _SERVER_LINE.match(line), _BIND_LINE.match(line)
        if server:
            if not placed:
                indent, rest = server.group(1), server.group(2)
                out += [f"{indent}server replica-{i + 1} {host}:{p}{rest}"
                        for i, (host, p) in enumerate(backends)]
                placed = True
        elif bind:
            out.append(f"{bind.group(1)}bind 127.0.0.1:{port}{bind.group(2)}")
        else:
            out.append(line)
    if not placed:
        raise ValueError(f"{template} has no server line to replace")
    return "\n".join(out) + "\n"


class HAProxy:
    """``haproxy -db`` (foreground) on a free loopback port; ``url`` is the farm's address."""

    def __init__(self, folder: Path, backends: Iterable[Tuple[str, int]], port: Optional[int] = None):
        self.binary = haproxy_binary()
        if self.binary is None:
            raise FileNotFoundError("haproxy is not installed (Debian package haproxy)")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.folder / "haproxy.cfg"
        self.admin_socket = self.folder / "admin.sock"
        self.config.write_text(render_config(backends, self.port, admin_socket=self.admin_socket))
        self.log_path = self.folder / "haproxy.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 15) -> "HAProxy":
        check = subprocess.run([self.binary, "-c", "-q", "-f", str(self.config)],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refuses {self.config}:\n{check.stdout}{check.stderr}")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "-db", "-f", str(self.config)],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/api/v1/info", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"haproxy not answering after {timeout} s:\n{self.log()}")

    def command(self, line: str) -> str:
        """One command of HAProxy's runtime API, e.g. ``disable server servers/replica-2``."""
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.admin_socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def __enter__(self) -> "HAProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
