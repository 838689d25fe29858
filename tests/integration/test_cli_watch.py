"""The regression watch's CLI commands against a real server (SQLite): baseline,
history, regressions and webhooks, as separate processes over HTTP."""

import json
import subprocess

from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.support.compression import edgefarm as run_cli
from tests.support.servers import Farm, sample_result


def edgefarm(farm: Farm, *args: str, token: str = "") -> subprocess.CompletedProcess:
    return run_cli(*args, farm=farm, token=token, timeout=60)


def test_watch_commands(sqlite_farm, tmp_path):
    farm = sqlite_farm
    path = tmp_path / "net.tflite"
    path.write_bytes(tiny_tflite(seed=1))
    farm.push_model(path, name="net-a", family="net", task="classification", variant={"label": "int8-qat"})
    agent = farm.enroll("pc-1")
    results = []
    for p50 in (10.0, 10.1, 30.0):
        farm.submit(models=["net-a"], devices="all")
        response = agent.report(agent.lease(), result=sample_result(p50=p50))
        results.append(response.json()["result_id"])
        if len(results) == 1:
            done = edgefarm(farm, "baseline", "set", "--family", "net", "--variant", "int8-qat",
                            "--device", "pc-1", "--runtime", "tflite")
            assert done.returncode == 0, done.stderr
            assert f"result {results[0]}" in done.stderr

    listed = json.loads(edgefarm(farm, "baseline", "list", "--json").stdout)
    assert [(b["series"]["variant"], b["result_id"]) for b in listed] == [("int8-qat", results[0])]
    table = edgefarm(farm, "history", "--result", str(results[1]))
    assert table.returncode == 0, table.stderr
    assert "baseline" in table.stdout and "REGRESSED latency_p50_ms" in table.stdout
    assert "3 results" in table.stderr
    found = edgefarm(farm, "regressions", "--family", "net")
    assert found.returncode == 0 and "latency_p50_ms" in found.stdout and "threshold" in found.stdout
    assert "no regressions" in edgefarm(farm, "regressions", "--family", "other").stderr

    refused = edgefarm(farm, "webhooks", "add", "http://127.0.0.1:9/x", "--event", "job.finished")
    assert refused.returncode == 2 and "admin" in refused.stderr
    added = edgefarm(farm, "webhooks", "add", "http://127.0.0.1:9/x", "--event", "job.finished",
                     "--json", token=farm.admin_token)
    hook = json.loads(added.stdout)
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["job.finished"]
    shown = json.loads(edgefarm(farm, "webhooks", "list", "--json", token=farm.admin_token).stdout)
    assert [h["id"] for h in shown] == [hook["id"]] and shown[0]["secret"] is None
    bad = edgefarm(farm, "webhooks", "add", "http://x", "--event", "nothing", token=farm.admin_token)
    assert bad.returncode == 2
