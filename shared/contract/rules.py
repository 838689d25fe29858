"""Rules that belong to the wire: what the server, the agents and the clients must
compute the same way, so that one figure never means two things.

* The headline metric of a result (``headline_metric``): mIoU when the result has
  one (segmentation), else top-1 (classification); its display name
  (``metric_name``).
* Which model formats each runtime reads (``RUNTIME_FORMATS``): the server matches
  references and runtimes with it, every runtime declares its formats from it.
* The pace a server sets for its agents unless configured otherwise
  (``DEFAULT_INTERVALS``); an agent uses it until the server has answered.
* What makes an agent's report acceptable: its schema (``RunReport``: finite,
  non-negative and ordered figures, accuracies in [0, 1], at most
  ``MAX_REPORT_SAMPLES`` raw latency samples per statistic) and then
  ``report_problem`` (a state an agent may report, a result with success).
"""

from typing import Any, Dict, Mapping, Optional, Tuple

from .enums import RunState
from .schemas import Intervals, RunReport

#: Metric keys in order of preference for the one figure a table shows.
HEADLINE_METRICS = ("miou", "top1")

#: How metric keys are written for people.
METRIC_NAMES: Dict[str, str] = {
    "miou": "mIoU", "top1": "top-1", "top5": "top-5", "pixel_accuracy": "pixel accuracy",
    "sample_count": "samples evaluated",
}

#: Model formats (``ModelFormat`` values) each runtime reads; ``null`` reads anything.
RUNTIME_FORMATS: Dict[str, Tuple[str, ...]] = {
    "tflite": ("tflite",), "opencv": ("tflite", "onnx"), "onnxruntime": ("onnx",),
    "snpe": ("dlc",), "null": ("tflite", "onnx", "dlc"),
}

#: Seconds: how long a lease poll waits, the jitter an agent adds between polls,
#: how often an agent renews its lease, and how long a lease lives without renewal.
DEFAULT_INTERVALS = Intervals(poll_wait_seconds=25.0, poll_jitter_seconds=5.0,
                              heartbeat_seconds=30.0, lease_seconds=120.0)

#: The states an agent may report a run ending in.
REPORTED_STATES = (RunState.succeeded, RunState.failed, RunState.cancelled)


def headline_metric(metrics: Any) -> Tuple[Optional[float], Optional[str]]:
    """``(value, key)`` of the headline metric of a ``Metrics`` model or a dict of
    metrics, or ``(None, None)`` when it has none."""
    if metrics is None:
        return None, None
    values: Mapping[str, Any] = metrics if isinstance(metrics, Mapping) else metrics.model_dump()
    for key in HEADLINE_METRICS:
        if values.get(key) is not None:
            return float(values[key]), key
    return None, None


def metric_name(key: Optional[str]) -> str:
    """``mIoU``, ``top-1``, ...; an unknown key with its underscores as spaces."""
    return METRIC_NAMES.get(key or "", (key or "").replace("_", " "))


def runtime_formats(runtime: str) -> Tuple[str, ...]:
    """The model formats ``runtime`` reads (none for an unknown runtime)."""
    return RUNTIME_FORMATS.get(str(runtime), ())


def report_problem(report: RunReport) -> Optional[str]:
    """Why the server must refuse this report, or None when it is acceptable."""
    if report.state not in REPORTED_STATES:
        return "state must be succeeded, failed or cancelled"
    if report.state == RunState.succeeded and report.result is None:
        return "a succeeded run must carry its result"
    return None
