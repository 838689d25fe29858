"""The SNPE runtime: a ``.dlc`` model run by the SNPE / QAIRT SDK's own tools on
the device, a whole batch per ``snpe-net-run`` process.

Interface followed (the command lines and files of SNPE 2.x / QAIRT 2.x, which
keep SNPE 1.x's flags; sources: the SDK reference guide's Tools page for QAIRT
2.39, its "Running the Inception v3 model" tutorial, the SDK's ``snpe_bench``
scripts, which read ``SNPEDiag_0.log`` through ``snpe-diagview`` and the model
through ``snpe-dlc-info``, and published ``snpe-diagview`` output of SNPE 2.9
and 2.37):

* version: ``snpe-net-run --version`` ("SNPE v2.x.y.z");
* accelerators: ``cpu`` always (the SNPE CPU runtime), plus each of ``gpu``,
  ``dsp`` and ``aip`` that ``snpe-platform-validator --runtime <rt>`` (with
  ``--testRuntime`` when the option ``validator_test`` is true) says is supported;
* tensors: ``snpe-dlc-info -i model.dlc`` (Input/Output Name tables);
* inference: ``snpe-net-run --container model.dlc --input_list list.txt
  --output_dir out --perf_profile <profile> --profiling_level basic`` plus
  ``--use_gpu`` / ``--use_dsp`` / ``--use_aip`` for those accelerators. Each
  input is a raw float32 file in the layout the DLC declares (NHWC, SNPE's
  layout, for image models); the input list has one line per inference (a path,
  or ``name:=path`` pairs for several inputs). Outputs are read back from
  ``out/Result_<n>/<output name>.raw`` (float32; a "/" in a tensor name is a
  sub-folder, as in SNPE 2.x; SNPE 1.x's names with "/" and ":" turned into "_"
  are tried too);
* per-layer time (``layer_batch``, for ``edgefarm.agent.layers``): the same
  command with ``--profiling_level detailed``, then ``snpe-diagview
  --csv_format_version 2 --output layers.csv`` (``snpe_sdk.parse_diagview_layers``
  says which columns and where that format comes from);
* timing (``timing = "batch"``): never process wall time (which is only reported, as
  ``process_wall_seconds``). ``snpe-net-run`` writes ``SNPEDiag_0.log`` in
  the output folder; ``snpe-diagview --input_log`` reads it: per-inference
  "Total Inference Time" values (see ``snpe_sdk`` for the text and CSV forms),
  and "Init" as the init time. When the tools give only an average, every
  inference is reported at that average and the result says so.

Options (``runtime_options.snpe`` in the agent config or the job's
``settings.options``): ``perf_profile`` (default "high_performance"),
``profiling_level`` ("basic"), ``extra_args`` (more snpe-net-run flags),
``validator_test`` (false), ``work_dir`` (where batches are written; default
the system temporary folder), ``keep_work_dir`` (false), ``timeout_seconds``.
"""

import os
import re
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from edgefarm.shared.contract.rules import RUNTIME_FORMATS

from ..clock import Stopwatch
from .base import BatchRun, LoadOptions, ModelLoadError, Runtime, RuntimeUnavailable, TensorInfo
from .snpe_sdk import (
    NET_RUN,
    DiagLayers,
    DiagStats,
    ToolFailed,
    find_tool,
    parse_diagview_csv,
    parse_diagview_layers,
    parse_diagview_text,
    parse_dlc_info,
    parse_validator,
    parse_version,
    require_tool,
    run_tool,
)

DEFAULT_PERF_PROFILE = "high_performance"
ACCELERATOR_FLAGS = {"cpu": [], "gpu": ["--use_gpu"], "dsp": ["--use_dsp"], "aip": ["--use_aip"]}
_VALIDATED = ("gpu", "dsp", "aip")


@lru_cache(maxsize=8)
def _version(tool: str) -> str:
    try:
        text = run_tool(NET_RUN, ["--version"], timeout=60)
    except ToolFailed as exc:
        raise RuntimeUnavailable(f"{tool} does not run here: {exc}") from exc
    version = parse_version(text)
    if version is None:
        raise RuntimeUnavailable(f"{tool} --version printed no SNPE version: {text.strip()[:200]!r}")
    return version


@lru_cache(maxsize=8)
def _validated(tool: str, test_runtime: bool) -> tuple:
    found = ["cpu"]
    for runtime in _VALIDATED:
        args = ["--runtime", runtime] + (["--testRuntime"] if test_runtime else [])
        try:
            text = run_tool("snpe-platform-validator", args, timeout=120)
        except ToolFailed as exc:
            text = str(exc)
        if parse_validator(text, runtime):
            found.append(runtime)
    return tuple(found)


def _layout(shape: Sequence[int]) -> str:
    if len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3):
        return "nchw"
    return "nhwc"


def result_paths(out_dir: Path, index: int, name: str) -> List[Path]:
    """Where ``snpe-net-run`` may have written output ``name`` of inference ``index``."""
    folder = out_dir / f"Result_{index}"
    flat = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return [folder / f"{name}.raw", folder / f"{flat}.raw"]


class SNPERuntime(Runtime):
    name = "snpe"
    layout = "nhwc"
    formats = RUNTIME_FORMATS["snpe"]
    timing = "batch"

    def __init__(self) -> None:
        self._model: Optional[Path] = None
        self._flags: List[str] = []
        self._settings: Dict[str, Any] = {}
        self._inputs: List[TensorInfo] = []
        self._outputs: List[TensorInfo] = []
        self._pending: List[Any] = []
        self._last: List[Any] = []
        self._native_types: Dict[str, str] = {}

    @classmethod
    def version(cls) -> Optional[str]:
        return "snpe " + _version(str(require_tool(NET_RUN)))

    @classmethod
    def accelerators(cls, options: Optional[Dict[str, Any]] = None) -> List[str]:
        tool = require_tool(NET_RUN)
        if find_tool("snpe-platform-validator") is None:
            return ["cpu"]
        return list(_validated(str(tool), bool((options or {}).get("validator_test"))))

    def load(self, model_path: Path, options: LoadOptions) -> None:
        require_tool(NET_RUN)
        if options.accelerator not in ACCELERATOR_FLAGS:
            raise RuntimeUnavailable(f"the snpe runtime has no accelerator {options.accelerator!r} "
                                     f"(it knows {', '.join(ACCELERATOR_FLAGS)})")
        model_path = Path(model_path)
        if not model_path.is_file():
            raise ModelLoadError(f"cannot load model: {model_path} is not a file")
        try:
            info = parse_dlc_info(run_tool("snpe-dlc-info", ["-i", str(model_path)]))
        except ToolFailed as exc:
            raise ModelLoadError(f"cannot load model {model_path.name}: {exc}") from exc
        if not info["inputs"] or not info["outputs"]:
            raise ModelLoadError(f"cannot load model {model_path.name}: snpe-dlc-info shows no "
                                 "input or output tensors")
        # Raw files are float32 both ways (no --use_native_*_files): SNPE converts itself.
        self._inputs = [TensorInfo(t.name, t.shape, "float32") for t in info["inputs"]]
        self._outputs = [TensorInfo(t.name, t.shape, "float32") for t in info["outputs"]]
        self._native_types = {t.name: t.type for t in info["inputs"] + info["outputs"]}
        self.layout = _layout(self._inputs[0].shape)
        self._model = model_path
        self._settings = dict(options.options or {})
        self._flags = list(ACCELERATOR_FLAGS[options.accelerator])

    # ------------------------------------------------------------ one-sample fallback

    def set_inputs(self, arrays: Sequence[Any]) -> None:
        self._check_input_count(arrays)
        self._pending = [self._checked(array, info) for array, info in zip(arrays, self._inputs)]

    @property
    def pending(self) -> List[Any]:
        """The sample the last ``set_inputs`` gave (float32 arrays, in ``inputs`` order)."""
        return list(self._pending)

    def invoke(self) -> None:
        """One snpe-net-run process for one inference: correct, but slow; a run
        measures this runtime through ``run_batch`` (``timing = "batch"``)."""
        run = self.run_batch([self._pending])
        try:
            self._last = [np.array(o) for o in run.outputs[0]]
        finally:
            run.close()

    def get_outputs(self) -> List[np.ndarray]:
        return list(self._last)

    # ------------------------------------------------------------ batches

    @staticmethod
    def _checked(array: Any, info: TensorInfo) -> np.ndarray:
        value = np.asarray(array)
        if tuple(value.shape) != tuple(info.shape):
            raise ValueError(f"input {info.name!r} expects shape {list(info.shape)}, got {list(value.shape)}")
        if value.dtype.kind not in "fiu":
            raise ValueError(f"input {info.name!r} expects float32 data, got {value.dtype.name}")
        return np.ascontiguousarray(value, dtype=np.float32)

    def _write_inputs(self, batch: Iterable[Sequence[Any]], folder: Path) -> List[str]:
        """One input-list line per sample; the same array object in consecutive samples
        (the latency protocol's repeated input) is written once."""
        folder.mkdir(parents=True, exist_ok=True)
        previous: List[Any] = []  # (array, path) of the previous sample, by position
        lines = []
        for index, sample in enumerate(batch):
            if len(sample) != len(self._inputs):
                raise ValueError(f"the model takes {len(self._inputs)} inputs, got {len(sample)}")
            current = []
            for position, (array, info) in enumerate(zip(sample, self._inputs)):
                if position < len(previous) and previous[position][0] is array:
                    current.append(previous[position])
                    continue
                path = folder / f"{index}_{position}.raw"
                self._checked(array, info).tofile(path)
                current.append((array, str(path)))
            previous = current
            paths = [path for _, path in current]
            if len(paths) == 1:
                lines.append(paths[0])
            else:
                lines.append(" ".join(f"{info.name}:={path}" for info, path in zip(self._inputs, paths)))
        return lines

    def _net_run(self, list_path: Path, out_dir: Path, profiling_level: Optional[str] = None) -> None:
        """One ``snpe-net-run`` over the input list; ``profiling_level`` overrides the
        option of the same name (the per-layer pass asks for "detailed")."""
        level = profiling_level or self._settings.get("profiling_level", "basic")
        args = ["--container", str(self._model), "--input_list", str(list_path),
                "--output_dir", str(out_dir),
                "--perf_profile", str(self._perf_profile()),
                "--profiling_level", str(level),
                *self._flags, *[str(a) for a in self._settings.get("extra_args", [])]]
        timeout = self._settings.get("timeout_seconds")
        try:
            run_tool(NET_RUN, args, timeout=float(timeout) if timeout else None)
        except ToolFailed as exc:
            raise RuntimeError(str(exc)) from exc

    def run_batch(self, batch: Iterable[Sequence[Any]], keep_outputs: bool = True,
                  profiling_level: Optional[str] = None) -> BatchRun:
        """Every sample of ``batch`` through one ``snpe-net-run``; outputs are
        memory-mapped from the result files (``BatchRun.close()`` removes them)."""
        work = Path(tempfile.mkdtemp(prefix="edgefarm-snpe-", dir=self._settings.get("work_dir")))
        try:
            lines = self._write_inputs(batch, work / "inputs")
            if not lines:
                raise ValueError("run_batch needs at least one sample")
            list_path = work / "input_list.txt"
            list_path.write_text("\n".join(lines) + "\n")
            out_dir = work / "output"
            watch = Stopwatch()
            self._net_run(list_path, out_dir, profiling_level)
            wall = watch.seconds()
            diag, source = self._timings(out_dir, len(lines))
            outputs = [self._read_outputs(out_dir, i) for i in range(len(lines))] if keep_outputs else []
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        details = {"latency_source": source, "inferences": len(lines), "process_wall_seconds": wall,
                   "sdk_version": diag.version}
        cleanup = None if self._settings.get("keep_work_dir") else (lambda: shutil.rmtree(work, True))
        return BatchRun(outputs, [us / 1000.0 for us in diag.inference_us],
                        diag.init_us / 1000.0 if diag.init_us is not None else None, details, cleanup)

    def layer_batch(self, count: int) -> DiagLayers:
        """The current input ``count`` times through one ``snpe-net-run --profiling_level
        detailed``; the per-layer rows of ``snpe-diagview --csv_format_version 2``."""
        work = Path(tempfile.mkdtemp(prefix="edgefarm-snpe-layers-", dir=self._settings.get("work_dir")))
        try:
            lines = self._write_inputs([self._pending] * count, work / "inputs")
            list_path = work / "input_list.txt"
            list_path.write_text("\n".join(lines) + "\n")
            out_dir = work / "output"
            self._net_run(list_path, out_dir, "detailed")
            csv_path = out_dir / "layers.csv"
            log = self._diag_log(out_dir)
            run_tool("snpe-diagview", ["--input_log", str(log), "--csv_format_version", "2",
                                       "--output", str(csv_path)])
            return parse_diagview_layers(csv_path.read_text() if csv_path.is_file() else "")
        finally:
            if not self._settings.get("keep_work_dir"):
                shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _diag_log(out_dir: Path) -> Path:
        logs = sorted(out_dir.glob("SNPEDiag*.log"))
        if not logs:
            raise RuntimeError(f"snpe-net-run wrote no diagnostic log (SNPEDiag*.log) in {out_dir}")
        return logs[0]

    def _timings(self, out_dir: Path, count: int) -> tuple:
        """(DiagStats with ``count`` per-inference times, where they came from)."""
        log = self._diag_log(out_dir)
        text = parse_diagview_text(run_tool("snpe-diagview", ["--input_log", str(log)]))
        if len(text.inference_us) == count and not text.averaged:
            return text, f"snpe-diagview text ({log.name})"
        csv_path = out_dir / "diagview.csv"
        run_tool("snpe-diagview", ["--input_log", str(log), "--output", str(csv_path)])
        table = parse_diagview_csv(csv_path.read_text()) if csv_path.is_file() else None
        if table is not None and len(table.inference_us) == count:
            init = table.init_us if table.init_us is not None else text.init_us
            return DiagStats(text.version, init, table.inference_us, False), f"snpe-diagview csv ({log.name})"
        if text.inference_us:
            average = text.inference_us[0]
            return (DiagStats(text.version, text.init_us, [average] * count, True),
                    f"snpe-diagview average ({log.name}): per-inference times not available")
        raise RuntimeError(f"snpe-diagview found no 'Total Inference Time' in {log}")

    def _read_outputs(self, out_dir: Path, index: int) -> List[np.ndarray]:
        arrays = []
        for info in self._outputs:
            path = next((p for p in result_paths(out_dir, index, info.name) if p.is_file()), None)
            if path is None:
                raise RuntimeError(f"snpe-net-run wrote no output {info.name!r} for inference {index} "
                                   f"(looked for {result_paths(out_dir, index, info.name)[0]})")
            expected = int(np.prod(info.shape)) * 4
            if os.path.getsize(path) != expected:
                raise RuntimeError(f"{path} holds {os.path.getsize(path)} bytes, expected {expected} "
                                   f"(float32 {list(info.shape)})")
            arrays.append(np.memmap(path, dtype=np.float32, mode="r", shape=tuple(info.shape)))
        return arrays

    def _perf_profile(self) -> str:
        return str(self._settings.get("perf_profile", DEFAULT_PERF_PROFILE))

    def describe(self) -> Dict[str, Any]:
        return {"threads": None, "delegate": None, "flags": list(self._flags),
                "perf_profile": self._perf_profile(),
                "native_types": dict(self._native_types)}

    def close(self) -> None:
        self._pending, self._last = [], []
