"""Accuracy evaluation on the device. This package owns the pure metrics
(``metrics``: the dataset-wide confusion matrix and mIoU, top-k), what is done with
one model output per task and the checks that a dataset fits a model (``scoring``),
and the pipelined evaluation loop with its per-sample stage times (``evaluate``).

Samples come decoded and pre-processed from ``edgefarm.shared.datasets`` (``dataset``,
``readers``, ``preprocess``); every time is read through ``edgefarm.agent.clock``;
runtimes that run whole batches are evaluated by ``edgefarm.agent.strategy`` with the
same scorers and outcome.

Submodules import numpy; import them directly (``from
edgefarm.agent.evaluation.evaluate import evaluate``) where a light import matters.
"""

from ..errors import Cancelled, DatasetModelMismatch

__all__ = ["Cancelled", "DatasetModelMismatch"]
