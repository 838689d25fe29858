"""Device pools over real HTTP against a real server, on SQLite and PostgreSQL:
a job placed ``any`` makes runs that exactly one free device of the pool takes,
``repeat`` spreads runs over the pool, an expired or released pool run returns
to the pool, ``each`` with ``repeat`` fixes the runs per device, and the family
comparison shows the board-to-board spread."""

import threading
import time
from collections import Counter

import pytest

from tests.integration.test_dashboard import Tags, sign_in
from tests.support.servers import sample_result


@pytest.fixture
def tiny(farm, tmp_path):
    from edgefarm.shared.formats.tflite_builder import tiny_tflite

    path = tmp_path / "tiny.tflite"
    path.write_bytes(tiny_tflite())
    return farm.push_model(path, name="tiny", family="tiny", task="classification")


def _run(farm, run_id):
    return farm.user.get(f"/api/v1/runs/{run_id}").json()


def test_any_gives_one_run_to_a_free_matching_device_only(farm, tiny):
    first, second = farm.enroll("pi-a", platform="rpi3"), farm.enroll("pi-b", platform="rpi3")
    other = farm.enroll("pc-1")
    parked = {}

    def poll():  # a parked long poll of a pool device wakes for the new pool run
        started = time.monotonic()
        parked["lease"], parked["seconds"] = first.lease(wait=10), time.monotonic() - started

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)
    job = farm.submit(models=[tiny["id"]], devices="platform=rpi3", placement="any")
    thread.join(timeout=15)
    assert job["placement"] == "any" and job["repeat"] == 1
    assert sorted(job["pool"]) == sorted([first.device_id, second.device_id])
    assert len(job["runs"]) == 1 and job["runs"][0]["device_id"] is None
    assert job["runs"][0]["state"] == "queued"
    lease = parked["lease"]
    assert lease is not None and lease["run_id"] == job["runs"][0]["id"]
    assert parked["seconds"] < 5
    assert second.lease() is None and other.lease() is None
    run = _run(farm, lease["run_id"])
    assert run["device_id"] == first.device_id and run["state"] == "leased"
    assert first.report(lease, result=sample_result(p50=20.0)).status_code == 200
    shown = farm.user.get(f"/api/v1/jobs/{job['id']}").json()
    assert shown["state"] == "succeeded" and shown["runs"][0]["device_id"] == first.device_id
    result = farm.user.get("/api/v1/results").json()[0]
    assert result["device_id"] == first.device_id and result["platform"] == "rpi3"


def test_a_busy_device_leaves_the_pool_run_to_another(farm, tiny, tmp_path):
    from edgefarm.shared.formats.tflite_builder import tiny_tflite

    first, second = farm.enroll("pi-a", platform="rpi3"), farm.enroll("pi-b", platform="rpi3")
    farm.submit(models=[tiny["id"]], devices=f"id={first.device_id}")
    held = first.lease()  # first is busy: it holds a lease
    assert held is not None
    job = farm.submit(models=[tiny["id"]], devices="platform=rpi3", placement="any")
    assert first.lease() is None
    taken = second.lease()
    assert taken is not None and taken["run_id"] == job["runs"][0]["id"]
    assert _run(farm, taken["run_id"])["device_id"] == second.device_id
    # both busy: a new pool run waits queued until a device of the pool is free
    path = tmp_path / "other.tflite"
    path.write_bytes(tiny_tflite(seed=7))
    model = farm.push_model(path, name="other")
    waiting = farm.submit(models=[model["id"]], devices="platform=rpi3", placement="any")
    assert first.lease() is None and second.lease() is None
    assert _run(farm, waiting["runs"][0]["id"])["state"] == "queued"
    user = sign_in(farm, farm.user_token)
    try:
        jobs_page = user.get("/jobs").text
    finally:
        user.close()
    assert "unassigned" in jobs_page and "any one free device" in jobs_page
    assert second.report(taken).status_code == 200
    later = second.lease()
    assert later is not None and later["run_id"] == waiting["runs"][0]["id"]


def test_repeat_spreads_runs_over_the_pool_and_none_is_taken_twice(farm, tiny):
    pool = [farm.enroll(f"pi-{i}", platform="rpi3") for i in range(3)]
    farm.enroll("pc-1")  # not in the pool
    job = farm.submit(models=[tiny["id"]], devices="platform=rpi3", placement="any", repeat=12)
    assert len(job["runs"]) == 12 and {r["device_id"] for r in job["runs"]} == {None}
    # each device holds one lease at a time, so the first three go to three boards
    first_round = [agent.lease() for agent in pool]
    assert all(lease is not None for lease in first_round)
    assert len({lease["run_id"] for lease in first_round}) == 3
    assert all(agent.lease() is None for agent in pool)
    taken, errors = [], []

    def work(agent, lease):
        try:
            while lease is not None:
                taken.append((lease["run_id"], agent.device_id))
                assert agent.report(lease).status_code == 200
                lease = agent.lease()
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=pair) for pair in zip(pool, first_round)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    counts = Counter(run_id for run_id, _ in taken)
    assert len(counts) == 12 and set(counts.values()) == {1}
    done = farm.user.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["state"] == "succeeded" and done["counts"] == {"succeeded": 12}
    by_run = {run["id"]: run["device_id"] for run in done["runs"]}
    assert all(by_run[run_id] == device for run_id, device in taken)
    assert len(set(by_run.values())) == 3


def test_released_pool_run_goes_back_to_the_pool(farm, tiny):
    first, second = farm.enroll("pi-a", platform="rpi3"), farm.enroll("pi-b", platform="rpi3")
    job = farm.submit(models=[tiny["id"]], devices="platform=rpi3", placement="any")
    lease = first.lease()
    released = first.http.post(f"/api/v1/runs/{lease['run_id']}/release",
                               json={"lease_id": lease["lease_id"], "reason": "SIGTERM"})
    assert released.status_code == 200
    assert released.json()["state"] == "queued" and released.json()["device_id"] is None
    again = second.lease()
    assert again["run_id"] == job["runs"][0]["id"] and again["attempt"] == 1
    assert first.report(lease).status_code == 404  # no longer first's run


def test_expired_pool_lease_returns_the_run_to_the_pool(start_farm, tmp_path):
    from edgefarm.shared.formats.tflite_builder import tiny_tflite

    farm = start_farm(lease_seconds=1)
    path = tmp_path / "m.tflite"
    path.write_bytes(tiny_tflite())
    model = farm.push_model(path, name="m")
    first, second = farm.enroll("pi-a", platform="rpi3"), farm.enroll("pi-b", platform="rpi3")
    job = farm.submit(models=[model["id"]], devices="platform=rpi3", placement="any")
    lease = first.lease()
    assert lease["attempt"] == 1
    deadline = time.monotonic() + 10
    while (run := _run(farm, lease["run_id"]))["state"] != "queued" and time.monotonic() < deadline:
        time.sleep(0.1)  # no heartbeat: the lease expires and the sweeper requeues
    assert run["state"] == "queued" and run["device_id"] is None and "agent_lost" in run["error"]
    again = second.lease(wait=5)
    assert again is not None and again["run_id"] == job["runs"][0]["id"] and again["attempt"] == 2
    assert first.report(lease).status_code == 404


def test_each_with_repeat_makes_runs_per_device(farm, tiny):
    first, second = farm.enroll("pc-a"), farm.enroll("pc-b")
    job = farm.submit(models=[tiny["id"]], devices="all", repeat=2)
    assert job["placement"] == "each" and job["pool"] == []
    assert Counter(r["device_id"] for r in job["runs"]) == {first.device_id: 2, second.device_id: 2}
    lease = first.lease()
    assert first.report(lease).status_code == 200
    assert first.lease()["run_id"] != lease["run_id"]


def test_a_waiting_any_job_and_devices_that_enroll_later_join_the_pool(farm, tiny):
    job = farm.submit(models=[tiny["id"]], devices="platform=rpi3", placement="any", repeat=2)
    assert job["state"] == "waiting" and job["runs"] == [] and job["warnings"]
    first = farm.enroll("pi-a", platform="rpi3")
    queued = farm.user.get(f"/api/v1/jobs/{job['id']}").json()
    assert queued["state"] == "queued" and len(queued["runs"]) == 2 and queued["pool"] == [first.device_id]
    held = first.lease()
    second = farm.enroll("pi-b", platform="rpi3")
    shown = farm.user.get(f"/api/v1/jobs/{job['id']}").json()
    assert shown["pool"] == sorted([first.device_id, second.device_id])
    taken = second.lease()
    assert taken is not None and taken["run_id"] != held["run_id"]


def test_cancel_ends_unassigned_pool_runs(farm, tiny):
    farm.enroll("pi-a", platform="rpi3")
    job = farm.submit(models=[tiny["id"]], devices="platform=rpi3", placement="any", repeat=3)
    response = farm.user.post(f"/api/v1/jobs/{job['id']}/cancel", json={"reason": "not needed"})
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "cancelled" and body["counts"] == {"cancelled": 3}
    assert {r["device_id"] for r in body["runs"]} == {None}


def test_bad_placement_or_repeat_is_a_problem(farm, tiny):
    for bad in ({"repeat": 0}, {"repeat": 1001}, {"repeat": "many"}, {"placement": "some"},
                {"placement": None}):
        response = farm.user.post("/api/v1/jobs", json={"models": [tiny["id"]], **bad})
        assert response.status_code == 422, bad
        assert response.headers["content-type"].startswith("application/problem+json")
    assert farm.user.get("/api/v1/jobs").json() == []


def test_too_many_runs_in_one_job_is_refused(farm, tiny):
    for i in range(11):
        farm.enroll(f"pc-{i}")
    response = farm.user.post("/api/v1/jobs", json={"models": [tiny["id"]], "repeat": 1000})
    assert response.status_code == 422 and "Too many runs" in response.json()["title"]
    assert farm.user.get("/api/v1/jobs").json() == []


def test_compare_shows_the_board_to_board_spread(farm, tiny):
    """Three runs of one pool job land on three boards (each holds one lease at a time)."""
    boards = [farm.enroll(f"pi-{i}", platform="rpi3") for i in range(3)]
    pc = farm.enroll("pc-1")
    farm.submit(models=[tiny["id"]], devices="platform=rpi3", placement="any", repeat=3)
    farm.submit(models=[tiny["id"]], devices=f"id={pc.device_id}")
    figures = {boards[0].device_id: 40.0, boards[1].device_id: 50.0, boards[2].device_id: 70.0,
               pc.device_id: 5.0}
    leases = [(agent, agent.lease()) for agent in boards + [pc]]
    for agent, lease in leases:
        assert agent.report(lease, result=sample_result(p50=figures[agent.device_id])).status_code == 200
    compare = farm.user.get("/api/v1/results/compare", params={"family": "tiny"}).json()
    assert len(compare["cells"]) == 4  # the per-device cells are still there
    assert {c["device_id"]: c["p50_ms"] for c in compare["cells"]} == figures
    [spread] = compare["spread"]  # one board of pc: no spread for it
    assert spread["model_id"] == tiny["id"] and spread["platform"] == "rpi3" and spread["boards"] == 3
    assert sorted(spread["device_ids"]) == sorted(b.device_id for b in boards)
    assert (spread["p50_min_ms"], spread["p50_median_ms"], spread["p50_max_ms"]) == (40.0, 50.0, 70.0)
    assert spread["p50_relative_spread"] == pytest.approx(0.6)
    user = sign_in(farm, farm.user_token)
    try:
        page = user.get("/compare/tiny").text
    finally:
        user.close()
    shown = Tags(page).having("tr", "data-boards")
    assert [(row["data-platform"], row["data-boards"]) for row in shown] == [("rpi3", "3")]
    assert "Board-to-board spread" in page and "60.0 % of the median" in page


def test_claims_take_the_highest_priority_first_then_the_oldest_run_own_or_pooled(farm, tiny):
    device = farm.enroll("prio-1", platform="prio")
    mine = f"id={device.device_id}"

    def run_ids(job):
        return sorted(run["id"] for run in job["runs"])

    low = run_ids(farm.submit(models=[tiny["id"]], devices=mine, priority=1, repeat=2))
    high = run_ids(farm.submit(models=[tiny["id"]], devices=mine, priority=5, repeat=2))
    zero = run_ids(farm.submit(models=[tiny["id"]], devices=mine))
    pooled = run_ids(farm.submit(models=[tiny["id"]], devices="platform=prio", placement="any", priority=3))
    taken = []
    while True:
        lease = device.lease()
        if lease is None:
            break
        taken.append(lease["run_id"])
        assert device.report(lease, result=sample_result()).status_code == 200
    assert taken == high + pooled + low + zero
