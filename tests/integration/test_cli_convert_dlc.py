"""``edgefarm tools convert --to dlc``: with the stand-in SNPE SDK on PATH it calls the
SDK's converter; without an SDK it says so and exits 2."""

import os
import subprocess
import sys

from edgefarm.shared.formats import detect_format
from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.support.servers import PROJECT

STANDIN = PROJECT / "tests" / "snpe_standin" / "bin"


def convert(*args, path_prefix=None):
    env = dict(os.environ)
    env.pop("SNPE_ROOT", None)
    env["PATH"] = (f"{path_prefix}:" if path_prefix else "") + "/usr/bin:/bin"
    return subprocess.run([sys.executable, "-m", "edgefarm.cli.main", "tools", "convert", *args], cwd=PROJECT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_without_the_sdk_it_says_so(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(tiny_tflite())
    result = convert(str(model), "--to", "dlc")
    assert result.returncode == 2
    assert "SNPE SDK is not installed" in result.stderr
    assert not (tmp_path / "m.dlc").exists()


def test_with_the_standin_sdk_it_writes_a_dlc(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(tiny_tflite())
    result = convert(str(model), "--to", "dlc", "--json", path_prefix=STANDIN)
    assert result.returncode == 0, result.stderr
    assert detect_format(tmp_path / "m.dlc") == "dlc"
