"""The regression watch with real processes: a server (SQLite), a real agent
running the DeepLab fixture, and the ``edgefarm`` CLI as the CI gate.

A baseline is set from one DeepLab result; a rerun with the same settings is
not flagged (``submit --wait --fail-on-regression`` exits 0); a deliberately
slower run of the same model in the same series (XNNPACK turned off, about 7x
slower unloaded) is flagged as a latency regression and the gate exits 4
(``EXIT_REGRESSION``). Two threads are no faster than one on a shared 2-core
runner (measured: p50 about 50 ms either way, and two threads suffer most
when other processes take a core), so every run uses one thread and the slower
run is made by the runtime option, not by the thread count. The family's
latency threshold is +50%: on a runner at load 6 to 7 the reruns measured 0.8x to
1.1x of their baseline (the baseline is the agent's first, cold run) and the
slower run 2.5x to 4.8x, so both stay clear of it; the default +5% is for
quiet benchmark boards, not for a shared CI machine."""

import json
import subprocess

import pytest

from edgefarm.cli.errors import EXIT_REGRESSION
from tests.support.agents import AgentProcess
from tests.support.compression import edgefarm as run_cli
from tests.support.servers import DEEPLAB, Farm

pytestmark = pytest.mark.skipif(
    not DEEPLAB.exists(), reason=f"the DeepLab fixture is not present at {DEEPLAB}")

SHORT = ["--threads", "1", "--warmup-runs", "1", "--runs", "12", "--min-seconds", "0.3",
         "--max-seconds", "10"]


def edgefarm(farm: Farm, *args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, farm=farm, timeout=240)


def gate(farm: Farm, *extra: str) -> subprocess.CompletedProcess:
    return edgefarm(farm, "submit", "--model", "deeplab-fp32", "--devices", "all", *SHORT, *extra,
                    "--wait", "--wait-timeout", "200", "--fail-on-regression", "--json")


def test_baseline_rerun_and_slower_run_through_the_cli_gate(sqlite_farm, tmp_path):
    farm = sqlite_farm
    farm.push_model(DEEPLAB, name="deeplab-fp32", family="deeplab", task="segmentation")
    assert farm.admin.put("/api/v1/thresholds/deeplab", json={"latency_pct": 50}).status_code == 200
    agent = AgentProcess(farm, tmp_path / "agent", name="pc-agent").start()
    try:
        first = gate(farm)
        assert first.returncode == 0, first.stderr
        result_id = json.loads(first.stdout)["runs"][0]["result_id"]
        baseline = edgefarm(farm, "baseline", "set", str(result_id))
        assert baseline.returncode == 0, baseline.stderr
        assert f"result {result_id}" in baseline.stderr

        rerun = gate(farm)
        assert rerun.returncode == 0, rerun.stderr + rerun.stdout
        assert "no result of job" in rerun.stderr

        slower = gate(farm, "--option", "xnnpack=false")
        assert slower.returncode == EXIT_REGRESSION, slower.stderr
        assert "latency_p50_ms" in slower.stderr and "significance" in slower.stderr
    finally:
        agent.stop()
    slow_job = json.loads(slower.stdout)["id"]
    [found] = farm.user.get("/api/v1/regressions", params={"job": slow_job}).json()
    assert found["metric"] == "latency_p50_ms" and found["baseline_result_id"] == result_id
    assert found["change"] > 50 and found["low"] > 0
    listed = edgefarm(farm, "history", "--result", str(result_id), "--json")
    points = json.loads(listed.stdout)["points"]
    assert [p["baseline"] for p in points] == [True, False, False]
    assert [p["regressions"] for p in points] == [[], [], ["latency_p50_ms"]]
