"""Whether a result regressed against its baseline: the one decision of the
regression watch (``judge``), pure arithmetic on two results' figures.

Latency (the p50) regresses when it rose by more than ``latency_pct`` percent.
With raw samples on both sides the rise must also be significant: the 95%
interval of the change excludes zero (rule ``significance``; the interval is
``edgefarm.shared.stats``'s). Without samples the change alone decides (rule
``threshold``). Accuracy (top-1 or mIoU, on the same dataset) regresses when it
fell by more than ``accuracy_pp`` percentage points, output agreement when its
PSNR fell by more than ``psnr_db`` dB; both by the threshold rule.
"""

from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Sequence

from edgefarm.shared.contract.watch import Rule, Thresholds
from edgefarm.shared.stats.quantiles import quantile_ci

CONFIDENCE = 0.95
#: Fewer raw samples than this on either side: the threshold rule decides latency.
MIN_SAMPLES = 6


@dataclass(frozen=True)
class Figures:
    """What a result is judged on."""

    p50_ms: Optional[float] = None
    samples: Sequence[float] = field(default_factory=tuple)
    accuracy: Optional[float] = None
    accuracy_metric: Optional[str] = None
    dataset_sha256: Optional[str] = None
    psnr_db: Optional[float] = None


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
                   psnr_db=agreement.get("psnr_db"))


def latency_change(base: Figures, new: Figures):
    """``(percent, low, high, rule)``: the p50's change and, with enough raw samples, the
    conservative 95% interval of the ratio of the two medians (from each median's
    order-statistic interval), else ``low = high = None`` under the threshold rule."""
    change = (new.p50_ms / base.p50_ms - 1.0) * 100.0
    if len(base.samples) < MIN_SAMPLES or len(new.samples) < MIN_SAMPLES:
        return change, None, None, Rule.threshold
    before = quantile_ci(base.samples, 0.5, CONFIDENCE)
    after = quantile_ci(new.samples, 0.5, CONFIDENCE)
    if None in (before.low, before.high, after.low, after.high) or not before.low or not before.high:
        return change, None, None, Rule.threshold
    low = (after.low / before.high - 1.0) * 100.0
    high = (after.high / before.low - 1.0) * 100.0
    return change, low, high, Rule.significance


def _latency(base: Figures, new: Figures, limit: float) -> Optional[Finding]:
    if not base.p50_ms or new.p50_ms is None:
        return None
    change, low, high, rule = latency_change(base, new)
    if change <= limit:
        return None
    if rule == Rule.significance and not (low is not None and low > 0):
        return None  # within the noise: the interval of the change holds zero
    how = (f"95% interval {low:+.1f}% .. {high:+.1f}%" if rule == Rule.significance
           else "plain threshold, no raw samples to test")
    return Finding("latency_p50_ms", rule, base.p50_ms, new.p50_ms, change, limit,
                   f"p50 {base.p50_ms:.3g} -> {new.p50_ms:.3g} ms ({change:+.1f}%, limit +{limit:g}%; {how})",
                   low, high)


def _accuracy(base: Figures, new: Figures, limit: float) -> Optional[Finding]:
    if base.accuracy is None or new.accuracy is None or base.accuracy_metric != new.accuracy_metric:
        return None
    if base.dataset_sha256 != new.dataset_sha256:
        return None  # another dataset: not comparable
    change = (new.accuracy - base.accuracy) * 100.0
    if change >= -limit:
        return None
    return Finding("accuracy", Rule.threshold, base.accuracy, new.accuracy, change, limit,
                   f"{new.accuracy_metric} {base.accuracy:.4f} -> {new.accuracy:.4f} "
                   f"({change:+.2f} pp, limit -{limit:g} pp; plain threshold)")


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
