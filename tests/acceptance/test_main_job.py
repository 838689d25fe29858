"""The README's main job (``make demo``) end to end: a server, a real agent and a
trained model family on this machine, offline. With ``EDGEFARM_DEMO_EXIT=1`` it
prints the results table and exits; a second run reuses the enrolled agent, the
built files and the uploads."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.support.servers import PROJECT, Farm, ServerProcess, free_port

pytest.importorskip("sklearn", reason="the demo trains with scikit-learn (the [tools] extra)")

TABLE_COLUMNS = ["platform", "runtime", "model", "quantization", "pruning", "accuracy", "p50 ms",
                 "p90 ms", "size bytes", "peak RSS MiB"]


def run_demo(data_dir, port: int):
    env = dict(os.environ, EDGEFARM_DATA_DIR=str(data_dir), EDGEFARM_PORT=str(port),
               EDGEFARM_DEMO_EXIT="1")
    env.pop("EDGEFARM_DATABASE_URL", None)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "edgefarm.cli.demo"], cwd=PROJECT, env=env,
                            capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result, elapsed


def digits_rows(stdout: str):
    """The table's rows of the digits-mlp family, as dicts keyed by column."""
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["platform", "runtime", "model"])
    rows = []
    for line in lines[header + 2:]:
        cells = line.split()
        if len(cells) != len(TABLE_COLUMNS):
            break
        rows.append(dict(zip(TABLE_COLUMNS, cells)))
    return [row for row in rows if row["model"].startswith("digits-mlp")]


def check_table(stdout: str) -> None:
    rows = digits_rows(stdout)
    assert len(rows) >= 3, stdout
    assert {row["model"] for row in rows} >= {"digits-mlp-fp32", "digits-mlp-pruned-0.5",
                                              "digits-mlp-pruned-0.8"}
    for row in rows:
        assert float(row["accuracy"]) >= 0.9, row
        assert float(row["p50 ms"]) > 0 and float(row["p90 ms"]) >= float(row["p50 ms"]), row
        assert int(row["size bytes"]) > 0 and float(row["peak RSS MiB"]) > 0, row
        assert row["platform"] == "pc" and row["runtime"] == "tflite"
    assert {row["pruning"] for row in rows} >= {"-", "50%", "80%"}


def test_demo_benchmarks_the_digits_family_and_a_second_run_reuses_everything(tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    first, first_seconds = run_demo(data_dir, port)
    check_table(first.stdout)
    url = f"http://127.0.0.1:{port}"
    assert f"API docs: {url}/docs" in first.stdout
    assert f"{url}/api/v1/results?format=csv" in first.stdout
    assert f"export EDGEFARM_URL={url} EDGEFARM_TOKEN=" in first.stdout
    assert "enrolled as device" in first.stderr
    variants = json.loads((data_dir / "demo" / "variants.json").read_text())
    assert len(variants) >= 3  # fp32 and two pruned; fp16 and dynamic where ai-edge-quantizer runs
    assert f"runs finished ({len(variants)} succeeded)" in first.stderr
    assert "accuracy check: the agent's top-1 equals the in-process accuracy for 3/3" in first.stderr
    assert (data_dir / "edgefarm.db").exists() and (data_dir / "agent" / "agent.toml").exists()

    # The second run finds port `port` taken and moves, which the enrolled agent follows.
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the first server's TIME_WAITs
        busy.bind(("127.0.0.1", port))
        busy.listen()
        second, second_seconds = run_demo(data_dir, port)
    check_table(second.stdout)
    assert f"port {port} is in use" in second.stderr
    assert "enrolled as device" not in second.stderr and "agent: reusing device" in second.stderr
    assert "uploaded" not in second.stderr and "trained" not in second.stderr
    assert second_seconds < first_seconds, (first_seconds, second_seconds)

    tokens = json.loads((data_dir / "demo-tokens.json").read_text())
    assert f"EDGEFARM_TOKEN={tokens['user']}" in second.stdout
    server = ServerProcess(data_dir, f"sqlite:///{data_dir / 'edgefarm.db'}").start()
    farm = Farm(server)
    try:
        devices = farm.user.get("/api/v1/devices").json()
        assert [d["name"] for d in devices] == ["local-pc"]
        models = farm.user.get("/api/v1/models", params={"family": "digits-mlp"}).json()
        assert len(models) == len(variants)
        quantized = {m["variant"]["quantization"] for m in models} - {"none"}
        assert quantized == {"fp16", "dynamic"}  # the [tools] extra is installed in CI
        assert [d["name"] for d in farm.user.get("/api/v1/datasets").json()] == ["digits-test"]
        jobs = farm.user.get("/api/v1/jobs").json()
        digits_jobs = [j for j in jobs if j["name"] == "demo: digits-mlp variants"]
        assert len(digits_jobs) == 2 and all(j["state"] == "succeeded" for j in digits_jobs)
        pruned = {m["name"]: m for m in models}["digits-mlp-pruned-0.8"]
        assert pruned["parent_id"] == {m["name"]: m for m in models}["digits-mlp-fp32"]["id"]
    finally:
        farm.close()
        server.stop()
