"""Significance of the difference between two results on the same data: one entry point.

Each function returns a ``Shift``: the estimate of ``new - base``, its interval at
``confidence``, the estimate relative to the base figure, the method, and a verdict. A
delta is called "better" or "worse" only when its interval excludes zero; otherwise it is
"no significant difference". Lower latency is better; higher accuracy (top-1, top-5,
mIoU, pixel accuracy) is better.

* ``latency_shift``: Hodges-Lehmann shift of the raw latency samples with the
  Mann-Whitney interval (``shift``).
* ``accuracy_shift``: paired per-sample correctness, McNemar's exact test and its
  Clopper-Pearson interval (``proportions``).
* ``iou_shift``: mIoU or pixel accuracy, paired bootstrap over images (``bootstrap``).
"""

from dataclasses import dataclass
from typing import Optional, Sequence

from . import bootstrap, proportions
from .quantiles import Interval
from .shift import hodges_lehmann

BETTER = "better"
WORSE = "worse"
NO_DIFFERENCE = "no significant difference"
VERDICTS = (BETTER, WORSE, NO_DIFFERENCE)


@dataclass(frozen=True)
class Shift:
    """``new - base`` with its interval; ``relative`` is ``estimate / base`` (None at 0)."""

    estimate: float
    low: Optional[float]
    high: Optional[float]
    relative: Optional[float]
    verdict: str
    method: str
    confidence: float = 0.95
    p_value: Optional[float] = None

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high,
                "relative": self.relative, "verdict": self.verdict, "method": self.method,
                "confidence": self.confidence, "p_value": self.p_value}


def verdict(low: Optional[float], high: Optional[float], lower_is_better: bool) -> str:
    """"better"/"worse" when the interval of ``new - base`` excludes zero, else none."""
    if low is None or high is None:
        return NO_DIFFERENCE
    if low > 0:
        return WORSE if lower_is_better else BETTER
    if high < 0:
        return BETTER if lower_is_better else WORSE
    return NO_DIFFERENCE


def _shift(interval: Interval, base_value: Optional[float], lower_is_better: bool,
           p_value: Optional[float] = None) -> Shift:
    relative = interval.estimate / base_value if base_value else None
    return Shift(estimate=interval.estimate, low=interval.low, high=interval.high,
                 relative=relative, verdict=verdict(interval.low, interval.high, lower_is_better),
                 method=interval.method, confidence=interval.confidence, p_value=p_value)


def latency_shift(base_samples: Sequence[float], new_samples: Sequence[float],
                  confidence: float = 0.95) -> Shift:
    """Latency of ``new`` minus ``base`` (Hodges-Lehmann), relative to the base median."""
    interval = hodges_lehmann(base_samples, new_samples, confidence)
    ordered = sorted(base_samples)
    half = len(ordered) // 2
    median = ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2.0
    return _shift(interval, median, lower_is_better=True)


def accuracy_shift(base_correct: Sequence[bool], new_correct: Sequence[bool],
                   confidence: float = 0.95) -> Shift:
    """Accuracy of ``new`` minus ``base`` on the same samples (McNemar exact)."""
    counts = proportions.paired_counts(base_correct, new_correct)
    interval = proportions.paired_difference(counts, confidence)
    base_value = counts.base_correct / counts.n
    return _shift(interval, base_value, lower_is_better=False,
                  p_value=proportions.mcnemar_exact(counts.b, counts.c))


def iou_shift(base: bootstrap.ImageCounts, new: bootstrap.ImageCounts, metric: str = "miou",
              confidence: float = 0.95) -> Shift:
    """mIoU (or pixel accuracy) of ``new`` minus ``base`` on the same images (paired
    bootstrap)."""
    interval = bootstrap.paired_difference(base, new, metric, confidence)
    base_value = bootstrap.METRICS[metric](*bootstrap.sums(base.rows, range(len(base.rows))))
    return _shift(interval, base_value, lower_is_better=False)
