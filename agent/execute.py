"""One run, start to end, in its own process: load the model with the chosen
runtime, run the latency protocol, evaluate on the dataset, compare the outputs
with the reference's when the job names one (``edgefarm.agent.agreement``), and write a
``RunResult``. Runtimes that run whole batches (``supports_batch``, SNPE) go
through ``edgefarm.agent.batch`` instead of the harness and the evaluation pipeline.

The worker starts ``python -m edgefarm.agent.execute SPEC RESULT`` for every run, so
that a crashing runtime cannot take the agent down, peak RSS belongs to this
run alone, and cancellation is a kill. ``edgefarm-agent bench`` calls
``run_benchmark`` directly.

Progress is printed to stdout as JSON lines ``{"phase": ..., "done": n, "total": m}``.
"""

import json
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from edgefarm.shared.contract.schemas import (
    Agreement,
    Environment,
    LatencyStats,
    Metrics,
    Preprocessing,
    RunResult,
    RunSettings,
)

from . import __version__
from .errors import Cancelled
from .runtimes import LoadOptions, ModelLoadError, get_runtime_class

Progress = Callable[[Dict[str, Any]], None]


class RunFailed(Exception):
    """The run cannot produce a result; the message says why, for the user."""


@dataclass
class RunSpec:
    model_path: str
    settings: RunSettings = field(default_factory=RunSettings)
    task: str = "latency"
    dataset_dir: Optional[str] = None
    dataset_layout: Optional[str] = None
    dataset_split: Optional[str] = None
    preprocessing: Optional[Preprocessing] = None
    labels: Optional[list] = None
    runtime_options: Dict[str, Any] = field(default_factory=dict)
    default_threads: Optional[int] = None
    # runtime, accelerator, max_samples, model_id, model_name, model_sha256, model_path, options
    reference: Optional[Dict[str, Any]] = None

    @classmethod
    def from_json(cls, data: dict) -> "RunSpec":
        data = dict(data)
        data["settings"] = RunSettings.model_validate(data.get("settings") or {})
        if data.get("preprocessing") is not None:
            data["preprocessing"] = Preprocessing.model_validate(data["preprocessing"])
        return cls(**data)

    def to_json(self) -> dict:
        data = dict(self.__dict__)
        data["settings"] = self.settings.model_dump(mode="json")
        data["preprocessing"] = self.preprocessing.model_dump(mode="json") if self.preprocessing else None
        return data


def _load(spec: RunSpec):
    from .harness import load_runtime

    settings = spec.settings
    runtime_cls = get_runtime_class(str(settings.runtime))
    threads = settings.threads or spec.default_threads or os.cpu_count()
    options = LoadOptions(accelerator=settings.accelerator, threads=threads,
                          options={**spec.runtime_options, **settings.options})
    try:
        return load_runtime(runtime_cls, Path(spec.model_path), options)
    except ModelLoadError as exc:
        raise RunFailed(f"cannot load the model with {settings.runtime}: {exc}") from exc


def _preprocessing(spec: RunSpec, input_dtype: str) -> Preprocessing:
    from edgefarm.shared.datasets.preprocess import default_preprocessing

    return spec.settings.preprocessing or spec.preprocessing or default_preprocessing(input_dtype)


def _latency_inputs(spec: RunSpec, runtime, input_spec, pre):
    """A real pre-processed sample when there is a dataset, else synthetic data."""
    from edgefarm.shared.datasets.preprocess import preprocess_image
    from edgefarm.shared.datasets.readers import iter_decoded

    from .harness import synthetic_inputs

    if input_spec is not None and len(runtime.inputs) == 1:
        for sample in iter_decoded(Path(spec.dataset_dir), spec.dataset_layout, spec.dataset_split, 1):
            return [preprocess_image(sample.image, input_spec, pre)]
    return synthetic_inputs(runtime.inputs)


def _evaluate(spec: RunSpec, runtime, input_spec, pre, progress, should_stop):
    from edgefarm.shared.datasets import validate_directory
    from edgefarm.shared.datasets.readers import iter_decoded

    from .batch import evaluate_batch
    from .evaluation.evaluate import evaluate

    if spec.task == "segmentation":
        num_classes = int(runtime.outputs[0].shape[-1])  # runtimes present outputs channels-last
    else:  # the dataset's classes: a model may score one more (a background class 0)
        summary = validate_directory(Path(spec.dataset_dir), spec.dataset_layout, spec.dataset_split)
        num_classes = summary.num_classes or int(runtime.outputs[0].shape[-1])
    limit = spec.settings.sample_limit
    samples = iter_decoded(Path(spec.dataset_dir), spec.dataset_layout, spec.dataset_split, limit)
    run = evaluate_batch if getattr(runtime, "supports_batch", False) else evaluate
    return run(runtime, samples, spec.task, input_spec, pre, num_classes,
               progress=progress, should_stop=should_stop, limit=limit,
               label_offset=spec.settings.options.get("label_offset"))


def _measure_latency(spec: RunSpec, runtime, inputs, report, should_stop):
    """(BenchResult, the runtime's own init ms or None, extra facts) by the protocol."""
    from .batch import benchmark_batch
    from .harness import Protocol, benchmark

    protocol = Protocol.from_settings(spec.settings)

    def progress(done: int, phase: str) -> None:
        report({"phase": phase, "done": done})

    if getattr(runtime, "supports_batch", False):
        return benchmark_batch(runtime, inputs, protocol, progress=progress)
    return benchmark(runtime, inputs, protocol, progress=progress, should_stop=should_stop), None, {}


def _agreement_images(spec: RunSpec, runtime, limit: Optional[int]):
    from edgefarm.shared.datasets.readers import iter_decoded

    evaluating = spec.task in ("classification", "segmentation")
    if not spec.dataset_dir or not evaluating or len(runtime.inputs) != 1:
        return None
    caps = [n for n in (limit, spec.settings.sample_limit) if n]
    samples = iter_decoded(Path(spec.dataset_dir), spec.dataset_layout, spec.dataset_split,
                           min(caps) if caps else None)
    return [sample.image for sample in samples]


def _agreement(spec: RunSpec, runtime, pre, latency_inputs) -> Optional[Agreement]:
    """Agreement with the reference, or an ``error`` saying why there is none."""
    from .agreement import compute_agreement

    ref = spec.reference
    if not ref:
        return None
    info = {k: ref.get(k) for k in ("runtime", "accelerator", "model_id", "model_name", "model_sha256")}
    try:
        settings = RunSettings(runtime=ref["runtime"], accelerator=ref.get("accelerator") or "cpu",
                               threads=spec.settings.threads)
        reference, _ = _load(RunSpec(model_path=ref["model_path"], settings=settings,
                                     runtime_options=ref.get("options") or {},
                                     default_threads=spec.default_threads))
        try:
            images = _agreement_images(spec, runtime, ref.get("max_samples"))
            data = compute_agreement(runtime, reference, spec.task, images, latency_inputs, pre)
        finally:
            reference.close()
    except Cancelled:
        raise
    except Exception as exc:  # agreement is extra information: the run still succeeds
        return Agreement(reference=info, error=f"{type(exc).__name__}: {exc}")
    return Agreement(reference=info, **data)


def _peak_rss(runtime, extra: dict) -> Optional[int]:
    """Peak RSS of this process; for a batch runtime, whose inference runs in a child
    process (snpe-net-run), the larger of this process and its biggest child."""
    from .harness import peak_rss_bytes

    peak = peak_rss_bytes()
    if not getattr(runtime, "supports_batch", False) or peak is None:
        return peak
    import resource

    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    child = int(child) if sys.platform == "darwin" else int(child) * 1024
    extra["runtime_process_peak_rss_bytes"] = child
    return max(peak, child)


def _evaluation_figures(spec: RunSpec, runtime, input_spec, pre, report, should_stop, extra: dict):
    """(Metrics, end-to-end LatencyStats); stage and inference figures go into ``extra``."""
    from .stats import latency_stats

    def progress(done: int, total: Optional[int] = None) -> None:
        report({"phase": "evaluate", "done": done, "total": total})

    outcome = _evaluate(spec, runtime, input_spec, pre, progress, should_stop)
    extra.update({"evaluation_wall_seconds": outcome.wall_seconds, "stage_ms": outcome.stage_ms,
                  "evaluation_inference_ms": latency_stats(outcome.inference_ms, keep_samples=False)})
    return (Metrics(**_name_classes(outcome.metrics, spec.labels)),
            LatencyStats(**latency_stats(outcome.end_to_end_ms, keep_samples=False)))


def run_benchmark(spec: RunSpec, progress: Optional[Progress] = None,
                  should_stop: Optional[Callable[[], bool]] = None) -> RunResult:
    from edgefarm.shared.datasets.preprocess import InputSpec

    from .sysinfo import environment_delta, read_environment

    report = progress or (lambda info: None)
    before = read_environment()
    runtime, init_ms = _load(spec)
    try:
        evaluating = bool(spec.dataset_dir) and spec.task in ("classification", "segmentation")
        input_spec = InputSpec.from_tensor(runtime.inputs[0], runtime.layout) if evaluating else None
        pre = _preprocessing(spec, runtime.inputs[0].dtype)
        inputs = _latency_inputs(spec, runtime, input_spec, pre)
        bench, runtime_init_ms, extra = _measure_latency(spec, runtime, inputs, report, should_stop)
        if runtime_init_ms is not None:  # the runtime's own figure, e.g. SNPE's diagnostic log
            extra["load_ms"], init_ms = init_ms, runtime_init_ms
        metrics, end_to_end = None, None
        if evaluating:
            metrics, end_to_end = _evaluation_figures(spec, runtime, input_spec, pre, report,
                                                      should_stop, extra)
        peak_rss = _peak_rss(runtime, extra)  # before the reference is loaded for the agreement
        after = read_environment()
        if spec.reference:
            report({"phase": "agreement"})
        agreement = _agreement(spec, runtime, pre, inputs)
        return RunResult(
            runtime={"name": runtime.name, "version": runtime.version(),
                     "accelerator": spec.settings.accelerator,
                     "threads": runtime.describe().get("threads"),
                     "delegate": runtime.describe().get("delegate")},
            agent_version=__version__, init_ms=init_ms, first_inference_ms=bench.first_inference_ms,
            latency_ms=LatencyStats(**bench.stats), end_to_end_ms=end_to_end,
            model_size_bytes=os.path.getsize(spec.model_path), peak_rss_bytes=peak_rss,
            metrics=metrics, environment=Environment(**environment_delta(before, after)),
            extra={"warmup_runs": bench.warmup_count, "latency_wall_seconds": bench.wall_seconds,
                   "latency_samples_stride": bench.samples_stride,
                   "inputs": "dataset sample" if spec.dataset_dir else "synthetic", **extra},
            agreement=agreement,
        )
    finally:
        runtime.close()


def _name_classes(metrics: dict, labels: Optional[list]) -> dict:
    """Per-class IoU keyed by class name when the model has labels."""
    per_class = metrics.get("per_class_iou")
    if not per_class or not labels:
        return metrics
    named = {}
    for key, value in per_class.items():
        index = int(key) if str(key).isdigit() else None
        named[labels[index] if index is not None and index < len(labels) else str(key)] = value
    return {**metrics, "per_class_iou": named}


def main(argv=None) -> int:
    """``python -m edgefarm.agent.execute SPEC.json RESULT.json``: exit 0 with a result,
    3 with ``{"error": ...}`` for a run that failed, 4 when cancelled."""
    spec_path, result_path = (argv or sys.argv[1:])[:2]
    spec = RunSpec.from_json(json.loads(Path(spec_path).read_text()))

    def emit(info: Dict[str, Any]) -> None:
        print(json.dumps(info), flush=True)

    try:
        result = run_benchmark(spec, progress=emit)
    except Cancelled:
        return 4
    except RunFailed as exc:
        Path(result_path).write_text(json.dumps({"error": str(exc)}))
        return 3
    except Exception as exc:  # a failing run is reported, with the reason
        message = f"{type(exc).__name__}: {exc}"
        Path(result_path).write_text(json.dumps({"error": message, "trace": traceback.format_exc()}))
        return 3
    Path(result_path).write_text(result.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
