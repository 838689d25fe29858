"""One run, start to end, in its own process: load the model with the chosen
runtime, open the dataset once (``edgefarm.shared.datasets.dataset.open_dataset``: one
scan shared by the latency input, the evaluation and the output agreement), run
the latency protocol, evaluate on the dataset, compare the outputs with the
reference's when the job names one (``edgefarm.agent.agreement``), and write a
``RunResult``. How the runtime is measured is picked once from what it declares
(``Runtime.timing``, ``edgefarm.agent.strategy``).

This module also owns what a run is given: ``RunSpec`` and, for output agreement,
``ReferenceRun``; the worker writes both as the child process's spec JSON.

The worker starts ``python -m edgefarm.agent.execute SPEC RESULT`` for every run, so
that a crashing runtime cannot take the agent down, peak RSS belongs to this
run alone, and cancellation is a kill. ``edgefarm-agent bench`` calls
``run_benchmark`` directly.

Progress is printed to stdout as JSON lines ``{"phase": ..., "done": n, "total": m}``.
The child runs in its own process group (``edgefarm.agent.children``) and ends that
group, and removes its run folder, when the agent that started it is gone.
"""

import json
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from edgefarm.shared.contract.digests import sha256_file
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
from .children import RUN_FOLDER_PREFIX
from .errors import Cancelled
from .pause import pause_at
from .profiling import run_drift, run_layers, run_stages
from .runtimes import LoadOptions, ModelLoadError, get_runtime_class

Progress = Callable[[Dict[str, Any]], None]


class RunFailed(Exception):
    """The run cannot produce a result; the message says why, for the user."""


@dataclass
class ReferenceRun:
    """The reference of output agreement: its downloaded model and how to run it."""

    runtime: str
    model_path: str
    accelerator: str = "cpu"
    max_samples: Optional[int] = None  # evaluated samples compared (None: all)
    model_id: Optional[int] = None
    model_name: Optional[str] = None
    model_sha256: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)  # the agent's runtime options for it

    def describe(self) -> Dict[str, Any]:
        """How the result's ``Agreement`` names its reference."""
        return {"runtime": self.runtime, "accelerator": self.accelerator, "model_id": self.model_id,
                "model_name": self.model_name, "model_sha256": self.model_sha256}


@dataclass
class RunSpec:
    """What one run is given: the model file and its settings, the dataset folder and
    layout when it evaluates, the runtime options of this agent and the reference of
    output agreement; ``to_json`` / ``from_json`` are the child process's spec file."""

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
    reference: Optional[ReferenceRun] = None
    thermal: Dict[str, Any] = field(default_factory=dict)  # the agent's [thermal] table
    repetition: Dict[str, Any] = field(default_factory=dict)  # the agent's [repetition] table

    @property
    def evaluating(self) -> bool:
        """Whether the run evaluates accuracy on its dataset."""
        return bool(self.dataset_dir) and self.task in ("classification", "segmentation")

    @classmethod
    def from_json(cls, data: dict) -> "RunSpec":
        data = dict(data)
        data["settings"] = RunSettings.model_validate(data.get("settings") or {})
        if data.get("preprocessing") is not None:
            data["preprocessing"] = Preprocessing.model_validate(data["preprocessing"])
        if data.get("reference") is not None:
            data["reference"] = ReferenceRun(**data["reference"])
        return cls(**data)

    def to_json(self) -> dict:
        data = dict(self.__dict__)
        data["settings"] = self.settings.model_dump(mode="json")
        data["preprocessing"] = self.preprocessing.model_dump(mode="json") if self.preprocessing else None
        data["reference"] = asdict(self.reference) if self.reference else None
        return data


def _load_options(spec: RunSpec) -> LoadOptions:
    settings = spec.settings
    threads = settings.threads or spec.default_threads or os.cpu_count()
    return LoadOptions(accelerator=settings.accelerator, threads=threads,
                       options={**spec.runtime_options, **settings.options})


def _load(spec: RunSpec):
    from .clock import load_runtime

    settings = spec.settings
    runtime_cls = get_runtime_class(str(settings.runtime))
    options = _load_options(spec)
    try:
        return load_runtime(runtime_cls, Path(spec.model_path), options)
    except ModelLoadError as exc:
        raise RunFailed(f"cannot load the model with {settings.runtime}: {exc}") from exc


def _preprocessing(spec: RunSpec, input_dtype: str) -> Preprocessing:
    from edgefarm.shared.datasets.preprocess import default_preprocessing

    return spec.settings.preprocessing or spec.preprocessing or default_preprocessing(input_dtype)


def _latency_inputs(dataset, runtime, input_spec, pre):
    """A real pre-processed sample when there is a dataset, else synthetic data."""
    from edgefarm.shared.datasets.preprocess import preprocess_image

    from .synthetic import synthetic_inputs

    if dataset is not None and len(runtime.inputs) == 1:
        for sample in dataset.decoded(1):
            return [preprocess_image(sample.image, input_spec, pre)]
    return synthetic_inputs(runtime.inputs)


def _measure_latency(spec: RunSpec, strategy, inputs, report, should_stop):
    """The kept latency measurement (``edgefarm.agent.repetition.Measured``): the protocol
    behind the thermal gate, re-measured when throttled or noisy as the settings ask."""
    from .clock import Protocol
    from .repetition import RepetitionConfig, measure
    from .thermal import ThermalConfig

    def progress(done: int, phase: str) -> None:
        report({"phase": phase, "done": done})

    protocol = Protocol.from_settings(spec.settings)
    try:
        thermal = ThermalConfig.from_dict(spec.thermal)
        repetition = RepetitionConfig.from_dict(spec.repetition)
    except (TypeError, ValueError) as exc:
        raise RunFailed(f"the agent's configuration: {exc}") from exc

    def latency():
        return strategy.latency(inputs, protocol, progress=progress, should_stop=should_stop)

    report({"phase": "gate"})
    return measure(latency, protocol, thermal, repetition,
                   rerun_throttled=spec.settings.rerun_throttled)


def _evaluation_figures(spec: RunSpec, strategy, dataset, input_spec, pre, report, should_stop,
                        extra: dict):
    """(Metrics, end-to-end LatencyStats); stage and inference figures go into ``extra``."""
    from .stats import latency_stats

    def progress(done: int, total: Optional[int] = None) -> None:
        report({"phase": "evaluate", "done": done, "total": total})

    if spec.task == "segmentation":  # runtimes present outputs channels-last
        num_classes = int(strategy.runtime.outputs[0].shape[-1])
    else:  # the dataset's classes: a model may score one more (a background class 0)
        num_classes = dataset.num_classes or int(strategy.runtime.outputs[0].shape[-1])
    limit = spec.settings.sample_limit
    outcome = strategy.evaluate(dataset.decoded(limit), spec.task, input_spec, pre, num_classes,
                                progress=progress, should_stop=should_stop, limit=limit,
                                label_offset=spec.settings.options.get("label_offset"))
    extra.update({"evaluation_wall_seconds": outcome.wall_seconds, "stage_ms": outcome.stage_ms,
                  "evaluation_inference_ms": latency_stats(outcome.inference_ms, keep_samples=False)})
    return (Metrics(**_name_classes(outcome.metrics, spec.labels)),
            LatencyStats(**latency_stats(outcome.end_to_end_ms, keep_samples=False)))


def _agreement_images(spec: RunSpec, dataset, runtime, limit: Optional[int]):
    if dataset is None or len(runtime.inputs) != 1:
        return None
    caps = [n for n in (limit, spec.settings.sample_limit) if n]
    return [sample.image for sample in dataset.decoded(min(caps) if caps else None)]


def _agreement(spec: RunSpec, strategy, dataset, pre, latency_inputs) -> Optional[Agreement]:
    """Agreement with the reference, or an ``error`` saying why there is none."""
    from .agreement import compute_agreement
    from .strategy import strategy_for

    ref = spec.reference
    if ref is None:
        return None
    try:
        settings = RunSettings(runtime=ref.runtime, accelerator=ref.accelerator or "cpu",
                               threads=spec.settings.threads)
        reference, _ = _load(RunSpec(model_path=ref.model_path, settings=settings,
                                     runtime_options=ref.options, default_threads=spec.default_threads))
        try:
            images = _agreement_images(spec, dataset, strategy.runtime, ref.max_samples)
            data = compute_agreement(strategy, strategy_for(reference), spec.task, images,
                                     latency_inputs, pre)
        finally:
            reference.close()
    except Cancelled:
        raise
    except Exception as exc:  # agreement is extra information: the run still succeeds
        return Agreement(reference=ref.describe(), error=f"{type(exc).__name__}: {exc}")
    return Agreement(reference=ref.describe(), **data)


def _drift(spec: RunSpec, runtime, dataset, pre, latency_inputs):
    """Per-layer drift against the output agreement's reference, on its first inputs."""
    if spec.reference is None:
        return None
    samples = spec.settings.drift_samples
    images = _agreement_images(spec, dataset, runtime, min(samples, spec.reference.max_samples or samples))
    return run_drift(spec.model_path, spec.reference, images, latency_inputs, runtime.inputs, pre,
                     samples, _load_options(spec))


def _open_dataset(spec: RunSpec):
    """The run's dataset, scanned once, when the run evaluates; else None."""
    if not spec.evaluating:
        return None
    from edgefarm.shared.datasets.dataset import open_dataset

    return open_dataset(Path(spec.dataset_dir), spec.dataset_layout, spec.dataset_split)


def run_benchmark(spec: RunSpec, progress: Optional[Progress] = None,
                  should_stop: Optional[Callable[[], bool]] = None) -> RunResult:
    from edgefarm.shared.datasets.preprocess import InputSpec

    from .strategy import strategy_for
    from .sysinfo import environment_delta, read_environment

    report = progress or (lambda info: None)
    model_sha256 = sha256_file(Path(spec.model_path))  # the bytes this run loads
    before = read_environment()
    profiling = spec.settings.profile
    stages = None
    if profiling:
        stages = run_stages(spec.model_path, str(spec.settings.runtime), _load_options(spec))
    runtime, init_ms = _load(spec)
    try:
        strategy = strategy_for(runtime)
        input_spec = InputSpec.from_tensor(runtime.inputs[0], runtime.layout) if spec.evaluating else None
        dataset = _open_dataset(spec)
        pre = _preprocessing(spec, runtime.inputs[0].dtype)
        inputs = _latency_inputs(dataset, runtime, input_spec, pre)
        measured = _measure_latency(spec, strategy, inputs, report, should_stop)
        bench, runtime_init_ms, extra = measured.bench, measured.runtime_init_ms, measured.extra
        if runtime_init_ms is not None:  # the runtime's own figure, e.g. SNPE's diagnostic log
            extra["load_ms"], init_ms = init_ms, runtime_init_ms
        metrics, end_to_end = None, None
        if dataset is not None:
            metrics, end_to_end = _evaluation_figures(spec, strategy, dataset, input_spec, pre, report,
                                                      should_stop, extra)
        peak_rss = strategy.peak_rss(extra)  # before the reference is loaded for the agreement
        after = read_environment()
        if spec.reference:
            report({"phase": "agreement"})
        agreement = _agreement(spec, strategy, dataset, pre, inputs)
        layers, drift = None, None
        if profiling:
            report({"phase": "profile"})
            layers = run_layers(runtime, spec.model_path, inputs, spec.settings.layer_runs)
            drift = _drift(spec, runtime, dataset, pre, inputs)
        return RunResult(
            runtime={"name": runtime.name, "version": runtime.version(),
                     "accelerator": spec.settings.accelerator,
                     "threads": runtime.describe().get("threads"),
                     "delegate": runtime.describe().get("delegate")},
            agent_version=__version__, init_ms=init_ms, first_inference_ms=bench.first_inference_ms,
            latency_ms=LatencyStats(**bench.stats), end_to_end_ms=end_to_end,
            model_size_bytes=os.path.getsize(spec.model_path), peak_rss_bytes=peak_rss,
            metrics=metrics, environment=_environment(environment_delta(before, after), measured),
            extra={"warmup_runs": bench.warmup_count, "latency_wall_seconds": bench.wall_seconds,
                   "latency_samples_stride": bench.samples_stride,
                   "inputs": "dataset sample" if spec.dataset_dir else "synthetic",
                   "model_sha256": model_sha256, **extra},
            agreement=agreement, repetition=measured.repetition,
            stages=stages, layers=layers, drift=drift,
        )
    finally:
        runtime.close()


def _environment(delta: Dict[str, Any], measured) -> Environment:
    """The run's before/after provenance with the kept measurement's gate and trace. Whether
    it was throttled is the kept measurement's verdict (an earlier, throttled attempt must
    not taint the re-run: the firmware's "since boot" bits stay set); the before/after
    readings decide only without one (no gate, no sensor)."""
    if measured.throttled is not None:
        delta["throttled"] = measured.throttled
    if measured.throttle_reason:
        delta["throttle_reason"] = measured.throttle_reason
    return Environment(**delta, gating=measured.gating, trace=measured.trace)


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
    watch = ParentWatch(Path(spec_path).parent)
    try:
        return _run(spec, result_path, watch)
    finally:
        if watch.orphaned():
            watch.end()


def _run(spec: RunSpec, result_path: str, watch: "ParentWatch") -> int:
    phases = set()

    def emit(info: Dict[str, Any]) -> None:
        phase = info.get("phase")
        if phase not in phases:
            phases.add(phase)
            pause_at(str(phase))
        try:
            print(json.dumps(info), flush=True)
        except BrokenPipeError:  # the agent closed its end: it is gone
            watch.end()

    pause_at("load")
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


class ParentWatch:
    """Ends this process group, and removes the run folder, once the agent that
    started this process is gone: a SIGKILLed agent leaves no one to stop the run.
    Checked every ``interval`` by a thread; a broken progress pipe says the same sooner."""

    def __init__(self, run_folder: Path, interval: float = 0.5):
        self.run_folder, self.interval, self.parent = run_folder, interval, os.getppid()
        threading.Thread(target=self._watch, name="parent-watch", daemon=True).start()

    def orphaned(self) -> bool:
        return os.getppid() != self.parent

    def end(self) -> None:
        if self.run_folder.name.startswith(RUN_FOLDER_PREFIX):
            shutil.rmtree(self.run_folder, ignore_errors=True)
        if os.getpgid(0) == os.getpid():  # the group the worker made for this run
            os.killpg(os.getpid(), signal.SIGKILL)
        os._exit(4)

    def _watch(self) -> None:
        while not self.orphaned():
            time.sleep(self.interval)
        self.end()


if __name__ == "__main__":
    sys.exit(main())
