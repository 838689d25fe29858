"""The last reports of one job posted at the same moment by different devices:
the job's state is recomputed under a lock on the job row, so whichever report
commits last sees every run finished and the job ends ``succeeded``, on SQLite
and on PostgreSQL (where, without the lock, two transactions each saw the
other's run as unfinished and the job stayed ``running`` for good)."""

import threading

from edgefarm.shared.formats.tflite_builder import tiny_tflite

JOBS = 30
DEVICES = 3


def _report_together(pairs, errors) -> None:
    """Post each (agent, lease) report of one job from its own thread, released at once."""
    barrier = threading.Barrier(len(pairs))

    def post(agent, lease):
        try:
            barrier.wait(timeout=10)
            response = agent.report(lease)
            if response.status_code != 200:
                errors.append(f"run {lease['run_id']}: {response.status_code} {response.text}")
        except Exception as exc:  # surfaced by the test
            errors.append(repr(exc))

    threads = [threading.Thread(target=post, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)


def test_concurrent_last_reports_finish_every_job(start_farm, tmp_path):
    farm = start_farm()
    path = tmp_path / "tiny.tflite"
    path.write_bytes(tiny_tflite())
    model = farm.push_model(path, name="tiny", task="classification")
    agents = [farm.enroll(f"pc-{i}") for i in range(DEVICES)]
    jobs = [farm.submit(models=[model["id"]], devices="all") for _ in range(JOBS)]
    leases = {job["id"]: [] for job in jobs}
    for agent in agents:
        while (lease := agent.lease()) is not None:
            leases[lease["job_id"]].append((agent, lease))
    assert all(len(found) == DEVICES for found in leases.values())
    errors = []
    for job in jobs:
        _report_together(leases[job["id"]], errors)
    assert errors == []
    stuck = []
    for job in jobs:
        body = farm.user.get(f"/api/v1/jobs/{job['id']}").json()
        assert body["counts"] == {"succeeded": DEVICES}
        if body["state"] != "succeeded" or body["finished_at"] is None:
            stuck.append((job["id"], body["state"], body["finished_at"]))
    assert stuck == [], f"{len(stuck)} of {JOBS} jobs did not finish: {stuck}"
