"""The regression watch's CLI input checks (no server needed: they refuse before
any request): the gate needs --wait, runtime options are KEY=VALUE, a series is
named in full."""

import pytest

from edgefarm.cli.commands.jobs import runtime_options
from edgefarm.cli.errors import EXIT_FAILURE, EXIT_REGRESSION, EXIT_TIMEOUT, EXIT_USAGE
from edgefarm.cli.main import main


def test_the_regression_exit_code_differs_from_the_others():
    assert EXIT_REGRESSION not in (0, EXIT_FAILURE, EXIT_USAGE, EXIT_TIMEOUT)


def test_fail_on_regression_needs_wait(capsys):
    assert main(["submit", "--model", "m", "--devices", "all", "--fail-on-regression",
                 "--url", "http://127.0.0.1:9", "--token", "ef_1_x"]) == EXIT_USAGE
    assert "--fail-on-regression needs --wait" in capsys.readouterr().err


def test_runtime_options():
    assert runtime_options(["xnnpack=false", "delegate=/opt/qnn.so", "n=3"]) == {
        "xnnpack": False, "delegate": "/opt/qnn.so", "n": 3}
    assert main(["submit", "--model", "m", "--devices", "all", "--option", "novalue",
                 "--url", "http://127.0.0.1:9", "--token", "ef_1_x"]) == EXIT_USAGE


@pytest.mark.parametrize("args", [["history", "--family", "f"], ["baseline", "set", "--family", "f"]])
def test_a_series_is_named_in_full(args, capsys):
    assert main(args + ["--url", "http://127.0.0.1:9", "--token", "ef_1_x"]) == EXIT_USAGE
    assert "--variant" in capsys.readouterr().err
