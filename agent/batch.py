"""The latency protocol and the evaluation for runtimes that run a whole batch in
one go (``Runtime.supports_batch``, e.g. SNPE's ``snpe-net-run``).

This module owns ``benchmark_batch`` and ``evaluate_batch``, the batch twins of
``edgefarm.agent.harness.benchmark`` and ``edgefarm.agent.evaluation.evaluate.evaluate``:

* Latency: ``1 + warmup_runs + measured_runs`` inferences of the same input in one
  batch. The runtime's own per-inference times (its diagnostic log, not process
  wall time) give the first inference, the warmup (discarded) and the measured
  samples. The protocol is count-based here: ``min_seconds`` and ``max_seconds``
  cannot steer a batch that is fixed before it starts (the result says so).
* Evaluation: every sample is decoded and pre-processed (in the runtime's layout)
  as the batch is written, the batch runs once, then each output goes through the
  same scorers (``edgefarm.agent.evaluation.scoring``) as for the other runtimes. Per-sample
  inference times are the runtime's; decode, pre- and post-processing are timed here.
"""

import time
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from edgefarm.shared.datasets.preprocess import InputSpec, preprocess_image

from .errors import Cancelled
from .evaluation.evaluate import EvalOutcome, SampleTiming, _outcome
from .evaluation.scoring import make_scorer
from .harness import BenchResult, Protocol
from .runtimes.base import Runtime
from .stats import latency_stats

Progress = Optional[Callable[..., Any]]


def benchmark_batch(runtime: Runtime, inputs: Sequence[Any], protocol: Protocol,
                    progress: Progress = None) -> Tuple[BenchResult, Optional[float], dict]:
    """(BenchResult, the runtime's init time in ms or None, the batch's details)."""
    warmup = max(int(protocol.warmup_runs), 0)
    count = 1 + warmup + max(int(protocol.measured_runs), 1)
    if progress is not None:
        progress(0, "measure")
    started = time.perf_counter()
    run = runtime.run_batch([list(inputs)] * count, keep_outputs=False)
    run.close()
    times = list(run.latencies_ms)
    if len(times) != count:
        raise RuntimeError(f"{runtime.name} reported {len(times)} inference times for {count} inferences")
    warm, samples = times[1:1 + warmup], times[1 + warmup:]
    bench = BenchResult(
        first_inference_ms=times[0], warmup_count=warmup, samples_ms=samples,
        stats=latency_stats(samples), wall_seconds=time.perf_counter() - started,
        warmup_mean_ms=float(np.mean(warm)) if warm else None,
    )
    details = dict(run.details, latency_protocol=f"count-based: {count} inferences in one batch "
                                                 "(min_seconds/max_seconds do not apply)")
    return bench, run.init_ms, details


def _prepared(samples: Iterable[Any], spec: InputSpec, pre: Any, scorer: Any, limit: Optional[int],
              records: List[Tuple[SampleTiming, Any]], should_stop: Optional[Callable[[], bool]]
              ) -> Iterator[List[np.ndarray]]:
    """Yield each sample's input tensor list, recording its timing and target."""
    iterator = iter(samples if limit is None else islice(samples, limit))
    while True:
        if should_stop is not None and should_stop():
            raise Cancelled(f"evaluation cancelled after preparing {len(records)} samples")
        start = time.perf_counter()
        sample = next(iterator, None)
        if sample is None:
            return
        decoded = time.perf_counter()
        scorer.check_sample(sample)
        tensor = preprocess_image(sample.image, spec, pre)
        timing = SampleTiming(sample.id, decode_ms=(decoded - start) * 1e3,
                              preprocess_ms=(time.perf_counter() - decoded) * 1e3)
        records.append((timing, scorer.target(sample)))
        yield [tensor]


def evaluate_batch(runtime: Runtime, samples: Iterable[Any], task: str, spec: InputSpec, pre: Any,
                   num_classes: Optional[int], progress: Progress = None,
                   should_stop: Optional[Callable[[], bool]] = None, limit: Optional[int] = None,
                   label_offset: Optional[int] = None) -> EvalOutcome:
    """Evaluate ``runtime`` on ``samples`` with one ``run_batch``; same metrics as ``evaluate``."""
    scorer = make_scorer(task, runtime, spec.layout, num_classes, label_offset)
    records: List[Tuple[SampleTiming, Any]] = []
    started = time.perf_counter()
    run = runtime.run_batch(_prepared(samples, spec, pre, scorer, limit, records, should_stop))
    try:
        if len(run.outputs) != len(records) or len(run.latencies_ms) != len(records):
            raise RuntimeError(f"{runtime.name} gave {len(run.outputs)} outputs and "
                               f"{len(run.latencies_ms)} times for {len(records)} samples")
        timings = []
        for done, ((timing, target), outputs, inference_ms) in enumerate(
                zip(records, run.outputs, run.latencies_ms), 1):
            post = time.perf_counter()
            scorer.add(timing.id, np.asarray(outputs[0]), target)
            timing.inference_ms = float(inference_ms)
            timing.postprocess_ms = (time.perf_counter() - post) * 1e3
            timings.append(timing)
            if progress is not None:
                progress(done, len(records))
    finally:
        run.close()
    return _outcome(scorer, timings, time.perf_counter() - started)
