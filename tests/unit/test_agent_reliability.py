"""The agent's defences against faults, on real files and real processes: refused
reports kept, damaged cache entries replaced, leftover run process groups killed,
and the pause-at-step test hook off by default."""

import hashlib
import json
import os
import signal
import subprocess
import sys

from edgefarm.agent.artifacts import ArtifactCache, blob_problem
from edgefarm.agent.children import ChildRecord
from edgefarm.agent.pause import PAUSE_VARIABLE, pause_at
from edgefarm.agent.spool import Spool
from edgefarm.shared.contract.schemas import RunReport
from tests.support.agents import gone, process_state, wait_for


def test_a_refused_report_is_kept_with_the_reason(tmp_path):
    spool = Spool(tmp_path / "spool")
    path = spool.put(7, RunReport(lease_id="L1", state="failed", error="boom"))
    kept = spool.refuse(path, "Lease not current: lease L1 of run 7 expired")
    assert len(spool) == 0 and list(spool.pending()) == []
    assert spool.refused() == [kept]
    data = json.loads(kept.read_text())
    assert data["run_id"] == 7 and data["report"]["error"] == "boom"
    assert "expired" in data["refused"]


def test_blob_problem_sees_a_changed_size_and_changed_bytes(tmp_path):
    blob = tmp_path / "blob"
    blob.write_bytes(b"x" * 1000)
    sha = hashlib.sha256(blob.read_bytes()).hexdigest()
    assert blob_problem(blob, sha, 1000) is None
    blob.write_bytes(b"x" * 500)
    assert "500 bytes" in blob_problem(blob, sha, 1000)
    blob.write_bytes(b"y" + b"x" * 999)
    assert "sha256" in blob_problem(blob, sha, 1000)


def test_a_damaged_cache_entry_is_fetched_again(tmp_path):
    data = os.urandom(4096)
    sha = hashlib.sha256(data).hexdigest()
    fetched = []

    def fetch(url, dest, expected):
        fetched.append(url)
        dest.write_bytes(data)

    cache = ArtifactCache(tmp_path / "cache", max_bytes=10**6)
    path = cache.get_blob(sha, "u1", fetch, len(data))
    assert cache.get_blob(sha, "u2", fetch, len(data)) == path and fetched == ["u1"]
    path.write_bytes(data[:100])  # truncated
    assert cache.get_blob(sha, "u3", fetch, len(data)).read_bytes() == data
    path.write_bytes(bytes(2048) + data[2048:])  # overwritten in place, same size
    assert cache.get_blob(sha, "u4", fetch, len(data)).read_bytes() == data
    assert fetched == ["u1", "u3", "u4"]


def test_start_up_kills_the_recorded_group_and_removes_run_folders(tmp_path):
    record = ChildRecord(tmp_path / "state")
    folder = record.runs_dir / "edgefarm-run-abc"
    folder.mkdir()
    (folder / "spec.json").write_text("{}")
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    helper = int(leader.stdout.readline())  # a process the run started, same group
    record.record(leader.pid, folder)
    assert record.reap_leftovers() == leader.pid
    leader.wait(timeout=5)
    wait_for(lambda: gone(helper), 5, what="the group's other process to die")
    assert not folder.exists() and record.read() is None


def test_start_up_leaves_a_group_that_is_not_a_run(tmp_path):
    record = ChildRecord(tmp_path / "state")
    other = subprocess.Popen(["sleep", "60"])  # not in a session of its own
    try:
        record.record(other.pid, record.runs_dir / "edgefarm-run-x")
        assert record.reap_leftovers() is None
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_pause_hook_is_off_by_default_and_stops_at_its_step():
    pause_at("load")  # not set: returns at once
    code = "from edgefarm.agent.pause import pause_at; pause_at('warmup'); pause_at('measure')"
    env = dict(os.environ, **{PAUSE_VARIABLE: "measure"})
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        wait_for(lambda: process_state(proc.pid) == "T", 20, what="the process to stop itself")
        proc.send_signal(signal.SIGCONT)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
