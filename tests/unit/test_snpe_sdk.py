"""edgefarm.agent.runtimes.snpe_sdk: SDK discovery and the parsers of the SNPE tools' text,
on text written here in the documented forms (no SDK needed)."""

import os
from pathlib import Path

import pytest

from edgefarm.agent.runtimes.snpe import result_paths
from edgefarm.agent.runtimes.snpe_sdk import (
    find_tool,
    parse_diagview_csv,
    parse_diagview_layers,
    parse_diagview_text,
    parse_dlc_info,
    parse_validator,
    parse_version,
    sdk_arch_dirs,
    tool_env,
)

# The text form of snpe-diagview in SNPE 2.x (figures made up for the test).
DIAGVIEW_2X = """\
Log File Created: Mon Jan  6 10:00:00 2025
Time Scale: 1e-06
Epoch Timestamp: 1736157600000000 Steady Clock Timestamp: 1000000
Software library version: 2.37.0.250724
------------------------------------------------------------

SNPE Create Statistics:
----------------------------------------
  Load: 500 us
  Deserialize: 250 us
  Create: 2700 us

  Init: 4100 us
  De-Init: 410 us

  Create Network(s): 2000 us
  RPC Init Time: 0
  Snpe Accelerator Init Time: 0
  Accelerator Init Time: 0

SNPE Execute Statistics (Averaged):
----------------------------------------
  Total Inference Time: 812 us
  Forward Propagate Time: 790 us
  RPC Execute Time: 0
"""

# The older layout (SNPE 2.9): "Average SNPE Statistics", units "us" or "NONE".
DIAGVIEW_29 = """\
Software library version: 2.9.0.4462

Dnn Runtime Load/Deserialize/Create/De-Init Statistics:
--------------------------------------------------
Load: 150 us
Init: 48000 us
RPC Init Time: 0 NONE

Average SNPE Statistics:
------------------------------
Total Inference Time: 26000 us
Forward Propagate Time: 25990 us
"""


def test_version_line():
    assert parse_version("SNPE v2.10.0.4541\n") == "2.10.0.4541"
    assert parse_version("usage: ...\nSNPE v1.68.0.3932") == "1.68.0.3932"
    assert parse_version("no version here") is None


def test_validator_verdicts():
    text = ("SNPE is supported for runtime GPU on the device.\n"
            "SNPE is NOT supported for runtime DSP on the device.\n")
    assert parse_validator(text, "gpu") is True
    assert parse_validator(text, "dsp") is False
    assert parse_validator(text, "aip") is False
    tested = "Unit Test on the runtime DSP: Passed.\n"
    assert parse_validator(tested, "dsp") is True
    failed = "Unit Test on the runtime GPU: Failed.\nSNPE is supported for runtime GPU on the device.\n"
    assert parse_validator(failed, "gpu") is False


def test_dlc_info_pipe_tables():
    text = """\
DLC info of: model.dlc
-------------------------------------------------------------------------------
| Id | Name | Type | Inputs | Outputs | Out Dims | Runtimes | Parameters |
-------------------------------------------------------------------------------
| 0 | conv | Conv2d | input:0 | c:0 | 1x112x112x32 | A D G C | |
-------------------------------------------------------------------------------
| Input Name | Dimensions | Type | Encoding Info |
-------------------------------------------------------------------------------
| input:0 | 1,224,224,3 | Float_32 | No encoding info for this tensor |
-------------------------------------------------------------------------------
| Output Name | Dimensions | Type | Encoding Info |
-------------------------------------------------------------------------------
| MobilenetV1/Predictions/Reshape_1:0 | 1,1001 | uFxp_8 | bitwidth 8, min -1, max 1 |
| aux | 1,10 | Float_32 | No encoding info for this tensor |
-------------------------------------------------------------------------------
Total parameters: 4231976
"""
    info = parse_dlc_info(text)
    assert [(t.name, t.shape, t.type) for t in info["inputs"]] == [("input:0", (1, 224, 224, 3), "Float_32")]
    assert [(t.name, t.shape) for t in info["outputs"]] == [
        ("MobilenetV1/Predictions/Reshape_1:0", (1, 1001)), ("aux", (1, 10))]


def test_dlc_info_csv_form():
    text = 'Input Name,Dimensions,Type\ninput0,"1,3,64,64",Float_32\nOutput Name,Dimensions,Type\nout,"1,10",Float_32\n'
    info = parse_dlc_info(text)
    assert info["inputs"][0].shape == (1, 3, 64, 64) and info["outputs"][0].name == "out"


def test_diagview_text_forms():
    stats = parse_diagview_text(DIAGVIEW_2X)
    assert stats.version == "2.37.0.250724"
    assert stats.init_us == 4100 and stats.inference_us == [812] and stats.averaged
    old = parse_diagview_text(DIAGVIEW_29)
    assert old.init_us == 48000 and old.inference_us == [26000] and old.averaged


def test_diagview_text_with_one_block_per_inference():
    text = "Init: 10 us\n" + "".join(f"Total Inference Time: {v} us\n" for v in (5, 7, 6))
    stats = parse_diagview_text(text)
    assert stats.inference_us == [5, 7, 6] and not stats.averaged


def test_diagview_csv_rows_by_header():
    text = ("Name,Value,Unit,Execution\nLoad,3,us,\nInit,120,us,\n"
            "Total Inference Time,11,us,0\nForward Propagate Time,10,us,0\n"
            "Total Inference Time,1.5,ms,1\n")
    stats = parse_diagview_csv(text)
    assert stats.init_us == 120 and stats.inference_us == [11, 1500]
    # Without value/unit headers: the first number after the name, in microseconds.
    bare = parse_diagview_csv("event,t\nTotal Inference Time,42\n")
    assert bare.inference_us == [42]


def test_tools_are_found_under_snpe_root_for_this_machine(tmp_path, monkeypatch):
    import platform

    for arch in ("aarch64-android", f"{platform.machine()}-linux-clang"):
        folder = tmp_path / "bin" / arch
        folder.mkdir(parents=True)
        tool = folder / "snpe-net-run"
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    (tmp_path / "lib" / f"{platform.machine()}-linux-clang").mkdir(parents=True)
    env = {"SNPE_ROOT": str(tmp_path), "PATH": ""}
    assert sdk_arch_dirs(env)[0].name == f"{platform.machine()}-linux-clang"
    found = find_tool("snpe-net-run", env)
    assert found == tmp_path / "bin" / f"{platform.machine()}-linux-clang" / "snpe-net-run"
    assert find_tool("snpe-net-run", dict(env, SNPE_TARGET_ARCH="aarch64-android")).parent.name == "aarch64-android"
    assert find_tool("snpe-dlc-info", env) is None
    library = tool_env(found, dict(env, LD_LIBRARY_PATH="/usr/lib"))["LD_LIBRARY_PATH"]
    assert library.split(os.pathsep) == [str(tmp_path / "lib" / f"{platform.machine()}-linux-clang"), "/usr/lib"]


def test_missing_sdk_is_a_clear_runtime_unavailable(monkeypatch):
    from edgefarm.agent.runtimes import RuntimeUnavailable
    from edgefarm.agent.runtimes.snpe_sdk import require_tool

    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("SNPE_ROOT", raising=False)
    with pytest.raises(RuntimeUnavailable, match="the SNPE SDK is not installed: set SNPE_ROOT or put "
                                                 "snpe-net-run on PATH"):
        require_tool("snpe-net-run")


def test_result_paths_cover_snpe_2_and_1_naming():
    paths = result_paths(Path("out"), 3, "InceptionV3/Predictions/Reshape_1:0")
    assert paths[0] == Path("out/Result_3/InceptionV3/Predictions/Reshape_1:0.raw")
    assert paths[1] == Path("out/Result_3/InceptionV3_Predictions_Reshape_1_0.raw")


# snpe-diagview --csv_format_version 2 --output layers.csv after --profiling_level detailed:
# the Message / Layer Id / Layer Name / Time / Unit of Measurement columns published
# scripts read, with type, runtime and execution columns (figures made up for the test).
DIAGVIEW_LAYERS_CSV = """\
Message,Layer Id,Layer Name,Layer Type,Time,Unit of Measurement,Runtime,Execution
Load,,,,500,USEC,,
Init,,,,4100,USEC,,
Layer Time,0,conv1,Conv2d,1200,USEC,GPU,0
Layer Time,1,relu1,Neuron,100,USEC,gpu,0
Layer Time,2,fc,FullyConnected,0.7,MSEC,CPU,0
Total Inference Time,,,,2100,USEC,GPU,0
Forward Propagate Time,,,,2050,USEC,GPU,0
Layer Time,0,conv1,Conv2d,1000,USEC,GPU,1
Layer Time,1,relu1,Neuron,80,USEC,GPU,1
Layer Time,2,fc,FullyConnected,600,USEC,CPU,1
Total Inference Time,,,,1800,USEC,GPU,1
"""


def test_diagview_layers_per_execution_with_units_and_runtimes():
    found = parse_diagview_layers(DIAGVIEW_LAYERS_CSV)
    assert len(found.executions) == 2 and found.inference_us == [2100.0, 1800.0] and found.not_time == []
    first = found.executions[0]
    assert [(r.layer_id, r.name, r.type, r.runtime) for r in first] == [
        ("0", "conv1", "Conv2d", "GPU"), ("1", "relu1", "Neuron", "GPU"), ("2", "fc", "FullyConnected", "CPU")]
    assert [r.us for r in first] == [1200.0, 100.0, 700.0]  # MSEC read as ms
    assert [r.us for r in found.executions[1]] == [1000.0, 80.0, 600.0]


def test_diagview_layers_without_execution_type_or_runtime_columns():
    text = ("Message,Layer Id,Layer Name,Time,Unit of Measurement\n"
            "Layer Time,0,conv1,10,USEC\nLayer Time,1,fc,5,USEC\nTotal Inference Time,,,20,USEC\n"
            "Layer Time,0,conv1,12,USEC\nLayer Time,1,fc,6,USEC\nTotal Inference Time,,,21,USEC\n")
    found = parse_diagview_layers(text)
    assert [[r.us for r in e] for e in found.executions] == [[10.0, 5.0], [12.0, 6.0]]  # split where id 0 repeats
    assert {r.type for e in found.executions for r in e} == {None}
    assert {r.runtime for e in found.executions for r in e} == {None}
    assert found.inference_us == [20.0, 21.0]


def test_diagview_layers_in_cycles_or_absent_are_no_layer_times():
    cycles = "Message,Layer Id,Layer Name,Time,Unit of Measurement\nLayer Time,0,conv1,123456,CYCLES\n"
    assert parse_diagview_layers(cycles).executions == [] and parse_diagview_layers(cycles).not_time == ["CYCLES"]
    assert parse_diagview_layers("Name,Value,Unit,Execution\nInit,4100,us,\n").executions == []
    assert parse_diagview_layers("").executions == []


def test_snpe_profile_without_layer_rows_says_why_and_keeps_the_unprofiled_time():
    from edgefarm.agent.layers import PROFILERS
    from edgefarm.agent.runtimes.base import BatchRun
    from edgefarm.agent.runtimes.snpe_sdk import DiagLayers

    class NoLayers:
        pending = [object()]

        def run_batch(self, batch, keep_outputs=True, profiling_level=None):
            assert profiling_level == "basic" and len(batch) == 4 and not keep_outputs
            return BatchRun([], [9.0, 2.0, 4.0, 3.0])

        def layer_batch(self, count):
            return DiagLayers([], [], ["CYCLES"])

    profile = PROFILERS["snpe"](NoLayers(), Path("m.dlc"), 3)
    assert profile.layers == [] and profile.e2e_ms == 3.0  # median, the warm run left out
    assert "no per-layer rows" in profile.not_available and "CYCLES" in profile.not_available
