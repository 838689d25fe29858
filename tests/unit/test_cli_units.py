"""The CLI's pure parts: configuration precedence and the TOML fallback,
argument parsing, local validation (selectors, metadata, job bodies) and its
exit codes, value formatting, the exit codes of the SDK's errors (on an
``httpx.MockTransport``), and the wait loop with a fake clock."""

import argparse
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from edgefarm.cli.commands.jobs import build_job
from edgefarm.cli.commands.models import build_meta, float_list, read_labels
from edgefarm.cli.commands.results import cell_text, format_accuracy
from edgefarm.cli.config import Config, parse_simple_toml, read_config_file, resolve_config
from edgefarm.cli.errors import EXIT_FAILURE, EXIT_USAGE, CliError, from_farm_error
from edgefarm.cli.main import build_parser, main
from edgefarm.cli.output import format_bytes, format_shape, format_tensor, print_fields, tensor_lines
from edgefarm.cli.waiting import LineDisplay, counts_text, describe_progress, run_counts, wait_for_job
from edgefarm.shared.client import FarmClient, FarmError
from edgefarm.shared.contract.rules import headline_metric
from edgefarm.shared.contract.schemas import CompareCell, JobOut, TensorSpec
from tests.support.clock import FakeClock

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


# ---------------------------------------------------------------- configuration


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cli.toml"
    path.write_text(text)
    return path


def test_flags_beat_environment_beat_file(tmp_path):
    path = write_config(tmp_path, 'url = "http://file:1"\ntoken = "file-token"\n')
    env = {"EDGEFARM_URL": "http://env:2", "EDGEFARM_TOKEN": "env-token"}
    assert resolve_config(None, None, {}, path) == Config("http://file:1", "file-token")
    assert resolve_config(None, None, env, path) == Config("http://env:2", "env-token")
    assert resolve_config("http://flag:3/", "flag-token", env, path) == Config("http://flag:3", "flag-token")
    mixed = resolve_config(None, None, {"EDGEFARM_TOKEN": "env-token"}, path)
    assert mixed == Config("http://file:1", "env-token")


def test_config_path_follows_xdg(tmp_path):
    folder = tmp_path / "edgefarm"
    folder.mkdir()
    (folder / "cli.toml").write_text("url = 'http://xdg:4'\ntoken = 'xdg-token'\n")
    config = resolve_config(environ={"XDG_CONFIG_HOME": str(tmp_path)})
    assert config == Config("http://xdg:4", "xdg-token")


def test_missing_url_or_token_is_a_usage_error(tmp_path):
    absent = tmp_path / "absent.toml"
    with pytest.raises(CliError) as url_error:
        resolve_config(None, "t", {}, absent)
    assert url_error.value.code == EXIT_USAGE and "EDGEFARM_URL" in str(url_error.value)
    with pytest.raises(CliError) as token_error:
        resolve_config("http://x", None, {}, absent)
    assert "no API token" in str(token_error.value) and str(absent) in str(token_error.value)
    with pytest.raises(CliError, match="http://"):
        resolve_config("ftp://x", "t", {}, absent)


def test_simple_toml_parser():
    text = (
        '# EdgeFarm\nurl = "http://farm:8000"  # lab server\n'
        "token='lit\\eral'\nescaped = \"a\\\"b\\\\c\"\n\n[other]\nurl = \"ignored\"\n"
    )
    assert parse_simple_toml(text) == {
        "url": "http://farm:8000", "token": "lit\\eral", "escaped": 'a"b\\c',
    }
    for bad in ("url = http://bare", 'url = "open', "just words", 'url = "x" trailing'):
        with pytest.raises(ValueError):
            parse_simple_toml(bad)


def test_bad_config_file_is_a_usage_error(tmp_path):
    path = write_config(tmp_path, 'url = "unterminated\n')
    with pytest.raises(CliError, match="not valid TOML"):
        read_config_file(path)


# ---------------------------------------------------------------- argument parsing


def test_global_options_before_or_after_the_subcommand():
    parser = build_parser()
    before = parser.parse_args(["--url", "http://a", "--json", "models", "list"])
    after = parser.parse_args(["models", "list", "--url", "http://a", "--json"])
    for args in (before, after):
        assert args.url == "http://a" and args.json is True
    plain = parser.parse_args(["models", "list"])
    assert plain.json is False and plain.url is None and plain.token is None


def test_submit_arguments():
    args = build_parser().parse_args([
        "submit", "--model", "a", "--model", "b", "--devices", "platform=rpi3,label=lab2",
        "--runs", "20", "--threads", "4", "--require-device", "--wait",
    ])
    assert args.models == ["a", "b"] and args.runs == 20 and args.require_device and args.wait
    body = build_job(args)
    assert body["settings"] == {"threads": 4, "measured_runs": 20}
    assert body["require_device"] is True and body["devices"] == "platform=rpi3,label=lab2"
    assert "priority" not in body and "dataset" not in body


def test_submit_statistics_and_profile_settings():
    args = build_parser().parse_args([
        "submit", "--model", "a", "--devices", "all", "--target-ci", "0.01", "--max-seconds", "30",
        "--rerun-throttled", "--profile",
    ])
    assert build_job(args)["settings"] == {"target_ci": 0.01, "max_seconds": 30.0,
                                           "rerun_throttled": True, "profile": True}
    plain = build_job(build_parser().parse_args(["submit", "--model", "a", "--devices", "all"]))
    assert plain["settings"] == {}
    for bad in ("0", "1.5"):
        with pytest.raises(CliError, match="target_ci") as exc:
            build_job(build_parser().parse_args(["submit", "--model", "a", "--devices", "all",
                                                 "--target-ci", bad]))
        assert exc.value.code == EXIT_USAGE


@pytest.mark.parametrize("argv", [
    [],
    ["models"],
    ["models", "push"],
    ["datasets", "push", "x.zip", "--layout", "coco", "--name", "n"],
    ["submit", "--devices", "all"],
    ["results", "--json", "--csv"],
    ["jobs", "wait", "seven"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_bad_selector_exits_2_before_any_request(monkeypatch, capsys):
    monkeypatch.setenv("EDGEFARM_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("EDGEFARM_TOKEN", "t")
    code = main(["submit", "--model", "m", "--devices", "colour=red"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("edgefarm: error: bad device selector") and "colour" in err
    assert len(err.strip().splitlines()) == 1


def test_missing_file_is_reported_before_the_configuration(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("EDGEFARM_URL", raising=False)
    monkeypatch.delenv("EDGEFARM_TOKEN", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert main(["models", "push", str(tmp_path / "absent.tflite")]) == 2
    assert "no such model file" in capsys.readouterr().err
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    assert main(["models", "push", str(model)]) == 2
    assert "no server URL" in capsys.readouterr().err


def test_invalid_job_values_are_usage_errors():
    args = build_parser().parse_args(["submit", "--model", "m", "--devices", "all", "--priority", "500"])
    with pytest.raises(CliError, match="priority") as exc:
        build_job(args)
    assert exc.value.code == EXIT_USAGE


# ---------------------------------------------------------------- model metadata


def push_args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["models", "push", "m.tflite", *extra])


def test_meta_carries_only_what_was_given(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("background\naeroplane\n\n")
    meta = build_meta(push_args(
        "--name", "dl", "--family", "deeplab", "--quantization", "int8", "--sparsity", "0.5",
        "--variant-label", "pruned", "--parent", "A" * 64, "--labels", str(labels),
        "--mean", "127.5,127.5,127.5", "--color", "bgr",
    ))
    assert meta["name"] == "dl" and meta["family"] == "deeplab"
    assert meta["variant"] == {"quantization": "int8", "sparsity": 0.5, "label": "pruned"}
    assert meta["lineage"]["parent_sha256"] == "a" * 64
    assert meta["labels"] == ["background", "aeroplane"]
    assert meta["preprocessing"]["mean"] == [127.5] * 3 and meta["preprocessing"]["color"] == "bgr"
    assert build_meta(push_args()) == {"variant": {"quantization": "none"}}


def test_meta_errors(tmp_path):
    with pytest.raises(CliError, match="sha256"):
        build_meta(push_args("--parent", "abc"))
    with pytest.raises(CliError, match="sparsity"):
        build_meta(push_args("--sparsity", "1.5"))
    with pytest.raises(CliError, match="no such labels file"):
        read_labels(tmp_path / "absent.txt")
    with pytest.raises(argparse.ArgumentTypeError):
        float_list("1,two,3")


# ---------------------------------------------------------------- formatting


def test_shapes_and_tensors():
    spec = TensorSpec(name="sub_7", shape=[1, 513, 513, 3], dtype="float32")
    out = TensorSpec(name="ResizeBilinear_2", shape=[1, 513, 513, 21], dtype="float32")
    assert format_shape([1, 513, 513, 3]) == "1x513x513x3"
    assert format_shape([]) == "scalar"
    assert format_tensor(spec) == "sub_7 1x513x513x3 float32"
    assert tensor_lines([spec], [out]) == [("inputs", "sub_7 1x513x513x3 float32"),
                                           ("outputs", "ResizeBilinear_2 1x513x513x21 float32")]


def test_field_lines_keep_the_tensor_form(capsys):
    spec = TensorSpec(name="sub_7", shape=[1, 513, 513, 3], dtype="float32")
    out = TensorSpec(name="ResizeBilinear_2", shape=[1, 513, 513, 21], dtype="float32")
    print_fields([("sha256", "ab"), ("task", None)] + tensor_lines([spec], [out]))
    assert capsys.readouterr().out.splitlines() == [
        "sha256:  ab", "task:    -",
        "inputs:  sub_7 1x513x513x3 float32", "outputs: ResizeBilinear_2 1x513x513x21 float32",
    ]


def test_sizes_accuracy_and_compare_cells():
    assert format_bytes(900) == "900 B" and format_bytes(2789652) == "2.7 MiB"
    assert headline_metric({"miou": 0.7, "top1": 0.9}) == (0.7, "miou")
    assert format_accuracy(0.7123, "miou") == "71.23% mIoU"
    cell = CompareCell(result_id=1, model_id=2, device_id=3, accuracy=0.89, accuracy_metric="top1",
                       p50_ms=4.0, model_size_bytes=1024, delta_accuracy=-0.01, latency_ratio=0.4,
                       size_ratio=0.25, pareto=True)
    text = cell_text(cell, is_base=False)
    assert text.splitlines()[0] == "* 89.00% top-1 (-1.00 pt)"
    assert "(0.40x)" in text and "1.0 KiB (0.25x)" in text
    assert "pt" not in cell_text(cell, is_base=True) and cell_text(None, False) == "-"


# ---------------------------------------------------------------- client errors -> exit codes


def client_answering(status: int, body=None, text: str = "") -> FarmClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if body is not None:
            return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})
        return httpx.Response(status, text=text)

    return FarmClient("http://farm:8000", "t", transport=httpx.MockTransport(handler))


def cli_failure(call) -> CliError:
    """What ``edgefarm`` prints and exits with when the SDK call fails."""
    with pytest.raises(FarmError) as info:
        call()
    return from_farm_error(info.value)


def test_4xx_is_a_usage_error_with_title_and_detail():
    problem = {"title": "Not a model file", "status": 415, "detail": "neither TFLite nor ONNX"}
    error = cli_failure(client_answering(415, problem).list_models)
    assert error.code == EXIT_USAGE
    assert str(error) == "Not a model file: neither TFLite nor ONNX"
    throttled = cli_failure(client_answering(429, {"title": "Too many requests", "status": 429}).list_jobs)
    assert throttled.code == EXIT_USAGE and str(throttled) == "Too many requests"


def test_5xx_and_network_failures_exit_1():
    server_error = cli_failure(client_answering(503, text="upstream down").list_devices)
    assert server_error.code == EXIT_FAILURE and "farm:8000" in str(server_error)
    assert str(server_error) == "server error at http://farm:8000: HTTP 503 Service Unavailable: upstream down"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = FarmClient("http://farm:8000", "t", transport=httpx.MockTransport(refuse))
    network = cli_failure(client.list_jobs)
    assert network.code == EXIT_FAILURE
    assert "cannot reach the EdgeFarm server at http://farm:8000" in str(network)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    late = cli_failure(FarmClient("http://farm:8000", "t", transport=httpx.MockTransport(slow)).list_jobs)
    assert late.code == EXIT_FAILURE
    assert str(late) == "the EdgeFarm server at http://farm:8000 did not answer in time (timed out)"


def test_unreadable_answer_exits_1():
    client = FarmClient("http://farm:8000", "t",
                        transport=httpx.MockTransport(lambda request: httpx.Response(200, text="<html>")))
    error = cli_failure(client.list_devices)
    assert error.code == EXIT_FAILURE and "unexpected answer from http://farm:8000" in str(error)


# ---------------------------------------------------------------- waiting


def job(state: str, **counts: int) -> JobOut:
    return JobOut(id=4, state=state, task="latency", models=[1], settings={}, devices="all",
                  priority=0, timeout_seconds=60, max_attempts=3, created_at=NOW, counts=counts)


class FakeJobs:
    def __init__(self, *states: JobOut):
        self.states = list(states)

    def get_job(self, job_id: int) -> JobOut:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]


def test_wait_ends_with_the_job(capsys):
    clock = FakeClock()
    fake = FakeJobs(job("queued", queued=2), job("running", running=1, succeeded=1),
                    job("succeeded", succeeded=2))
    final, ended = wait_for_job(fake, 4, timeout=None, clock=clock, sleep=clock.sleep)
    assert ended and final.state == "succeeded" and clock.now == 2.0
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["job 4 queued: 0/2 runs done (queued 2)",
                     "job 4 running: 1/2 runs done (running 1, succeeded 1)",
                     "job 4 succeeded: 2/2 runs done (succeeded 2)"]


def test_wait_times_out():
    clock = FakeClock()
    final, ended = wait_for_job(FakeJobs(job("waiting")), 4, timeout=2.5, clock=clock, sleep=clock.sleep)
    assert not ended and final.state == "waiting" and clock.now == pytest.approx(2.5)


def test_progress_text_and_line_display(capsys):
    assert run_counts(job("running", failed=1, lost=1, running=2)) == (2, 4)
    assert counts_text({"succeeded": 1, "queued": 3, "zombie": 1}) == "queued 3, succeeded 1, zombie 1"
    assert describe_progress(job("waiting")) == "job 4 waiting: 0/0 runs done"
    display = LineDisplay()
    for state in (job("queued", queued=1), job("queued", queued=1), job("running", running=1)):
        display.update(state)
    assert len(capsys.readouterr().err.splitlines()) == 2


def test_results_table_shows_output_agreement():
    from edgefarm.cli.commands.results import format_agreement
    from edgefarm.shared.contract.schemas import Agreement

    lossy = Agreement(psnr_db=60.2, top1_agreement=0.98,
                      outputs={"o": {"max_abs_error": 0.01, "mean_abs_error": 0.001, "psnr_db": 60.2}})
    assert format_agreement(lossy) == "60.2 dB, top-1 98.00%"
    same = Agreement(outputs={"o": {"max_abs_error": 0, "mean_abs_error": 0, "identical": True}})
    assert format_agreement(same) == "identical"
    assert format_agreement(Agreement(error="reference runtime missing")) == "n/a"
    assert format_agreement(None) is None
