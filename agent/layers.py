"""Per-layer time: where a run's inference time goes, from the runtime's own profiler.

A pass of its own after the timed runs and the evaluation, so profiling never inflates
the headline latency: ``profile_layers`` runs the latency input ``runs`` times (after one
warm run) and keeps, per layer, its name, op type, mean time over the profiled runs, share
of the sum and the unit it ran on where the runtime says. In the same pass it measures the
unprofiled end-to-end time (``LayerProfile.e2e_ms``, the median of ``runs`` runs on the
runtime's own ``invoke()``, the code path of the headline latency): one unprofiled run
before each profiled one, so both see the same machine load. ``PROFILERS`` maps a runtime
name to its profiler:

* ``onnxruntime``: ONNX Runtime's profiler (``SessionOptions.enable_profiling``) on a
  second session with the run's options, alternating with the run's own session (the
  unprofiled runs); one ``<node>_kernel_time`` event per node and run, with the node's
  op type and execution provider (the unit). Node names are the
  graph as ONNX Runtime runs it, after its graph optimisations (fused and re-laid-out
  nodes carry ONNX Runtime's names).
* ``opencv``: ``cv2.dnn.Net.getPerfProfile`` after each forward pass; the op type is the
  source ONNX graph's for layers named after one of its nodes, else OpenCV's layer type.
  OpenCV collects those timings on every forward pass, so its unprofiled run is the very
  same ``invoke()``, only without reading the profile after it.
* ``snpe``: ``snpe-net-run --profiling_level detailed`` on an input list of the input
  ``runs + 1`` times (one process, the first execution is the warm one), read through
  ``snpe-diagview``'s per-layer CSV (``snpe_sdk.parse_diagview_layers``): per layer its
  name, type, time and the runtime it ran on (the unit); ``run_ms`` is the mean "Total
  Inference Time" of the profiled executions. Its unprofiled time is a ``--profiling_level
  basic`` batch of as many inferences right before (per-inference times from the diag log,
  as the headline latency); SNPE runs a whole batch per process, so the two are not
  interleaved run by run.

Other runtimes give a ``LayerProfile`` whose ``not_available`` says why (``NOT_AVAILABLE``).
Layer tables longer than ``MAX_LAYER_ROWS`` keep the slowest layers.
"""

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from edgefarm.shared.contract.schemas import MAX_LAYER_ROWS, LayerProfile, LayerTime

from .clock import Stopwatch
from .runtimes.base import Runtime

#: Why a runtime has no per-layer time here.
NOT_AVAILABLE: Dict[str, str] = {
    "tflite": "per-layer time is not available for tflite: the installed LiteRT Python API has no op "
              "profiler, and no registry package ships a benchmark_model binary for "
              "--enable_op_profiling",
    "null": "the null runtime has no layers",
}


#: The pause before each run of the interleaved pairs. ONNX Runtime's intra-op threads
#: spin for a while after a run: without it, the other session's spinning threads took
#: the cores from the next run (DeepLab on 2 threads: unprofiled 60 ms interleaved against
#: 38 ms alone; 10 ms of pause gave 50 ms, 50 ms gave 38 ms, the headline's).
SETTLE_SECONDS = 0.05

NAME_CHARS, OP_CHARS = 1000, 100  # the contract's bounds; longer names are cut


class _Accumulator:
    """Per layer (in first-seen order): op type, kernel, unit and the total ms over the runs."""

    def __init__(self) -> None:
        self.layers: Dict[str, Dict[str, Any]] = {}  # in first-seen order

    def add(self, name: str, op_type: str, ms: float, kernel: Optional[str] = None,
            unit: Optional[str] = None) -> None:
        entry = self.layers.setdefault(name, {"op_type": op_type, "kernel": kernel, "unit": unit, "ms": 0.0})
        entry["ms"] += ms

    def profile(self, source: str, runs: int, run_ms: Sequence[float],
                e2e_ms: Sequence[float] = ()) -> LayerProfile:
        means = [(name, e, e["ms"] / runs) for name, e in self.layers.items()]
        total = sum(ms for _, _, ms in means)
        kept = means
        if len(means) > MAX_LAYER_ROWS:
            slowest = set(n for n, _, _ in sorted(means, key=lambda m: -m[2])[:MAX_LAYER_ROWS])
            kept = [m for m in means if m[0] in slowest]
        rows = [LayerTime(name=name[:NAME_CHARS], op_type=e["op_type"][:OP_CHARS],
                          kernel=e["kernel"][:OP_CHARS] if e["kernel"] else None, ms=ms,
                          share=min(1.0, ms / total) if total > 0 else 0.0, unit=e["unit"])
                for name, e, ms in kept]
        return LayerProfile(source=source, runs=runs, total_ms=total,
                            run_ms=sum(run_ms) / len(run_ms) if run_ms else None,
                            e2e_ms=statistics.median(e2e_ms) if e2e_ms else None, layers=rows,
                            layers_left_out=len(means) - len(kept))


def _interleaved_runs(unprofiled: Callable[[], None], profiled: Callable[[], None], runs: int,
                     after_each: Optional[Callable[[], None]] = None) -> Tuple[List[float], List[float]]:
    """One untimed warm run of each, then ``runs`` pairs: an unprofiled run, then a
    profiled one (``after_each`` reads its profile, untimed), each after a pause of
    ``SETTLE_SECONDS``. The wall ms of each (profiled, unprofiled)."""
    unprofiled()
    profiled()
    profiled_ms, unprofiled_ms = [], []
    for _ in range(runs):
        time.sleep(SETTLE_SECONDS)
        watch = Stopwatch()
        unprofiled()
        unprofiled_ms.append(watch.lap_ms())
        time.sleep(SETTLE_SECONDS)
        watch = Stopwatch()
        profiled()
        profiled_ms.append(watch.lap_ms())
        if after_each is not None:
            after_each()
    return profiled_ms, unprofiled_ms


def _onnxruntime_layers(runtime: Any, model_path: Path, runs: int) -> LayerProfile:
    from .runtimes.onnxruntime import accelerator_name

    with tempfile.TemporaryDirectory(prefix="edgefarm-layers-") as folder:
        session = runtime.profiling_session(os.path.join(folder, "profile"))
        feed = runtime.feed
        times, plain = _interleaved_runs(runtime.invoke, lambda: session.run(None, feed), runs)
        events = json.loads(Path(session.end_profiling()).read_text())
    starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    if len(starts) < runs + 1:
        raise RuntimeError(f"ONNX Runtime's profile holds {len(starts)} runs, {runs + 1} were made")
    first_profiled = starts[-runs]
    found = _Accumulator()
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or not name.endswith("_kernel_time") or event["ts"] < first_profiled:
            continue
        args = event.get("args", {})
        provider = str(args.get("provider", ""))
        found.add(name[:-len("_kernel_time")], str(args.get("op_name", "")), float(event["dur"]) / 1e3,
                  unit=accelerator_name(provider).upper() if provider else None)
    return found.profile("onnxruntime profiler (per node, after graph optimisation)", runs, times, plain)


def graph_op_types(model_path: Path) -> Dict[str, str]:
    """Node name -> op type of an ONNX model's graph; empty for other formats or without ``onnx``."""
    try:
        import onnx
    except ImportError:
        return {}
    try:
        graph = onnx.load(str(model_path), load_external_data=False).graph
    except Exception:  # not ONNX (a .tflite read by OpenCV): its op types stay OpenCV's
        return {}
    return {node.name: node.op_type for node in graph.node}


def _opencv_layers(runtime: Any, model_path: Path, runs: int) -> LayerProfile:
    source_ops = graph_op_types(model_path)
    found = _Accumulator()

    def collect() -> None:
        for name, kind, ms in runtime.layer_times():
            found.add(name, source_ops.get(name, kind), ms, kernel=kind, unit="CPU"
                      if runtime.describe().get("target") == "cpu" else None)

    times, plain = _interleaved_runs(runtime.invoke, runtime.invoke, runs, after_each=collect)
    return found.profile("opencv getPerfProfile (per layer)", runs, times, plain)


def _snpe_layers(runtime: Any, model_path: Path, runs: int) -> LayerProfile:
    basic = runtime.run_batch([runtime.pending] * (runs + 1), keep_outputs=False, profiling_level="basic")
    basic.close()
    plain = basic.latencies_ms[1:]
    diag = runtime.layer_batch(runs + 1)
    profiled = diag.executions[1:] if len(diag.executions) > 1 else diag.executions
    if not profiled:
        units = f" (its layer times are in {', '.join(diag.not_time)}, not time)" if diag.not_time else ""
        return LayerProfile(not_available="per-layer time is not available for snpe here: snpe-diagview's "
                            f"output of --profiling_level detailed has no per-layer rows{units}",
                            e2e_ms=statistics.median(plain) if plain else None)
    found = _Accumulator()
    for execution in profiled:
        for layer in execution:
            found.add(layer.name, layer.type or "unknown", layer.us / 1e3, unit=layer.runtime)
    totals = diag.inference_us[-len(profiled):] if len(diag.inference_us) >= len(profiled) else []
    return found.profile("snpe-diagview (per layer, --profiling_level detailed)", len(profiled),
                         [us / 1e3 for us in totals], plain)


PROFILERS: Dict[str, Callable[[Any, Path, int], LayerProfile]] = {
    "onnxruntime": _onnxruntime_layers,
    "opencv": _opencv_layers,
    "snpe": _snpe_layers,
}


def profile_layers(runtime: Runtime, model_path: Path, inputs: Sequence[Any], runs: int) -> LayerProfile:
    """The per-layer table of ``runtime`` (loaded) on ``inputs``, or why there is none."""
    profiler = PROFILERS.get(runtime.name)
    if profiler is None:
        reason = NOT_AVAILABLE.get(runtime.name, f"per-layer time is not available for {runtime.name}")
        return LayerProfile(not_available=reason)
    runtime.set_inputs(inputs)
    try:
        return profiler(runtime, Path(model_path), runs)
    except Exception as exc:  # a profile is extra information: the run still succeeds
        return LayerProfile(not_available=f"the {runtime.name} profiler failed: {type(exc).__name__}: {exc}")
