"""The agent on Python 3.9 (the RB5's Ubuntu 20.04 python3.9), against a server on
the current Python: enroll, lease, benchmark, evaluate, report.

Uses the ``.venv39`` that ``make compat`` builds when a 3.9 interpreter exists."""

import subprocess

import pytest

from edgefarm.shared.formats.tflite_builder import tiny_tflite
from tests.support.agents import AgentProcess, wait_job
from tests.support.servers import DEEPLAB, PROJECT
from tests.support.voc import PHOTO, build_voc_folder, independent_miou, tar_folder

PYTHON39 = PROJECT / ".venv39" / "bin" / "python"

pytestmark = pytest.mark.skipif(not PYTHON39.exists(),
                                reason="no .venv39: run 'make compat' with a Python 3.9 interpreter")


def test_interpreter_is_39():
    out = subprocess.run([str(PYTHON39), "-c", "import sys; print(sys.version_info[:2])"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(3, 9)"


def test_agent_on_python39_serves_runs(farm, tmp_path):
    path = tmp_path / "tiny.tflite"
    path.write_bytes(tiny_tflite())
    tiny = farm.push_model(path, name="tiny")
    agent = AgentProcess(farm, tmp_path / "agent39", name="rb5-like", python=str(PYTHON39)).start()
    try:
        device = farm.user.get(f"/api/v1/devices/{agent.device_id}").json()
        assert device["capabilities"]["python"].startswith("3.9")
        job = farm.submit(models=[tiny["id"]], devices="all", settings={"min_seconds": 0.2})
        final = wait_job(farm, job["id"], timeout=120)
        assert final["state"] == "succeeded", final
        if DEEPLAB.exists() and PHOTO.exists():
            voc = tmp_path / "voc"
            build_voc_folder(voc, DEEPLAB)
            upload = farm.user.post("/api/v1/datasets", files={"file": ("voc.tar", tar_folder(voc))},
                                    data={"name": "voc", "layout": "voc-seg"}).json()
            model = farm.push_model(DEEPLAB)
            job = farm.submit(models=[model["id"]], dataset=upload["id"], devices="all",
                              settings={"threads": 2, "measured_runs": 10, "min_seconds": 0.2})
            final = wait_job(farm, job["id"], timeout=300)
            assert final["state"] == "succeeded", final
            result = farm.user.get(f"/api/v1/results/{final['runs'][0]['result_id']}").json()
            assert result["metrics"]["miou"] == pytest.approx(independent_miou(DEEPLAB, voc)["miou"], abs=1e-6)
    finally:
        agent.stop()
