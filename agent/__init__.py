"""The EdgeFarm device agent: enrolls with the server, long-polls for runs,
downloads models and datasets into a verified cache, benchmarks and evaluates
them with the device's runtime, and reports the figures.

Runs on Python 3.9 (devices run old distributions).
"""

from edgefarm.shared import __version__

__all__ = ["__version__"]
