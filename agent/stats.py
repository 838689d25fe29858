"""Summary statistics of per-run latencies: pure functions, no timing, no I/O.

``latency_stats`` turns raw samples (milliseconds) into the ``LatencyStats``
fields of ``edgefarm.shared.contract.schemas``: count, mean, std, min, p50, p90, p99, max and,
optionally, the samples themselves.

Conventions, chosen to match TFLite ``benchmark_model``:

* ``std`` is the *population* standard deviation (divide by n, not n - 1), as
  benchmark_model's ``Stat`` computes it (sqrt of mean of squares minus squared
  mean). With one sample it is 0.
* Percentiles interpolate linearly between the two nearest ranks (numpy's
  default ``percentile`` method), so p50 of an even count is the mean of the
  two middle samples.
"""

import math
from typing import Any, Dict, List, Sequence

import numpy as np

#: Percentiles reported, as (field name, percentile).
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0))


def latency_stats(samples_ms: Sequence[float], keep_samples: bool = True) -> Dict[str, Any]:
    """Statistics of ``samples_ms`` as a dict with the ``LatencyStats`` fields.

    Raises ValueError when there is no sample or a sample is not a finite number.
    ``samples`` holds the raw values in run order when ``keep_samples``, else [].
    """
    values = np.asarray(list(samples_ms), dtype=np.float64)
    if values.size == 0:
        raise ValueError("latency statistics need at least one sample")
    if not np.all(np.isfinite(values)):
        raise ValueError("latency samples must be finite numbers")
    stats: Dict[str, Any] = {
        "count": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=0)),
        "min": float(values.min()),
        "max": float(values.max()),
    }
    points = percentiles(values, [point for _, point in PERCENTILES])
    stats.update(zip([name for name, _ in PERCENTILES], points))
    stats["samples"] = [float(v) for v in values] if keep_samples else []
    return stats


def percentiles(values: Sequence[float], points: Sequence[float]) -> List[float]:
    """Linearly interpolated percentiles (0..100) of ``values``, one per point."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    if ordered.size == 0:
        raise ValueError("percentiles need at least one value")
    return [float(np.percentile(ordered, point)) for point in points]


def coefficient_of_variation(stats: Dict[str, Any]) -> float:
    """std / mean of a ``latency_stats`` result (Phoronix re-runs above 3.5%); inf when mean is 0."""
    mean = float(stats["mean"])
    if mean == 0.0:
        return math.inf
    return float(stats["std"]) / mean
