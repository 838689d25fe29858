"""``edgefarm-agent`` as a person runs it: enroll, doctor, bench."""

import json
import subprocess
import sys

import pytest

from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.support.servers import DEEPLAB, PROJECT


def agent_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "edgefarm.agent.cli", *args], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_enroll_writes_private_token_and_doctor_sees_the_server(farm, tmp_path):
    token = farm.admin.post("/api/v1/tokens", json={"role": "enroll"}).json()["token"]
    config = tmp_path / "agent.toml"
    done = agent_cli("enroll", "--server", farm.url, "--token", token, "--config", str(config),
                     "--name", "bench-pc", "--label", "lab1", "--state-dir", str(tmp_path / "state"),
                     "--cache-dir", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    token_file = tmp_path / "state" / "agent.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.read_text().startswith("ef_")
    assert f'server_url = "{farm.url}"' in config.read_text()
    doctor = agent_cli("doctor", "--json", "--config", str(config))
    assert doctor.returncode == 0, doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["platform"] == "pc" and report["cores"] >= 1
    runtimes = {r["name"]: r for r in report["runtimes"]}
    assert runtimes["tflite"]["version"].startswith("ai-edge-litert") and "cpu" in runtimes["tflite"]["accelerators"]
    assert runtimes["opencv"]["version"].startswith("opencv")
    assert report["server"]["reachable"] is True and "accepted" in report["server"]["token"]
    human = agent_cli("doctor", "--config", str(config)).stdout
    assert "platform   pc" in human and "tflite" in human and "reachable" in human
    device = farm.user.get("/api/v1/devices").json()[0]
    assert device["name"] == "bench-pc" and device["capabilities"]["labels"] == ["lab1"]


def test_doctor_without_config_says_so(tmp_path):
    result = agent_cli("doctor", "--json", "--config", str(tmp_path / "none.toml"))
    report = json.loads(result.stdout)
    assert report["server"]["configured"] is False and "enroll" in report["server"]["message"]


def test_bench_json_names_its_figures(tmp_path):
    model = tmp_path / "tiny.tflite"
    model.write_bytes(tiny_tflite())
    result = agent_cli("bench", str(model), "--json", "--runs", "60", "--min-seconds", "0.2")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    latency = body["latency_ms"]
    assert latency["count"] >= 60
    assert set(latency) >= {"mean", "std", "min", "p50", "p90", "p99", "max", "samples"}
    assert body["model_size_bytes"] == model.stat().st_size
    assert body["init_ms"] > 0 and body["first_inference_ms"] > 0 and body["peak_rss_bytes"] > 0
    assert body["runtime"]["name"] == "tflite"


def test_bench_deeplab_on_a_voc_folder(tmp_path):
    if not DEEPLAB.exists():
        pytest.skip("fixture ../shared/fixtures/deeplabv3_mnv2_dm05_pascal_fp32.tflite is absent")
    from tests.support.voc import build_voc_folder, independent_miou

    voc = tmp_path / "voc"
    build_voc_folder(voc, DEEPLAB)
    result = agent_cli("bench", str(DEEPLAB), "--dataset", str(voc), "--layout", "voc-seg", "--json",
                       "--runs", "5", "--min-seconds", "0.1", "--threads", "2")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["miou"] == pytest.approx(independent_miou(DEEPLAB, voc)["miou"], abs=1e-6)
    table = agent_cli("bench", str(DEEPLAB), "--dataset", str(voc), "--layout", "voc-seg",
                      "--runs", "5", "--min-seconds", "0.1", "--runtime", "opencv")
    assert table.returncode == 0, table.stderr
    assert "miou=" in table.stdout and "p50=" in table.stdout


@pytest.mark.parametrize("args,message", [
    (["bench", "/nonexistent.tflite"], "does not exist"),
    (["bench", "MODEL", "--dataset", "/tmp"], "--layout"),
    (["bench", "MODEL", "--runtime", "nosuch"], "invalid choice"),
    (["run", "--config", "/nonexistent/agent.toml"], "enroll"),
])
def test_bad_input_exits_2_with_a_message(tmp_path, args, message):
    model = tmp_path / "tiny.tflite"
    model.write_bytes(tiny_tflite())
    result = agent_cli(*[str(model) if a == "MODEL" else a for a in args])
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr


def test_enroll_with_a_bad_token_exits_2(farm, tmp_path):
    result = agent_cli("enroll", "--server", farm.url, "--token", "ef_1_nope",
                       "--config", str(tmp_path / "a.toml"), "--state-dir", str(tmp_path))
    assert result.returncode == 2 and "refused" in result.stderr
    assert not (tmp_path / "a.toml").exists()
