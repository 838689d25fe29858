"""Whether a result regressed against its baseline: the one decision of the
regression watch (``judge``), pure arithmetic on two results' figures.

A metric regresses when it moved the wrong way by more than its threshold
(``Thresholds``: latency p50 up ``latency_pct`` percent, accuracy down
``accuracy_pp`` percentage points, output agreement PSNR down ``psnr_db`` dB).
When both results carry what a significance test needs, the move must also be
significant (rule ``significance``): its 95% interval, from
``edgefarm.shared.stats.compare``, excludes zero. That is the raw latency times
(Hodges-Lehmann shift with its Mann-Whitney interval), per-sample top-1
correctness on the same samples in the same order (McNemar), or per-image IoU
counts on the same images (paired bootstrap, up to ``MAX_BOOTSTRAP_IMAGES``).
Otherwise the threshold alone decides (rule ``threshold``), and says so.
"""

from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence

from edgefarm.shared.contract.watch import Rule, Thresholds
from edgefarm.shared.stats.bootstrap import ImageCounts
from edgefarm.shared.stats.compare import WORSE, Shift, accuracy_shift, iou_shift, latency_shift
from edgefarm.shared.stats.encoding import unpack_counts, unpack_flags

CONFIDENCE = 0.95
#: Fewer raw times than this on either side: the threshold rule decides latency.
MIN_SAMPLES = 6
#: A paired bootstrap runs while the agent waits for its report's answer (before the
#: write transaction, ``services.watch.prejudge``; about 0.25 to 0.35 s at 100 images of
#: 4 classes each and 1,000 resamples on a busy 2-core machine): above this many images
#: the threshold rule decides mIoU, so a report's answer stays prompt.
MAX_BOOTSTRAP_IMAGES = 100


@dataclass(frozen=True)
class Figures:
    """What a result is judged on (``per_sample``: its ``Metrics.per_sample`` as JSON)."""

    p50_ms: Optional[float] = None
    samples: Sequence[float] = ()
    accuracy: Optional[float] = None
    accuracy_metric: Optional[str] = None
    dataset_sha256: Optional[str] = None
    psnr_db: Optional[float] = None
    per_sample: Optional[Mapping[str, Any]] = None


@dataclass(frozen=True)
class Finding:
    """One metric that regressed (``change``: percent for latency, percentage points
    for accuracy, dB for PSNR; ``low``/``high``: its interval under the significance rule)."""

    metric: str
    rule: Rule
    baseline_value: float
    value: float
    change: float
    threshold: float
    detail: str
    low: Optional[float] = None
    high: Optional[float] = None


def figures_of(body: Mapping[str, Any], accuracy: Optional[float], metric: Optional[str],
               dataset_sha256: Optional[str]) -> Figures:
    """The figures of a stored result (its ``RunResult`` body as JSON and its columns)."""
    latency = body.get("latency_ms") or {}
    agreement = body.get("agreement") or {}
    return Figures(p50_ms=latency.get("p50"), samples=tuple(latency.get("samples") or ()),
                   accuracy=accuracy, accuracy_metric=metric, dataset_sha256=dataset_sha256,
                   psnr_db=agreement.get("psnr_db"),
                   per_sample=(body.get("metrics") or {}).get("per_sample"))


def _scaled(value: Optional[float], scale: float) -> Optional[float]:
    return None if value is None else value * scale


def _latency(base: Figures, new: Figures, limit: float) -> Optional[Finding]:
    if not base.p50_ms or new.p50_ms is None:
        return None
    change = (new.p50_ms / base.p50_ms - 1.0) * 100.0
    if len(base.samples) >= MIN_SAMPLES and len(new.samples) >= MIN_SAMPLES:
        shift = latency_shift(base.samples, new.samples, CONFIDENCE)
        scale = 100.0 / base.p50_ms
        low, high = _scaled(shift.low, scale), _scaled(shift.high, scale)
        if change <= limit or shift.verdict != WORSE:
            return None
        how = f"shift {shift.estimate * scale:+.1f}%, 95% interval {low:+.1f}% .. {high:+.1f}%"
        rule = Rule.significance
    else:
        if change <= limit:
            return None
        low = high = None
        how = "plain threshold: too few raw times for a test"
        rule = Rule.threshold
    return Finding("latency_p50_ms", rule, base.p50_ms, new.p50_ms, change, limit,
                   f"p50 {base.p50_ms:.4g} -> {new.p50_ms:.4g} ms ({change:+.1f}%, limit +{limit:g}%; {how})",
                   low, high)


def _paired_shift(base: Figures, new: Figures) -> Optional[Shift]:
    """The significance test of the accuracy change, when both results carry per-sample
    data for the same samples in the same order; else None."""
    first, second = base.per_sample or {}, new.per_sample or {}
    if not first or first.get("order_sha256") != second.get("order_sha256"):
        return None
    count = int(first.get("count") or 0)
    if count == 0 or count != int(second.get("count") or 0):
        return None
    if base.accuracy_metric == "top1" and first.get("top1_correct") and second.get("top1_correct"):
        return accuracy_shift(unpack_flags(first["top1_correct"], count),
                              unpack_flags(second["top1_correct"], count), CONFIDENCE)
    if base.accuracy_metric in ("miou", "pixel_accuracy") and first.get("iou") and second.get("iou"):
        tables = []
        for iou in (first["iou"], second["iou"]):
            images, classes = int(iou["images"]), int(iou["classes"])
            if images > MAX_BOOTSTRAP_IMAGES:
                return None
            tables.append(ImageCounts.from_tables(unpack_counts(iou["intersection"], images, classes),
                                                  unpack_counts(iou["union"], images, classes)))
        return iou_shift(tables[0], tables[1], base.accuracy_metric, CONFIDENCE)
    return None


def _accuracy(base: Figures, new: Figures, limit: float) -> Optional[Finding]:
    if base.accuracy is None or new.accuracy is None or base.accuracy_metric != new.accuracy_metric:
        return None
    if base.dataset_sha256 != new.dataset_sha256:
        return None  # another dataset: not comparable
    change = (new.accuracy - base.accuracy) * 100.0
    if change >= -limit:
        return None
    try:
        shift = _paired_shift(base, new)
    except ValueError:  # per-sample data that does not decode: test nothing
        shift = None
    if shift is not None and shift.verdict != WORSE:
        return None
    rule = Rule.significance if shift is not None else Rule.threshold
    low, high = (_scaled(shift.low, 100.0), _scaled(shift.high, 100.0)) if shift else (None, None)
    how = (f"95% interval {low:+.2f} .. {high:+.2f} pp, {shift.method}" if shift is not None
           else "plain threshold: no paired per-sample data")
    return Finding("accuracy", rule, base.accuracy, new.accuracy, change, limit,
                   f"{new.accuracy_metric} {base.accuracy:.4f} -> {new.accuracy:.4f} "
                   f"({change:+.2f} pp, limit -{limit:g} pp; {how})", low, high)


def _psnr(base: Figures, new: Figures, limit: float) -> Optional[Finding]:
    if base.psnr_db is None or new.psnr_db is None:
        return None
    change = new.psnr_db - base.psnr_db
    if change >= -limit:
        return None
    return Finding("psnr_db", Rule.threshold, base.psnr_db, new.psnr_db, change, limit,
                   f"output agreement PSNR {base.psnr_db:.1f} -> {new.psnr_db:.1f} dB "
                   f"({change:+.1f} dB, limit -{limit:g} dB; plain threshold)")


def judge(base: Figures, new: Figures, thresholds: Thresholds) -> List[Finding]:
    """Every metric of ``new`` that regressed against ``base`` (empty: none did)."""
    found = [_latency(base, new, thresholds.latency_pct), _accuracy(base, new, thresholds.accuracy_pp),
             _psnr(base, new, thresholds.psnr_db)]
    return [f for f in found if f is not None]
