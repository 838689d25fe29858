"""Fault injection with real server and agent processes, on SQLite and PostgreSQL.

Faults: the server killed (SIGKILL) for less and for more than the lease while a
result is posted; the agent killed (SIGKILL) at each step of a run (download,
load, warmup, measurement, report: the agent or the run's child stops itself at
the step through ``EDGEFARM_AGENT_PAUSE_AT``, then the agent is killed and a new
agent process starts on the device); a cached model overwritten in place and
truncated. After each, every run ends in exactly one terminal state, every
succeeded run has exactly one result (none lost, none duplicated) and every job
is final. ``FAULTS`` counts what was injected; the figures are in
docs/benchmarks.md ("Reliability").
"""

import time
from collections import Counter
from pathlib import Path

import pytest

from edgefarm.agent.pause import PAUSE_VARIABLE, STEPS
from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.support.agents import AgentProcess, gone, process_state, run_children, wait_for, wait_job

FAST = {"lease_seconds": 3, "heartbeat_seconds": 1, "poll_wait_seconds": 2,
        "poll_jitter_seconds": 0.2}
RUN = {"runtime": "tflite", "threads": 1, "warmup_seconds": 0.3, "min_seconds": 1.0,
       "measured_runs": 10}
TERMINAL = ("succeeded", "failed", "cancelled", "lost")
FAULTS: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def fault_summary():
    yield
    print(f"\nfault suite: {dict(FAULTS)}")


def push_model(farm, tmp_path: Path, seed: int) -> dict:
    path = tmp_path / f"tiny-{seed}.tflite"
    path.write_bytes(tiny_tflite(seed=seed))
    return farm.push_model(path, name=f"tiny-{seed}")


def assert_exactly_once(farm, job_ids) -> None:
    """Every job final, every run terminal and succeeded, one result per run."""
    for job_id in job_ids:
        job = farm.user.get(f"/api/v1/jobs/{job_id}").json()
        assert job["state"] in ("succeeded", "failed", "cancelled"), job
        results = farm.user.get("/api/v1/results", params={"job": job_id}).json()
        per_run = Counter(result["run_id"] for result in results)
        for run in job["runs"]:
            assert run["state"] in TERMINAL, run
            assert run["state"] == "succeeded", run  # no result lost
            assert per_run[run["id"]] == 1, (run, per_run)  # none duplicated
            FAULTS["runs"] += 1
        assert len(results) == len(job["runs"])


def no_leftover_runs(agent: AgentProcess) -> bool:
    return not list((agent.home / "state" / "runs").glob("edgefarm-run-*"))


def refused(agent: AgentProcess) -> list:
    return list((agent.home / "state" / "spool" / "refused").glob("*.json"))


def run_state(farm, job_id: int) -> dict:
    return farm.user.get(f"/api/v1/jobs/{job_id}").json()["runs"][0]


def kill_server_while_the_result_posts(farm, agent, job_id: int, outage: float) -> None:
    """SIGKILL the server while the run works; it finishes during the outage."""
    wait_for(lambda: run_state(farm, job_id)["state"] == "running", 60, what="run to start")
    farm.server.kill()
    killed = time.monotonic()
    wait_for(lambda: "kept for later" in agent.log(), 30, what="the result to be spooled")
    time.sleep(max(0.0, outage - (time.monotonic() - killed)))
    farm.server.start()


def test_server_killed_for_less_than_the_lease(start_farm, tmp_path):
    """The report waits in the spool and goes first: no run is measured twice."""
    farm = start_farm(**{**FAST, "lease_seconds": 15})  # 5 s down, plus the restart
    models = [push_model(farm, tmp_path, seed) for seed in (1, 2, 3)]
    agent = AgentProcess(farm, tmp_path / "agent", name="pc").start()
    try:
        jobs = [farm.submit(models=[model["id"]], devices="all", settings=RUN) for model in models]
        kill_server_while_the_result_posts(farm, agent, jobs[0]["id"], outage=5)
        FAULTS["server killed < lease"] += 1
        for job in jobs:
            wait_job(farm, job["id"], timeout=60)
    finally:
        agent.stop()
    assert_exactly_once(farm, [job["id"] for job in jobs])
    assert all(run_state(farm, job["id"])["attempt"] == 1 for job in jobs)
    assert refused(agent) == []


def test_server_killed_for_more_than_the_lease(start_farm, tmp_path):
    """The lease expired: the report is refused (kept in refused/, logged), the run is
    measured again, and still exactly one result is stored."""
    farm = start_farm(**FAST)
    model = push_model(farm, tmp_path, 4)
    agent = AgentProcess(farm, tmp_path / "agent", name="pc").start()
    try:
        job = farm.submit(models=[model["id"]], devices="all", settings=RUN)
        kill_server_while_the_result_posts(farm, agent, job["id"], outage=6)
        FAULTS["server killed > lease"] += 1
        wait_job(farm, job["id"], timeout=60)
    finally:
        agent.stop()
    assert_exactly_once(farm, [job["id"]])
    assert run_state(farm, job["id"])["attempt"] == 2
    assert len(refused(agent)) == 1 and "refused by the server" in agent.log()


def paused_process(agent: AgentProcess, step: str) -> int:
    """The pid that stopped itself at ``step``: the agent, or the run's child."""
    if step in ("download", "report"):
        wait_for(lambda: process_state(agent.proc.pid) == "T", 60, what=f"the agent to pause at {step}")
        return agent.proc.pid

    def stopped_child():
        return [pid for pid, _ in run_children(agent.proc.pid) if process_state(pid) == "T"]

    (child,) = wait_for(stopped_child, 60, what=f"the run to pause at {step}")
    return child


def test_agent_killed_at_each_step(start_farm, tmp_path):
    farm = start_farm(**FAST)
    agent = AgentProcess(farm, tmp_path / "agent", name="pc")
    jobs = []
    try:
        for seed, step in enumerate(STEPS, start=10):
            model = push_model(farm, tmp_path, seed)  # a new model: the download step happens
            agent.env[PAUSE_VARIABLE] = step
            agent.start()
            job = farm.submit(models=[model["id"]], devices="all", settings=RUN)
            jobs.append(job["id"])
            paused = paused_process(agent, step)
            agent.kill()
            FAULTS[f"agent SIGKILL at {step}"] += 1
            del agent.env[PAUSE_VARIABLE]
            agent.start()  # as systemd restarts it
            wait_for(lambda pid=paused: gone(pid), 15, what="the paused process to be gone")
            wait_job(farm, job["id"], timeout=60)
            wait_for(lambda: no_leftover_runs(agent), 10, what="run folders to be removed")
            agent.stop()
    finally:
        agent.stop()
    assert_exactly_once(farm, jobs)


def test_cache_overwritten_and_truncated(start_farm, tmp_path):
    farm = start_farm(**FAST)
    model = push_model(farm, tmp_path, 20)
    agent = AgentProcess(farm, tmp_path / "agent", name="pc").start()
    blob = agent.home / "cache" / "blobs" / model["sha256"][:2] / model["sha256"]
    damages = {"cache overwritten": lambda data: data[:300] + bytes(400) + data[700:],
               "cache truncated": lambda data: data[: len(data) // 2]}
    jobs = []
    try:
        for kind in [None, *damages]:
            if kind is not None:
                blob.write_bytes(damages[kind](blob.read_bytes()))
                FAULTS[kind] += 1
            job = farm.submit(models=[model["id"]], devices="all", settings={**RUN, "min_seconds": 0.2})
            jobs.append(job["id"])
            wait_job(farm, job["id"], timeout=60)
    finally:
        agent.stop()
    assert_exactly_once(farm, jobs)
    for job_id in jobs:
        (result,) = farm.user.get("/api/v1/results", params={"job": job_id}).json()
        assert result["extra"]["model_sha256"] == model["sha256"]
    assert agent.log().count("downloading it again") == 2
