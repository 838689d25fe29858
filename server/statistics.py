"""Intervals of one result and the significance of the difference between two, computed
from the data kept with each result (``edgefarm.shared.stats`` does the arithmetic).

* ``result_intervals``: latency p50/p90/p99 (order statistics of the raw samples), top-1
  and top-5 (Wilson), mIoU and pixel accuracy (bootstrap over images from the per-image
  counts). A figure without the data for it has no interval, and ``missing`` says why.
* ``latency_shift`` / ``accuracy_shift``: ``new - base`` with its interval and verdict
  (Hodges-Lehmann / McNemar exact / paired bootstrap), or "not testable" with the reason:
  never a verdict the data cannot support.

Results are immutable, so both are cached by result id in a bounded in-process cache: a
compare page computes each pairwise test once, then reads it.
"""

import threading
from collections import OrderedDict
from typing import Callable, Dict, Hashable, List, Optional, Tuple, TypeVar

from edgefarm.shared.contract.rules import headline_metric
from edgefarm.shared.contract.schemas import (
    NOT_TESTABLE,
    IntervalOut,
    PerSample,
    ResultIntervals,
    ResultOut,
    ShiftOut,
)
from edgefarm.shared.stats import bootstrap, compare, encoding, proportions
from edgefarm.shared.stats.quantiles import Interval, quantile_ci

CONFIDENCE = 0.95
CACHE_SIZE = 4096
T = TypeVar("T")


class BoundedCache:
    """A thread-safe least-recently-used map of at most ``size`` entries."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._items: "OrderedDict[Hashable, object]" = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]  # type: ignore[return-value]
        value = compute()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


_cache = BoundedCache()


def interval_out(interval: Interval) -> IntervalOut:
    return IntervalOut(**interval.as_dict())


# ---------------------------------------------------------------- one result


def result_intervals(result: ResultOut) -> ResultIntervals:
    """The intervals of ``result``'s headline figures (cached by result id)."""
    return _cache.get_or_compute(("intervals", result.id), lambda: _intervals(result))


def _intervals(result: ResultOut) -> ResultIntervals:
    out: Dict[str, object] = {}
    missing: Dict[str, str] = {}
    samples = sorted(result.latency_ms.samples) if result.latency_ms else []
    if samples:
        for key, q in (("latency_p50", 0.5), ("latency_p90", 0.9), ("latency_p99", 0.99)):
            out[key] = interval_out(quantile_ci(samples, q, CONFIDENCE, presorted=True))
    elif result.latency_ms:
        missing["latency"] = "no raw latency samples kept with the result"
    metrics = result.metrics
    per_sample = metrics.per_sample if metrics else None
    for key in ("top1", "top5"):
        value = getattr(metrics, key, None) if metrics else None
        if value is None:
            continue
        successes, n = _successes(value, metrics.sample_count, per_sample, key)
        if n:
            out[key] = interval_out(proportions.wilson(successes, n, CONFIDENCE))
        else:
            missing[key] = "no sample count"
    for key in ("miou", "pixel_accuracy"):
        if metrics is None or getattr(metrics, key, None) is None:
            continue
        counts, reason = image_counts(per_sample)
        if counts is None:
            missing[key] = reason
            continue
        try:
            out[key] = interval_out(bootstrap.interval(counts, key, CONFIDENCE))
        except ValueError as exc:
            missing[key] = str(exc)
    return ResultIntervals(**out, latency_samples=len(samples), missing=missing)


def _successes(value: float, sample_count: Optional[int], per_sample: Optional[PerSample],
               key: str) -> Tuple[float, int]:
    """Correct samples and samples: counted from the flags when kept, else the reported
    fraction times ``sample_count`` (the Wilson interval is then centred on the reported
    figure)."""
    flags = correct_flags(per_sample, key)
    if flags is not None:
        return sum(flags), len(flags)
    if not sample_count:
        return 0, 0
    return value * sample_count, sample_count


def correct_flags(per_sample: Optional[PerSample], key: str) -> Optional[List[bool]]:
    """The decoded ``top1_correct``/``top5_correct`` flags, or None when absent or invalid."""
    packed = getattr(per_sample, f"{key}_correct", None) if per_sample else None
    if not packed:
        return None
    try:
        return encoding.unpack_flags(packed, per_sample.count)
    except ValueError:
        return None


def image_counts(per_sample: Optional[PerSample]) -> Tuple[Optional[bootstrap.ImageCounts], str]:
    """The per-image counts of a segmentation result, or None with the reason."""
    if per_sample is None or per_sample.iou is None:
        return None, "no per-image counts kept with the result"
    iou = per_sample.iou
    try:
        inter = encoding.unpack_counts(iou.intersection, iou.images, iou.classes)
        union = encoding.unpack_counts(iou.union, iou.images, iou.classes)
        return bootstrap.ImageCounts.from_tables(inter, union), ""
    except ValueError as exc:
        return None, f"per-image counts unreadable: {exc}"


# ---------------------------------------------------------------- two results


def not_testable(reason: str) -> ShiftOut:
    return ShiftOut(verdict=NOT_TESTABLE, reason=reason)


def shift_out(shift: compare.Shift) -> ShiftOut:
    return ShiftOut(**shift.as_dict())


def latency_shift(base: ResultOut, new: ResultOut, confidence: float = CONFIDENCE) -> ShiftOut:
    """Latency of ``new`` minus ``base`` from their raw samples (cached by the ids)."""
    return _cache.get_or_compute(("latency", base.id, new.id, confidence),
                                 lambda: _latency(base, new, confidence))


def _latency(base: ResultOut, new: ResultOut, confidence: float) -> ShiftOut:
    first = base.latency_ms.samples if base.latency_ms else []
    second = new.latency_ms.samples if new.latency_ms else []
    if not first or not second:
        return not_testable("no raw latency samples kept with " + ("both results" if not (first or second)
                                                                     else "one of the results"))
    return shift_out(compare.latency_shift(first, second, confidence))


MIRRORED = {compare.BETTER: compare.WORSE, compare.WORSE: compare.BETTER}


def latency_verdict(first: ResultOut, second: ResultOut) -> str:
    """The verdict of ``second`` against ``first`` on latency, computed in one order only
    (the lower result id as base): every test here is antisymmetric (up to the thinning of
    samples longer than ``shift.THIN_LIMIT``), so the other order is the same test with
    better and worse swapped, and a Pareto front costs half the tests."""
    if first.id <= second.id:
        return latency_shift(first, second).verdict
    verdict = latency_shift(second, first).verdict
    return MIRRORED.get(verdict, verdict)


def accuracy_verdict(first: ResultOut, second: ResultOut) -> str:
    """``latency_verdict`` for the headline accuracy."""
    if first.id <= second.id:
        return accuracy_shift(first, second).verdict
    verdict = accuracy_shift(second, first).verdict
    return MIRRORED.get(verdict, verdict)


def accuracy_shift(base: ResultOut, new: ResultOut, confidence: float = CONFIDENCE) -> ShiftOut:
    """Headline accuracy of ``new`` minus ``base``, paired sample by sample (cached)."""
    return _cache.get_or_compute(("accuracy", base.id, new.id, confidence),
                                 lambda: _accuracy(base, new, confidence))


def _accuracy(base: ResultOut, new: ResultOut, confidence: float) -> ShiftOut:
    (_, key), (_, other) = headline_metric(base.metrics), headline_metric(new.metrics)
    if key is None or other != key:
        return not_testable("the results do not share an accuracy metric")
    first = base.metrics.per_sample
    second = new.metrics.per_sample
    if first is None or second is None:
        return not_testable("no per-sample data kept with " + ("both results" if first is second
                                                               else "one of the results"))
    if first.order_sha256 != second.order_sha256 or first.count != second.count:
        return not_testable("the results were evaluated on different samples")
    if key in ("top1", "top5"):
        x, y = correct_flags(first, key), correct_flags(second, key)
        if x is None or y is None:
            return not_testable(f"no per-sample {key} correctness kept")
        return shift_out(compare.accuracy_shift(x, y, confidence))
    if key in ("miou", "pixel_accuracy"):
        (x, why), (y, why_not) = image_counts(first), image_counts(second)
        if x is None or y is None:
            return not_testable(why or why_not)
        try:
            return shift_out(compare.iou_shift(x, y, key, confidence))
        except ValueError as exc:
            return not_testable(str(exc))
    return not_testable(f"no test for {key}")
