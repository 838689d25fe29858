"""The accuracy evaluation of one loaded model over one dataset, as a 3-stage pipeline.

This module owns ``evaluate`` (for runtimes the harness times call by call,
``Runtime.timing == "invoke"``), its result ``EvalOutcome`` with the per-sample
``SampleTiming``, and ``evaluation_outcome``, which turns scored samples into that
result (batch runtimes are evaluated by ``edgefarm.agent.strategy`` and end there too).
Every time is read through ``edgefarm.agent.clock``.

Stages and threads:

1. decode + pre-process, on a worker thread, feeding a bounded queue (``QUEUE_DEPTH``);
2. inference, on the calling thread: ``set_inputs``, then ``invoke`` (the only part
   timed as inference, by ``clock.invoke_ms`` as in the latency protocol), then
   ``get_outputs`` (the first output is copied, since runtimes may hand out views of
   buffers that the next invoke overwrites);
3. post-process, on a second worker thread: dequantize, resize, argmax, metrics.

Per sample the four stage times are recorded; ``end_to_end_ms`` is their sum, the
serial cost of one sample (``set_inputs`` counts as pre-processing and
``get_outputs`` as post-processing; time spent waiting in the queues counts nowhere).
``wall_seconds`` is the pipelined time for the whole dataset. Inference here runs
while the other stages work on other cores, so its times are "under load"; the
latency figures of a run come from the harness's separate benchmark.

An exception in any stage stops the other two and is raised to the caller (a
failing sample is named in the message); ``should_stop()`` is checked before every
sample and raises ``edgefarm.agent.errors.Cancelled``.
"""

from __future__ import annotations

import queue
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from edgefarm.shared.datasets import DatasetError
from edgefarm.shared.datasets.preprocess import InputSpec, preprocess_image

from ..clock import Stopwatch, invoke_ms
from ..errors import Cancelled, DatasetModelMismatch
from .scoring import make_scorer

QUEUE_DEPTH = 3
_POLL_SECONDS = 0.05
_JOIN_SECONDS = 10.0
_END = object()  # end of the stream
_STAGES = ("decode", "preprocess", "inference", "postprocess")


class EvaluationError(RuntimeError):
    """A sample failed in one stage of the pipeline; the message names it."""


@dataclass
class SampleTiming:
    id: str
    decode_ms: float = 0.0
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0

    @property
    def end_to_end_ms(self) -> float:
        return self.decode_ms + self.preprocess_ms + self.inference_ms + self.postprocess_ms


@dataclass
class EvalOutcome:
    """Metrics (``sample_count`` and ``miou``/``pixel_accuracy``/``per_class_iou`` or
    ``top1``/``top5``), per-sample times in ms, and stage means (``stage_ms``)."""

    metrics: Dict[str, Any]
    inference_ms: List[float]
    end_to_end_ms: List[float]
    wall_seconds: float
    stage_ms: Dict[str, Optional[float]]
    samples: List[SampleTiming] = field(default_factory=list)
    details: Dict[str, Any] = field(default_factory=dict)  # classes, label offset, ...
    predictions: Dict[str, int] = field(default_factory=dict)  # classification: id -> top-1


@dataclass
class _Item:
    timing: SampleTiming
    tensor: Any
    target: Any
    output: Any = None


class _Pipeline:
    """Two bounded queues, a stop flag, and the first error raised by any stage."""

    def __init__(self, depth: int) -> None:
        self.prepared: queue.Queue = queue.Queue(depth)
        self.inferred: queue.Queue = queue.Queue(depth)
        self.stop = threading.Event()
        self.error: Optional[BaseException] = None
        self._lock = threading.Lock()

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = exc
        self.stop.set()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, target: queue.Queue, item: Any) -> bool:
        """Put, unless the pipeline stops first (then False)."""
        while not self.stop.is_set():
            try:
                target.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def get(self, source: queue.Queue) -> Any:
        """The next item, or ``_END`` once the pipeline stops."""
        while True:
            try:
                return source.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self.stop.is_set():
                    return _END


@contextmanager
def _stage(stage: str, sample_id: str) -> Iterator[None]:
    """Name the sample in errors; our own dataset errors already do."""
    try:
        yield
    except (DatasetModelMismatch, DatasetError):
        raise
    except Exception as exc:
        raise EvaluationError(f"sample {sample_id}: {stage} failed: "
                              f"{type(exc).__name__}: {exc}") from exc


def _next_sample(iterator: Any, previous: Optional[str]) -> Any:
    try:
        return next(iterator)
    except StopIteration:
        return _END
    except (DatasetError, DatasetModelMismatch):
        raise
    except Exception as exc:
        after = f"after sample {previous}" if previous else "first sample"
        raise EvaluationError(f"reading the {after} failed: {type(exc).__name__}: {exc}") from exc


def _produce(pipeline: _Pipeline, samples: Iterable[Any], limit: Optional[int], spec: InputSpec,
             pre: Any, scorer: Any) -> None:
    """Stage 1: decode (pull from ``samples``) and pre-process, at most ``limit`` samples."""
    iterator = iter(samples)
    previous, count = None, 0
    try:
        while not pipeline.stop.is_set():
            watch = Stopwatch()
            sample = _next_sample(iterator, previous) if limit is None or count < limit else _END
            if sample is _END:
                pipeline.put(pipeline.prepared, _END)
                return
            decode_ms = watch.lap_ms()
            previous, count = sample.id, count + 1
            scorer.check_sample(sample)
            with _stage("pre-processing", sample.id):
                tensor = preprocess_image(sample.image, spec, pre)
            timing = SampleTiming(sample.id, decode_ms=decode_ms, preprocess_ms=watch.lap_ms())
            if not pipeline.put(pipeline.prepared, _Item(timing, tensor, scorer.target(sample))):
                return
    except BaseException as exc:
        pipeline.fail(exc)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _consume(pipeline: _Pipeline, scorer: Any, timings: List[SampleTiming]) -> None:
    """Stage 3: post-process each inferred sample into the scorer."""
    try:
        while True:
            item = pipeline.get(pipeline.inferred)
            if item is _END or pipeline.stop.is_set():
                return
            watch = Stopwatch()
            with _stage("post-processing", item.timing.id):
                scorer.add(item.timing.id, item.output, item.target)
            item.timing.postprocess_ms += watch.lap_ms()
            timings.append(item.timing)
    except BaseException as exc:
        pipeline.fail(exc)


def _infer(runtime: Any, item: _Item) -> None:
    """Stage 2 for one sample, timing ``invoke`` alone as inference."""
    setting = Stopwatch()
    runtime.set_inputs([item.tensor])
    item.timing.preprocess_ms += setting.lap_ms()
    item.timing.inference_ms = invoke_ms(runtime)
    reading = Stopwatch()
    item.output = np.array(runtime.get_outputs()[0], copy=True)
    item.tensor = None
    item.timing.postprocess_ms = reading.lap_ms()


def _infer_all(pipeline: _Pipeline, runtime: Any, progress: Optional[Callable[..., Any]],
               should_stop: Optional[Callable[[], bool]], total: Optional[int]) -> None:
    done = 0
    while True:
        if should_stop is not None and should_stop():
            raise Cancelled(f"evaluation cancelled after {done} samples")
        item = pipeline.get(pipeline.prepared)
        if item is _END:
            pipeline.raise_error()
            return
        with _stage("inference", item.timing.id):
            _infer(runtime, item)
        if not pipeline.put(pipeline.inferred, item):
            pipeline.raise_error()
            return
        done += 1
        if progress is not None:
            progress(done, total)


def _mean(values: Sequence[float]) -> Optional[float]:
    return float(np.mean(values)) if len(values) else None


def evaluation_outcome(scorer: Any, timings: List[SampleTiming], wall_seconds: float) -> EvalOutcome:
    """The metrics of ``scorer`` and the stage means of ``timings``."""
    stage_ms = {name: _mean([getattr(t, f"{name}_ms") for t in timings]) for name in _STAGES}
    end_to_end = [t.end_to_end_ms for t in timings]
    stage_ms["end_to_end"] = _mean(end_to_end)
    return EvalOutcome(
        metrics=scorer.metrics(), inference_ms=[t.inference_ms for t in timings],
        end_to_end_ms=end_to_end, wall_seconds=wall_seconds, stage_ms=stage_ms, samples=timings,
        details=scorer.details(), predictions=dict(getattr(scorer, "predictions", {})),
    )


def evaluate(runtime: Any, samples_iter: Iterable[Any], task: str, spec: InputSpec, pre: Any,
             num_classes: Optional[int], progress: Optional[Callable[..., Any]] = None,
             should_stop: Optional[Callable[[], bool]] = None, limit: Optional[int] = None,
             label_offset: Optional[int] = None,
             class_names: Optional[Sequence[str]] = None) -> EvalOutcome:
    """Evaluate the loaded ``runtime`` on ``samples_iter`` (``DecodedSample``-like items:
    id, image, label, mask), at most ``limit`` samples.

    ``num_classes`` is the dataset's class count when known (checked against the
    model's output; None: taken from the output). ``label_offset`` (classification):
    1 drops score 0 (background); None picks 1 exactly when the model scores
    ``num_classes + 1`` classes. ``progress(done, limit)`` is called on this thread
    after each inference. Raises ``DatasetModelMismatch`` when dataset and model do
    not fit, ``Cancelled`` when ``should_stop()`` turns true.
    """
    scorer = make_scorer(task, runtime, spec.layout, num_classes, label_offset, class_names)
    pipeline = _Pipeline(QUEUE_DEPTH)
    timings: List[SampleTiming] = []
    producer = threading.Thread(target=_produce, args=(pipeline, samples_iter, limit, spec, pre, scorer),
                                name="evaluation-preprocess", daemon=True)
    consumer = threading.Thread(target=_consume, args=(pipeline, scorer, timings),
                                name="evaluation-postprocess", daemon=True)
    wall = Stopwatch()
    producer.start()
    consumer.start()
    try:
        _infer_all(pipeline, runtime, progress, should_stop, limit)
        pipeline.put(pipeline.inferred, _END)
        consumer.join()
        pipeline.raise_error()
    finally:
        pipeline.stop.set()
        producer.join(_JOIN_SECONDS)
        consumer.join(_JOIN_SECONDS)
    return evaluation_outcome(scorer, timings, wall.seconds())
