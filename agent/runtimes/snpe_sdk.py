"""Qualcomm's SNPE / QAIRT SDK on this device: where its command-line tools are,
how to run them, and how to read what they print.

This module owns the SDK discovery (``find_tool``, ``require_tool``, ``tool_env``),
``SDKMissing`` (the one error for an absent SDK tool, used by the runtime and by
``edgefarm.tools.dlc``), ``run_tool`` and the parsers of the tools' text: ``parse_version`` (``snpe-net-run
--version``), ``parse_validator`` (``snpe-platform-validator``),
``parse_dlc_info`` (``snpe-dlc-info``) and ``parse_diagview_text`` /
``parse_diagview_csv`` / ``parse_diagview_layers`` (``snpe-diagview``). They are pure functions of the text
so they are tested without an SDK; ``edgefarm.agent.runtimes.snpe`` drives the tools.

Discovery: ``$SNPE_ROOT/bin/<arch>/`` first (``$SNPE_TARGET_ARCH`` names the
arch folder, as in the SDK's own set-up; otherwise the folder that matches this
machine, e.g. ``x86_64-linux-clang`` or ``aarch64-ubuntu-gcc9.4``, Android and
Windows folders last), then ``$PATH``. With ``SNPE_ROOT`` the matching
``$SNPE_ROOT/lib/<arch>`` is put in front of ``LD_LIBRARY_PATH`` for the tools.
The SDK never comes from PyPI.

What the text looks like (see ``edgefarm.agent.runtimes.snpe`` for the sources):

* ``snpe-net-run --version``: a line ``SNPE v2.10.0.4541``.
* ``snpe-platform-validator --runtime gpu [--testRuntime]``: ``SNPE is supported
  for runtime GPU on the device.`` (or "NOT supported"), and with
  ``--testRuntime`` ``Unit Test on the runtime GPU: Passed.``
* ``snpe-dlc-info -i model.dlc`` (SNPE 2.x, QAIRT): tables headed
  ``| Input Name | Dimensions | Type | Encoding Info |`` and ``| Output Name |
  ...`` with dimensions such as ``1,224,224,3`` and types such as ``Float_32``;
  the same tables in CSV form with ``--save``.
* ``snpe-diagview --input_log SNPEDiag_0.log``: ``Key: value us`` lines. The
  create block has ``Load``, ``Deserialize``, ``Create``, ``Init``, ``De-Init``;
  the execute block (headed "Average SNPE Statistics" in SNPE 2.9, "SNPE Execute
  Statistics (Averaged)" in 2.37) has ``Total Inference Time`` and ``Forward
  Propagate Time`` averaged over the input list. Per-inference values are taken
  from the text when it lists one block per inference, else from the CSV that
  ``--output FILE.csv`` writes (one row per logged event): its column layout is
  not publicly documented, so the CSV reader looks for a statistic name column
  and a value column by their headers.
* Per-layer time (``snpe-net-run --profiling_level detailed``, then
  ``snpe-diagview --input_log SNPEDiag_0.log --csv_format_version 2 --output
  layers.csv``; see ``parse_diagview_layers``). Where the format comes from:
  Qualcomm's own benchmark script ``snpe_bench`` (``benchmarks/SNPE/snpebm/
  snpebm_parser.py`` in the QAIRT SDK) reads the detailed text of
  ``snpe-diagview``: after a "Per-Layer Execution Times" heading ("Layer Times"
  in SNPE 1.x) one line per layer and execution, ``<layer id>: ... : <time>
  <unit> : <runtime>``, the runtime each layer ran on (CPU, GPU, DSP, ...) last;
  published scripts that read the ``--csv_format_version 2`` CSV group its rows
  by the ``Layer Id`` column and average ``Time``, keeping ``Layer Name`` and
  ``Unit of Measurement`` (rows without a layer id are the statistics such as
  "Total Inference Time", named in the message column). Those columns are read
  by their headers; the layer type, runtime and execution index columns are not
  publicly documented, so they are found by the words "type", "runtime" and
  "execution" in their headers when the CSV has them (else the type is unknown,
  the runtime too, and an execution ends where a layer id comes again). Times in
  cycles (the HTP backend's detailed profile) are not times and are left out.
"""

import csv
import io
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from .base import RuntimeUnavailable

NET_RUN = "snpe-net-run"
_LIB_PATH = "LD_LIBRARY_PATH"
_MISSING = ("the SNPE SDK is not installed: set SNPE_ROOT or put {tool} on PATH "
            "(it comes from Qualcomm's SNPE / QAIRT SDK, never from PyPI)")


class SDKMissing(RuntimeUnavailable):
    """An SNPE / QAIRT SDK tool is not on this machine; the message says how to get it."""

    def __init__(self, tool: str) -> None:
        super().__init__(_MISSING.format(tool=tool))
        self.tool = tool


class ToolFailed(RuntimeError):
    """An SDK tool exited with an error; the message carries the end of its output."""


# ---------------------------------------------------------------- discovery


def _arch_rank(name: str, machine: str) -> Tuple[int, str]:
    lowered = name.lower()
    foreign = "android" in lowered or "windows" in lowered or "hexagon" in lowered
    matches = lowered.startswith(machine.lower()) or (machine.startswith("arm") and lowered.startswith("arm"))
    return (0 if matches and not foreign else 1 if not foreign else 2), name


def sdk_arch_dirs(env: Mapping[str, str]) -> List[Path]:
    """``$SNPE_ROOT/bin/<arch>`` folders, best match for this machine first."""
    root = env.get("SNPE_ROOT")
    if not root:
        return []
    bin_root = Path(root) / "bin"
    arch = env.get("SNPE_TARGET_ARCH")
    if arch:
        return [bin_root / arch]
    try:
        folders = [p for p in bin_root.iterdir() if p.is_dir()]
    except OSError:
        return []
    machine = platform.machine() or "x86_64"
    return sorted(folders, key=lambda p: _arch_rank(p.name, machine))


def find_tool(name: str, env: Optional[Mapping[str, str]] = None) -> Optional[Path]:
    """The tool's path under ``$SNPE_ROOT/bin/<arch>`` or on ``$PATH``; None when absent."""
    env = os.environ if env is None else env
    for folder in sdk_arch_dirs(env):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name, path=env.get("PATH"))
    return Path(found) if found else None


def require_tool(name: str, env: Optional[Mapping[str, str]] = None) -> Path:
    path = find_tool(name, env)
    if path is None:
        raise SDKMissing(name)
    return path


def tool_env(tool: Path, env: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment for an SDK tool: ``$SNPE_ROOT/lib/<arch>`` in front of the library path."""
    result = dict(os.environ if env is None else env)
    root = result.get("SNPE_ROOT")
    if root and Path(root) in tool.parents:
        lib = Path(root) / "lib" / tool.parent.name
        if lib.is_dir():
            result[_LIB_PATH] = os.pathsep.join(p for p in (str(lib), result.get(_LIB_PATH, "")) if p)
    return result


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the tool is killed when the agent's run process dies (cancel, timeout)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass


def run_tool(name: str, args: Sequence[str], timeout: Optional[float] = 120,
             cwd: Optional[str] = None) -> str:
    """Run an SDK tool; its stdout (stderr appended). ToolFailed on a non-zero exit."""
    tool = require_tool(name)
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    try:
        done = subprocess.run([str(tool), *args], capture_output=True, text=True, timeout=timeout,
                              env=tool_env(tool), cwd=cwd, preexec_fn=preexec)
    except subprocess.TimeoutExpired as exc:
        raise ToolFailed(f"{name} did not finish within {timeout} s") from exc
    except OSError as exc:
        raise ToolFailed(f"{name} could not be started: {exc}") from exc
    output = (done.stdout or "") + (("\n" + done.stderr) if done.stderr else "")
    if done.returncode != 0:
        tail = " | ".join(line for line in output.strip().splitlines()[-4:] if line.strip())
        raise ToolFailed(f"{name} exited with code {done.returncode}: {tail}")
    return output


# ---------------------------------------------------------------- parsers


def parse_version(text: str) -> Optional[str]:
    """"2.10.0.4541" from a ``SNPE v2.10.0.4541`` line, else None."""
    match = re.search(r"SNPE\s+v?(\d+(?:\.\d+)+\S*)", text)
    return match.group(1) if match else None


def parse_validator(text: str, runtime: str) -> bool:
    """Whether ``snpe-platform-validator`` output says the runtime is usable."""
    name = re.escape(runtime.upper())
    if re.search(rf"Unit Test on the runtime {name}\s*:\s*Fail", text, re.IGNORECASE):
        return False
    if re.search(rf"SNPE is not supported for runtime {name}\b", text, re.IGNORECASE):
        return False
    return bool(re.search(rf"SNPE is supported for runtime {name}\b", text, re.IGNORECASE)
                or re.search(rf"Unit Test on the runtime {name}\s*:\s*Pass", text, re.IGNORECASE))


class DlcTensor(NamedTuple):
    name: str
    shape: Tuple[int, ...]
    type: str  # as printed: Float_32, uFxp_8, ...


def _cells(line: str) -> List[str]:
    if "|" in line:
        return [cell.strip() for cell in line.strip().strip("|").split("|")]
    return [cell.strip() for cell in next(csv.reader([line]))]


def _is_rule(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and set(stripped) <= set("-+|= ")


def parse_dlc_info(text: str) -> Dict[str, List[DlcTensor]]:
    """``{"inputs": [...], "outputs": [...]}`` from the Input/Output Name tables."""
    found: Dict[str, List[DlcTensor]] = {"inputs": [], "outputs": []}
    section = None
    for line in text.splitlines():
        if not line.strip() or _is_rule(line):
            continue
        cells = _cells(line)
        head = cells[0].lower() if cells else ""
        if head in ("input name", "output name"):
            section = "inputs" if head == "input name" else "outputs"
            continue
        if section is None or len(cells) < 2:
            section = None
            continue
        dims = re.findall(r"-?\d+", cells[1])
        if not dims or not re.fullmatch(r"[\s\d,x×\[\]()-]+", cells[1]):
            section = None
            continue
        found[section].append(DlcTensor(cells[0], tuple(int(d) for d in dims),
                                        cells[2] if len(cells) > 2 else "Float_32"))
    return found


class DiagStats(NamedTuple):
    version: Optional[str]
    init_us: Optional[float]
    inference_us: List[float]  # "Total Inference Time", one per entry found
    averaged: bool  # the text says its execute figures are averages


_UNITS = {"us": 1.0, "usec": 1.0, "ms": 1000.0, "msec": 1000.0, "ns": 0.001, "s": 1e6, "sec": 1e6}


def _micros(value: str, unit: str) -> float:
    return float(value) * _UNITS.get(unit.strip().lower(), 1.0)


def parse_diagview_text(text: str) -> DiagStats:
    """Version, Init and every ``Total Inference Time`` of ``snpe-diagview``'s text."""
    version = None
    init_us = None
    inference: List[float] = []
    for line in text.splitlines():
        key, sep, rest = line.strip().partition(":")
        if not sep:
            continue
        key, rest = key.strip(), rest.strip()
        if key == "Software library version":
            version = rest
        match = re.match(r"(-?\d+(?:\.\d+)?)\s*([A-Za-z]*)", rest)
        if match is None:
            continue
        if key == "Init" and init_us is None:
            init_us = _micros(match.group(1), match.group(2) or "us")
        elif key == "Total Inference Time":
            inference.append(_micros(match.group(1), match.group(2) or "us"))
    averaged = bool(re.search(r"Averag", text, re.IGNORECASE))
    return DiagStats(version, init_us, inference, averaged)


def _column(header: Sequence[str], word: str, default: Optional[int]) -> Optional[int]:
    for index, cell in enumerate(header):
        if word in cell.lower():
            return index
    return default


def parse_diagview_csv(text: str) -> DiagStats:
    """Per-event rows of ``snpe-diagview --output FILE.csv``: the rows named
    ``Total Inference Time`` (in file order) and the first ``Init``."""
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        return DiagStats(None, None, [], False)
    header = [cell.strip() for cell in rows[0]]
    name_at = _column(header, "name", 0)
    value_at = _column(header, "value", None)
    unit_at = _column(header, "unit", None)
    init_us, inference = None, []
    for row in rows[1:]:
        cells = [cell.strip() for cell in row]
        if name_at >= len(cells):
            continue
        value = _row_value(cells, name_at, value_at)
        if value is None:
            continue
        unit = cells[unit_at] if unit_at is not None and unit_at < len(cells) else "us"
        if cells[name_at] == "Total Inference Time":
            inference.append(_micros(value, unit))
        elif cells[name_at] == "Init" and init_us is None:
            init_us = _micros(value, unit)
    return DiagStats(None, init_us, inference, False)


def _row_value(cells: Sequence[str], name_at: int, value_at: Optional[int]) -> Optional[str]:
    candidates = [cells[value_at]] if value_at is not None and value_at < len(cells) else cells[name_at + 1:]
    for cell in candidates:
        if re.fullmatch(r"-?\d+(?:\.\d+)?", cell):
            return cell
    return None


class LayerRow(NamedTuple):
    """One layer of one execution in ``snpe-diagview``'s per-layer CSV."""

    layer_id: str
    name: str
    type: Optional[str]
    us: float
    runtime: Optional[str]  # upper case: CPU, GPU, DSP, ... when the CSV says


class DiagLayers(NamedTuple):
    executions: List[List[LayerRow]]  # per execution (input-list line), its layers in order
    inference_us: List[float]  # "Total Inference Time" rows, in file order
    not_time: List[str]  # units of layer rows left out because they are not times (cycles)


def _find(header: Sequence[str], *words: str, exact: bool = False) -> Optional[int]:
    for word in words:
        for index, cell in enumerate(header):
            if (cell == word) if exact else (word in cell):
                return index
    return None


def _cell(cells: Sequence[str], at: Optional[int]) -> str:
    return cells[at] if at is not None and at < len(cells) else ""


def parse_diagview_layers(text: str) -> DiagLayers:
    """The per-layer rows of ``snpe-diagview --csv_format_version 2 --output FILE.csv``
    grouped by execution, and its "Total Inference Time" rows (see the module docstring
    for the columns and where they come from)."""
    rows = [[c.strip() for c in row] for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)]
    if not rows:
        return DiagLayers([], [], [])
    header = [cell.lower() for cell in rows[0]]
    at_id = _find(header, "layer id", "layer_id")
    at_name = _find(header, "layer name", "layer_name")
    at_time = _find(header, "time", exact=True)
    at_time = at_time if at_time is not None else _find(header, "time")
    at_unit, at_type = _find(header, "unit"), _find(header, "layer type", "type")
    at_runtime, at_message = _find(header, "runtime"), _find(header, "message", "name")
    at_execution = _find(header, "execution", "inference")
    if at_time is None or (at_id is None and at_name is None):
        return DiagLayers([], [], [])
    executions: List[List[LayerRow]] = []
    inference: List[float] = []
    not_time: List[str] = []
    current_key, seen = None, set()
    for cells in rows[1:]:
        value, unit = _cell(cells, at_time), _cell(cells, at_unit) or "us"
        if not re.fullmatch(r"-?\d+(?:\.\d+)?", value):
            continue
        layer_id = _cell(cells, at_id) or _cell(cells, at_name)
        if not layer_id:
            if _cell(cells, at_message) == "Total Inference Time" and unit.lower() in _UNITS:
                inference.append(_micros(value, unit))
            continue
        if unit.lower() not in _UNITS:
            if unit not in not_time:
                not_time.append(unit)
            continue
        key = _cell(cells, at_execution) if at_execution is not None else None
        if not executions or (key != current_key if at_execution is not None else layer_id in seen):
            executions.append([])
            current_key, seen = key, set()
        seen.add(layer_id)
        name, kind = _cell(cells, at_name) or layer_id, _cell(cells, at_type) or None
        executions[-1].append(LayerRow(layer_id, name, kind, _micros(value, unit),
                                       _cell(cells, at_runtime).upper() or None))
    return DiagLayers(executions, inference, not_time)
