"""The README's main job starts the farm on embedded SQLite and prints its URL."""

import os
import re
import subprocess
import sys
import time

import httpx

from tests.servers import PROJECT, free_port


def test_demo_starts_server_on_sqlite_and_prints_url(tmp_path):
    port = free_port()
    env = dict(os.environ, EDGEFARM_DATA_DIR=str(tmp_path / "data"), EDGEFARM_PORT=str(port))
    env.pop("EDGEFARM_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "server.demo"], cwd=PROJECT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Uvicorn running" in line or "Application startup complete" in line:
                break
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}" in output
        token = re.search(r"EDGEFARM_TOKEN=(\S+)", output).group(1)
        info = httpx.get(f"http://127.0.0.1:{port}/api/v1/info").json()
        assert info["database"] == "sqlite"
        devices = httpx.get(f"http://127.0.0.1:{port}/api/v1/devices",
                            headers={"Authorization": f"Bearer {token}"})
        assert devices.status_code == 200 and devices.json() == []
        assert (tmp_path / "data" / "edgefarm.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
