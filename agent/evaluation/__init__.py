"""Accuracy evaluation on the device: dataset readers (``datasets``), input
pre-processing (``preprocess``), pure metrics (``metrics``), per-task scoring and
dataset/model checks (``scoring``) and the pipelined evaluation loop (``evaluate``).

Submodules import numpy and Pillow; import them directly (``from
edgefarm.agent.evaluation.evaluate import evaluate``) where a light import matters.
"""

from ..errors import Cancelled, DatasetModelMismatch

__all__ = ["Cancelled", "DatasetModelMismatch"]
