"""Statistics shared by the agent and the server: pure Python (no numpy), Python 3.9.

``quantiles``: the distribution-free confidence interval of a quantile from the order
statistics of the samples (the agent's adaptive repetition and every latency interval).
"""

from .quantiles import Interval, quantile_ci

__all__ = ["Interval", "quantile_ci"]
