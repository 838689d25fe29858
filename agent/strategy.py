"""How a run measures its runtime, picked once from what the runtime declares
(``Runtime.timing``, see ``edgefarm.agent.runtimes.base``).

``strategy_for(runtime)`` gives the run's ``Strategy``, which owns the four things that
differ between the two kinds of runtime:

* ``latency``: the latency protocol (``edgefarm.agent.clock``);
* ``evaluate``: the accuracy evaluation over a dataset;
* ``outputs``: the outputs of some input lists, for output agreement;
* ``peak_rss``: the run's peak resident set size.

``InvokeStrategy`` ("invoke"): the harness times each ``invoke()``
(``clock.benchmark``), the evaluation is the pipelined loop of
``edgefarm.agent.evaluation.evaluate``, outputs come one ``invoke()`` per input list, and
the peak RSS is this process's.

``BatchStrategy`` ("batch", SNPE): latency from one batch timed by the runtime
(``clock.benchmark_batch``); the evaluation decodes and pre-processes every sample (in
the runtime's layout) as the batch is written, runs the batch once, then scores each
output with the same scorers (``edgefarm.agent.evaluation.scoring``) as the invoke
path, per-sample inference times being the runtime's; outputs come from one
``run_batch``; the peak RSS is the larger of this process and its biggest child (the
inference process), which the result also reports on its own.
"""

from itertools import islice
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Type

import numpy as np

from edgefarm.shared.datasets.preprocess import InputSpec, preprocess_image

from .clock import BenchResult, Protocol, Stopwatch, benchmark, benchmark_batch
from .errors import Cancelled
from .evaluation.evaluate import EvalOutcome, SampleTiming, evaluate, evaluation_outcome
from .evaluation.scoring import make_scorer
from .memory import children_peak_rss_bytes, peak_rss_bytes
from .runtimes.base import Runtime

Progress = Optional[Callable[..., Any]]
StopCheck = Optional[Callable[[], bool]]
Latency = Tuple[BenchResult, Optional[float], Dict[str, Any]]


class Strategy:
    """What a run does with its loaded runtime where invoke and batch runtimes differ."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def latency(self, inputs: Sequence[Any], protocol: Protocol, progress: Progress = None,
                should_stop: StopCheck = None) -> Latency:
        """(BenchResult, the runtime's own init time in ms or None, extra facts)."""
        raise NotImplementedError

    def evaluate(self, samples: Iterable[Any], task: str, spec: InputSpec, pre: Any,
                 num_classes: Optional[int], progress: Progress = None, should_stop: StopCheck = None,
                 limit: Optional[int] = None, label_offset: Optional[int] = None) -> EvalOutcome:
        """The metrics and per-sample times of the runtime on ``samples`` (decoded)."""
        raise NotImplementedError

    def outputs(self, batch: Sequence[List[np.ndarray]]) -> List[List[np.ndarray]]:
        """The runtime's outputs (copies, as the runtime gives them) for each input list."""
        raise NotImplementedError

    def peak_rss(self, extra: Dict[str, Any]) -> Optional[int]:
        """The run's peak RSS so far; facts about it go into ``extra``."""
        return peak_rss_bytes()


class InvokeStrategy(Strategy):
    """The harness times each ``invoke()`` (``Runtime.timing == "invoke"``)."""

    def latency(self, inputs, protocol, progress=None, should_stop=None) -> Latency:
        return benchmark(self.runtime, inputs, protocol, progress=progress, should_stop=should_stop), None, {}

    def evaluate(self, samples, task, spec, pre, num_classes, progress=None, should_stop=None,
                 limit=None, label_offset=None) -> EvalOutcome:
        return evaluate(self.runtime, samples, task, spec, pre, num_classes, progress=progress,
                        should_stop=should_stop, limit=limit, label_offset=label_offset)

    def outputs(self, batch):
        results = []
        for arrays in batch:
            self.runtime.set_inputs(arrays)
            self.runtime.invoke()
            results.append([np.array(value) for value in self.runtime.get_outputs()])
        return results


class BatchStrategy(Strategy):
    """The runtime runs whole batches in another process and times them
    (``Runtime.timing == "batch"``, SNPE)."""

    def latency(self, inputs, protocol, progress=None, should_stop=None) -> Latency:
        return benchmark_batch(self.runtime, inputs, protocol, progress=progress)

    def evaluate(self, samples, task, spec, pre, num_classes, progress=None, should_stop=None,
                 limit=None, label_offset=None) -> EvalOutcome:
        runtime = self.runtime
        scorer = make_scorer(task, runtime, spec.layout, num_classes, label_offset)
        records: List[Tuple[SampleTiming, Any]] = []
        wall = Stopwatch()
        run = runtime.run_batch(_prepared(samples, spec, pre, scorer, limit, records, should_stop))
        try:
            if len(run.outputs) != len(records) or len(run.latencies_ms) != len(records):
                raise RuntimeError(f"{runtime.name} gave {len(run.outputs)} outputs and "
                                   f"{len(run.latencies_ms)} times for {len(records)} samples")
            timings = []
            for done, ((timing, target), outputs, inference_ms) in enumerate(
                    zip(records, run.outputs, run.latencies_ms), 1):
                watch = Stopwatch()
                scorer.add(timing.id, np.asarray(outputs[0]), target)
                timing.inference_ms = float(inference_ms)
                timing.postprocess_ms = watch.lap_ms()
                timings.append(timing)
                if progress is not None:
                    progress(done, len(records))
        finally:
            run.close()
        return evaluation_outcome(scorer, timings, wall.seconds())

    def outputs(self, batch):
        run = self.runtime.run_batch(batch)
        try:
            return [[np.array(value) for value in outputs] for outputs in run.outputs]
        finally:
            run.close()

    def peak_rss(self, extra):
        peak = peak_rss_bytes()
        if peak is None:
            return None
        child = children_peak_rss_bytes()
        extra["runtime_process_peak_rss_bytes"] = child
        return max(peak, child)


def _prepared(samples: Iterable[Any], spec: InputSpec, pre: Any, scorer: Any, limit: Optional[int],
              records: List[Tuple[SampleTiming, Any]], should_stop: StopCheck) -> Iterator[List[np.ndarray]]:
    """Yield each sample's input tensor list, recording its timing and target."""
    iterator = iter(samples if limit is None else islice(samples, limit))
    while True:
        if should_stop is not None and should_stop():
            raise Cancelled(f"evaluation cancelled after preparing {len(records)} samples")
        watch = Stopwatch()
        sample = next(iterator, None)
        if sample is None:
            return
        decode_ms = watch.lap_ms()
        scorer.check_sample(sample)
        tensor = preprocess_image(sample.image, spec, pre)
        records.append((SampleTiming(sample.id, decode_ms=decode_ms, preprocess_ms=watch.lap_ms()),
                        scorer.target(sample)))
        yield [tensor]


#: Strategies by the ``Runtime.timing`` value that selects them.
STRATEGIES: Dict[str, Type[Strategy]] = {"invoke": InvokeStrategy, "batch": BatchStrategy}


def strategy_for(runtime: Runtime) -> Strategy:
    """The strategy for ``runtime``, from its ``timing`` declaration."""
    if runtime.timing not in STRATEGIES:
        raise ValueError(f"runtime {runtime.name} declares timing {runtime.timing!r}; "
                         f"known: {', '.join(STRATEGIES)}")
    return STRATEGIES[runtime.timing](runtime)
