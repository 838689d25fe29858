"""Statistics shared by the agent and the server: pure Python (no numpy), Python 3.9.

* ``quantiles``: the distribution-free confidence interval of a quantile from the order
  statistics of the samples (the agent's adaptive repetition and every latency interval).
* ``proportions``: Wilson interval of an accuracy; McNemar's exact test of two flag sets.
* ``shift``: Hodges-Lehmann latency shift with its Mann-Whitney interval.
* ``bootstrap``: seeded bootstrap of mIoU and pixel accuracy over images, and its paired form.
* ``compare``: one entry point for ``new - base`` with a verdict (better / worse / no
  significant difference).
* ``encoding``: the compact per-sample data kept with a result.
"""

from .compare import NO_DIFFERENCE, Shift, accuracy_shift, iou_shift, latency_shift
from .proportions import mcnemar_exact, wilson
from .quantiles import Interval, quantile_ci
from .shift import hodges_lehmann

__all__ = ["Interval", "NO_DIFFERENCE", "Shift", "accuracy_shift", "hodges_lehmann",
           "iou_shift", "latency_shift", "mcnemar_exact", "quantile_ci", "wilson"]
