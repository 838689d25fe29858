"""The ``edgefarm`` CLI against a real server: both run as separate processes
and talk over real HTTP on a loopback port.

One server serves the whole module (``cli_farm``); the tests that need an
empty farm start their own (``empty_farm``). The CLI runs as
``python -m edgefarm.cli.main`` with ``EDGEFARM_URL`` / ``EDGEFARM_TOKEN`` in its
environment and a private ``XDG_CONFIG_HOME`` so that no config file of the
person running the tests is read.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest

from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.support.markdown_tables import parse_tables
from tests.support.servers import DEEPLAB_SHA256, Farm, ServerProcess, sample_result

PROJECT = Path(__file__).resolve().parents[2]
FIXTURES = PROJECT.parent / "shared" / "fixtures"
DEEPLAB = FIXTURES / "deeplabv3_mnv2_dm05_pascal_fp32.tflite"
INPUT_LINE = "inputs:  sub_7 1x513x513x3 float32"
OUTPUT_LINE = "outputs: ResizeBilinear_2 1x513x513x21 float32"

needs_deeplab = pytest.mark.skipif(
    not DEEPLAB.exists(), reason=f"the DeepLab fixture is not present at {DEEPLAB}"
)


def _start_farm(data_dir: Path) -> Iterator[Farm]:
    server = ServerProcess(data_dir, f"sqlite:///{data_dir}/edgefarm.db")
    try:
        server.start()
        farm = Farm(server)
    except Exception:
        server.kill()
        raise
    try:
        yield farm
    finally:
        farm.close()
        _stop(server)


def _stop(server: ServerProcess) -> None:
    """Terminate, then kill after 5 s."""
    if server.proc is None or server.proc.poll() is not None:
        return
    server.proc.terminate()
    try:
        server.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="module")
def cli_farm(tmp_path_factory) -> Iterator[Farm]:
    yield from _start_farm(tmp_path_factory.mktemp("cli-farm"))


@pytest.fixture
def empty_farm(tmp_path) -> Iterator[Farm]:
    yield from _start_farm(tmp_path / "farm")


def cli_env(farm: Optional[Farm], tmp_path: Path, token: Optional[str] = None) -> Dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("EDGEFARM_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "no-config")
    if farm is not None:
        env["EDGEFARM_URL"] = farm.url
        env["EDGEFARM_TOKEN"] = token or farm.user_token
    return env


def edgefarm(farm: Optional[Farm], tmp_path: Path, *args: str, token: Optional[str] = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgefarm.cli.main", *args], cwd=PROJECT, env=cli_env(farm, tmp_path, token),
        capture_output=True, text=True, timeout=timeout,
    )


def as_json(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------- models


@needs_deeplab
def test_push_deeplab_prints_sha256_and_tensors(cli_farm, tmp_path):
    result = edgefarm(cli_farm, tmp_path, "models", "push", str(DEEPLAB), "--family", "deeplab")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert DEEPLAB_SHA256 in result.stdout
    assert f"sha256:  {DEEPLAB_SHA256}" in lines
    assert INPUT_LINE in lines and OUTPUT_LINE in lines
    for key in ("name:", "id:", "format:", "size:"):
        assert any(line.startswith(key) for line in lines), key

    again = edgefarm(cli_farm, tmp_path, "models", "push", str(DEEPLAB))
    assert again.returncode == 0, again.stderr
    assert "already stored" in again.stdout

    data = as_json(edgefarm(cli_farm, tmp_path, "models", "push", str(DEEPLAB), "--json"))
    assert data["sha256"] == DEEPLAB_SHA256
    assert data["inputs"][0]["shape"] == [1, 513, 513, 3]


def test_push_text_file_is_refused(cli_farm, tmp_path):
    text = tmp_path / "notes.tflite"
    text.write_text("these are notes, not weights\n")
    result = edgefarm(cli_farm, tmp_path, "models", "push", str(text))
    assert result.returncode == 2
    assert "not a model" in result.stderr.lower()
    assert result.stderr.startswith("edgefarm: error:")


def test_push_missing_file_exits_2(cli_farm, tmp_path):
    result = edgefarm(cli_farm, tmp_path, "models", "push", str(tmp_path / "absent.tflite"))
    assert result.returncode == 2
    assert "no such model file" in result.stderr


def test_models_list_show_and_delete(cli_farm, tmp_path):
    path = tmp_path / "tiny.tflite"
    path.write_bytes(tiny_tflite(seed=41))
    pushed = as_json(edgefarm(cli_farm, tmp_path, "models", "push", str(path), "--name", "tiny-41",
                              "--family", "tiny", "--quantization", "int8", "--json"))
    listed = as_json(edgefarm(cli_farm, tmp_path, "models", "list", "--json"))
    assert pushed["id"] in [m["id"] for m in listed]
    only = as_json(edgefarm(cli_farm, tmp_path, "models", "list", "--family", "tiny", "--json"))
    assert [m["name"] for m in only] == ["tiny-41"]
    shown = edgefarm(cli_farm, tmp_path, "models", "show", "tiny-41")
    assert shown.returncode == 0 and "int8" in shown.stdout and pushed["sha256"] in shown.stdout
    deleted = edgefarm(cli_farm, tmp_path, "models", "delete", str(pushed["id"]))
    assert deleted.returncode == 0, deleted.stderr
    gone = edgefarm(cli_farm, tmp_path, "models", "show", str(pushed["id"]))
    assert gone.returncode == 2 and "Not found" in gone.stderr


# ---------------------------------------------------------------- submit and wait


def _push_tiny(farm: Farm, tmp_path: Path, seed: int, **meta) -> dict:
    path = tmp_path / f"tiny-{seed}.tflite"
    path.write_bytes(tiny_tflite(seed=seed))
    return farm.push_model(path, **meta)


def test_submit_bad_selector_exits_2(cli_farm, tmp_path):
    result = edgefarm(cli_farm, tmp_path, "submit", "--model", "1", "--devices", "colour=red")
    assert result.returncode == 2
    assert "selector" in result.stderr and "colour" in result.stderr


def test_submit_require_device_without_match_exits_2(cli_farm, tmp_path):
    model = _push_tiny(cli_farm, tmp_path, 7)
    result = edgefarm(cli_farm, tmp_path, "submit", "--model", str(model["id"]),
                      "--devices", "platform=nosuch", "--require-device")
    assert result.returncode == 2
    assert "No matching device" in result.stderr


def test_submit_without_device_waits_with_warning(cli_farm, tmp_path):
    model = _push_tiny(cli_farm, tmp_path, 8)
    result = edgefarm(cli_farm, tmp_path, "submit", "--model", str(model["id"]),
                      "--devices", "platform=nosuch", "--name", "patient")
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "platform=nosuch" in result.stderr
    assert "waiting" in result.stdout
    job_id = next(int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("job:"))

    timed_out = edgefarm(cli_farm, tmp_path, "jobs", "wait", str(job_id), "--timeout", "1", "--json")
    assert timed_out.returncode == 3
    assert json.loads(timed_out.stdout)["state"] == "waiting"

    cancelled = as_json(edgefarm(cli_farm, tmp_path, "jobs", "cancel", str(job_id), "--reason",
                                 "no such device", "--json"))
    assert cancelled["state"] == "cancelled"
    waited = edgefarm(cli_farm, tmp_path, "jobs", "wait", str(job_id))
    assert waited.returncode == 1 and "cancelled" in waited.stderr


def test_submit_on_any_with_repeat_makes_pool_runs(cli_farm, tmp_path):
    model = _push_tiny(cli_farm, tmp_path, 9)
    pool = [cli_farm.enroll(f"pool-{i}", platform="clipool") for i in range(2)]
    job = as_json(edgefarm(cli_farm, tmp_path, "submit", "--model", str(model["id"]), "--devices",
                           "platform=clipool", "--on", "any", "--repeat", "3", "--json"))
    assert job["placement"] == "any" and job["repeat"] == 3
    assert job["pool"] == sorted(agent.device_id for agent in pool)
    assert len(job["runs"]) == 3 and {run["device_id"] for run in job["runs"]} == {None}
    shown = edgefarm(cli_farm, tmp_path, "jobs", "show", str(job["id"]))
    assert shown.returncode == 0, shown.stderr
    assert "any, repeat 3" in shown.stdout and shown.stdout.count("unassigned") == 3
    edgefarm(cli_farm, tmp_path, "jobs", "cancel", str(job["id"]))


@pytest.mark.parametrize("bad, message", [(("--repeat", "0"), "repeat"), (("--repeat", "1001"), "repeat"),
                                          (("--on", "some"), "--on")])
def test_submit_bad_placement_or_repeat_exits_2(cli_farm, tmp_path, bad, message):
    result = edgefarm(cli_farm, tmp_path, "submit", "--model", "1", "--devices", "all", *bad)
    assert result.returncode == 2 and message in result.stderr


def test_submit_wait_and_results(cli_farm, tmp_path):
    """A job on an enrolled device: `jobs wait` follows it live while an agent
    reports, then the results table and the family comparison show it."""
    base = _push_tiny(cli_farm, tmp_path, 21, name="cmp-fp32", family="cmp", task="classification")
    int8 = _push_tiny(cli_farm, tmp_path, 22, name="cmp-int8", family="cmp", task="classification",
                      variant={"quantization": "int8"}, lineage={"parent_sha256": base["sha256"]})
    agent = cli_farm.enroll("cli-pc", labels=["cli"])
    job = as_json(edgefarm(cli_farm, tmp_path, "submit", "--model", "cmp-fp32", "--model", "cmp-int8",
                           "--devices", f"id={agent.device_id}", "--runs", "5", "--json"))
    assert job["state"] == "queued" and len(job["runs"]) == 2
    assert job["settings"]["measured_runs"] == 5

    waiter = subprocess.Popen(
        [sys.executable, "-m", "edgefarm.cli.main", "jobs", "wait", str(job["id"]), "--timeout", "60", "--json"],
        cwd=PROJECT, env=cli_env(cli_farm, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    figures = {base["id"]: (10.0, 0.90), int8["id"]: (4.0, 0.89)}
    time.sleep(1.5)
    while (lease := agent.lease()) is not None:
        p50, top1 = figures[lease["model"]["id"]]
        assert agent.report(lease, result=sample_result(p50=p50, top1=top1)).status_code == 200
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert json.loads(out)["state"] == "succeeded"
    assert "runs done" in err

    rows = as_json(edgefarm(cli_farm, tmp_path, "results", "--job", str(job["id"]), "--json"))
    assert sorted(r["model_name"] for r in rows) == ["cmp-fp32", "cmp-int8"]
    table = edgefarm(cli_farm, tmp_path, "results", "--family", "cmp")
    assert table.returncode == 0 and "cmp-int8" in table.stdout and "90.00% top-1" in table.stdout
    csv_text = edgefarm(cli_farm, tmp_path, "results", "--family", "cmp", "--csv")
    assert csv_text.stdout.splitlines()[0].startswith("id,") and len(csv_text.stdout.splitlines()) == 3

    compared = edgefarm(cli_farm, tmp_path, "results", "--compare", "cmp")
    assert compared.returncode == 0, compared.stderr
    assert "-1.00 pt, not testable" in compared.stdout
    assert "0.40x, no significant difference" in compared.stdout
    assert "* 89.00% top-1" in compared.stdout  # int8: faster, nearly as accurate: on the front
    assert as_json(edgefarm(cli_farm, tmp_path, "results", "--compare", "cmp", "--json"))["family"] == "cmp"

    # The study's table as Markdown, with the same filters as --csv: one row per result.
    markdown = edgefarm(cli_farm, tmp_path, "results", "--family", "cmp", "--format", "markdown")
    assert markdown.returncode == 0, markdown.stderr
    tables = parse_tables(markdown.stdout)
    assert [t["heading"] for t in tables] == ["Classification"]
    assert tables[0]["header"] == ["Platform", "Runtime", "Model", "Pruning", "Accuracy", "p50 (ms)",
                                   "Model size", "Peak memory"]
    rows = {row[2]: row for row in tables[0]["rows"]}
    assert len(tables[0]["rows"]) == 2 and set(rows) == {"cmp-fp32", "cmp-int8"}
    assert rows["cmp-fp32"][4] == "0.9000" and rows["cmp-int8"][4] == "0.8900"
    assert rows["cmp-fp32"][5] == "10.00" and rows["cmp-int8"][5] == "4.00"
    only = parse_tables(edgefarm(cli_farm, tmp_path, "results", "--model", "cmp-int8", "--format",
                                 "markdown").stdout)
    assert [row[2] for row in only[0]["rows"]] == ["cmp-int8"]
    # the comparison as Markdown: three samples a result and no per-sample data decide nothing
    compared_md = parse_tables(edgefarm(cli_farm, tmp_path, "results", "--compare", "cmp", "--format",
                                        "markdown").stdout)
    int8_row = next(row for row in compared_md[0]["rows"] if row[1] == "cmp-int8")
    assert int8_row[4] == "not testable" and int8_row[7] == "no significant difference"
    bad = edgefarm(cli_farm, tmp_path, "results", "--format", "html")
    assert bad.returncode == 2 and "invalid choice: 'html'" in bad.stderr


def test_devices_list_and_drain(cli_farm, tmp_path):
    agent = cli_farm.enroll("drain-me", platform="rpi3")
    devices = as_json(edgefarm(cli_farm, tmp_path, "devices", "list", "--json"))
    assert "drain-me" in [d["name"] for d in devices]
    refused = edgefarm(cli_farm, tmp_path, "devices", "drain", str(agent.device_id))
    assert refused.returncode == 2 and "Forbidden" in refused.stderr
    drained = as_json(edgefarm(cli_farm, tmp_path, "devices", "drain", str(agent.device_id), "--json",
                               token=cli_farm.admin_token))
    assert drained["draining"] is True
    enabled = as_json(edgefarm(cli_farm, tmp_path, "--json", "devices", "enable", str(agent.device_id),
                               token=cli_farm.admin_token))
    assert enabled["draining"] is False and enabled["enabled"] is True


# ---------------------------------------------------------------- configuration, empty farm


def test_missing_token_exits_2(cli_farm, tmp_path):
    env_farm_without_token = edgefarm(None, tmp_path, "--url", cli_farm.url, "models", "list")
    assert env_farm_without_token.returncode == 2
    assert "no API token" in env_farm_without_token.stderr
    assert "EDGEFARM_TOKEN" in env_farm_without_token.stderr


def test_unreachable_server_exits_1(tmp_path):
    result = edgefarm(None, tmp_path, "--url", "http://127.0.0.1:9", "--token", "x", "models", "list")
    assert result.returncode == 1
    assert "http://127.0.0.1:9" in result.stderr


def test_results_on_empty_farm(empty_farm, tmp_path):
    assert as_json(edgefarm(empty_farm, tmp_path, "results", "--json")) == []
    assert as_json(edgefarm(empty_farm, tmp_path, "models", "list", "--json")) == []


# ---------------------------------------------------------------- datasets


def _voc_folder(root: Path) -> Path:
    image_module = pytest.importorskip("PIL.Image")
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    palette = [0, 0, 0, 128, 0, 0] + [0] * (768 - 6)
    for name, colour in (("a", (200, 10, 10)), ("b", (10, 200, 10))):
        image_module.new("RGB", (16, 12), colour).save(root / "JPEGImages" / f"{name}.jpg")
        mask = image_module.new("P", (16, 12), 0)
        mask.putpalette(palette)
        mask.paste(1, (0, 0, 8, 12))
        mask.save(root / "SegmentationClass" / f"{name}.png")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("a\nb\n")
    return root


def test_datasets_push_folder_and_list(cli_farm, tmp_path):
    pytest.importorskip("edgefarm.shared.datasets", reason="shared/layouts.py is not written yet")
    folder = _voc_folder(tmp_path / "voc")
    pushed = as_json(edgefarm(cli_farm, tmp_path, "datasets", "push", str(folder), "--layout", "voc-seg",
                              "--name", "voc-two", "--json"))
    assert pushed["sample_count"] == 2 and pushed["layout"] == "voc-seg"
    human = edgefarm(cli_farm, tmp_path, "datasets", "push", str(folder), "--layout", "voc-seg",
                     "--name", "voc-two")
    assert human.returncode == 0 and "samples: 2" in human.stdout.splitlines()
    listed = as_json(edgefarm(cli_farm, tmp_path, "datasets", "list", "--json"))
    assert "voc-two" in [d["name"] for d in listed]


def test_datasets_push_bad_input_exits_2(cli_farm, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    unknown = edgefarm(cli_farm, tmp_path, "datasets", "push", str(folder), "--layout", "coco",
                       "--name", "x")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
    missing = edgefarm(cli_farm, tmp_path, "datasets", "push", str(tmp_path / "nope"), "--layout",
                       "voc-seg", "--name", "x")
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr


def test_datasets_register(cli_farm, tmp_path):
    registered = as_json(edgefarm(cli_farm, tmp_path, "datasets", "register", "--name", "on-device",
                                  "--layout", "imagenet-val", "--path", "/data/imagenet",
                                  "--sha256", "ab" * 32, "--samples", "50", "--json"))
    assert registered["source"] == "registered" and registered["sample_count"] == 50
    bad = edgefarm(cli_farm, tmp_path, "datasets", "register", "--name", "x", "--layout", "imagenet-val",
                   "--path", "/d", "--sha256", "xyz")
    assert bad.returncode == 2 and "sha256" in bad.stderr
