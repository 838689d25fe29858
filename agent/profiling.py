"""The profiling passes of a run (``RunSettings.profile``): load stages in a fresh
process before the run loads the model (``edgefarm.agent.stages``), then, after the
timed runs and the evaluation, per-layer time (``edgefarm.agent.layers``) and per-layer
drift against the output agreement's reference (``edgefarm.agent.drift``; not when the
reference is the very same file).
Each is extra information: a pass that cannot run says why in its ``not_available``
field and the run still succeeds."""

from pathlib import Path
from typing import Any, Optional, Sequence

from edgefarm.shared.contract.digests import sha256_file
from edgefarm.shared.contract.schemas import Drift, LayerProfile, Stages

from .errors import Cancelled
from .runtimes import LoadOptions

SAME_MODEL = ("the reference is the same model file: per-layer drift compares a model with another "
              "(a variant with its base)")


def run_stages(model_path: str, runtime: str, options: LoadOptions) -> Stages:
    """Cold and warm load, first and steady inference in a fresh process."""
    from .stages import measure_stages

    return measure_stages(Path(model_path), runtime, options.accelerator, options.threads, options.options)


def run_layers(runtime: Any, model_path: str, inputs: Sequence[Any], runs: int) -> LayerProfile:
    """The runtime's per-layer table on the latency input."""
    from .layers import profile_layers

    return profile_layers(runtime, Path(model_path), inputs, runs)


def run_drift(model_path: str, reference: Any, images: Optional[Sequence[Any]], inputs: Sequence[Any],
              input_infos: Sequence[Any], pre: Any, samples: int, options: LoadOptions) -> Drift:
    """The drift table against ``reference`` (a ``ReferenceRun``), or why there is none."""
    from .drift import compute_drift

    if sha256_file(Path(model_path)) == sha256_file(Path(reference.model_path)):
        return Drift(reference=reference.describe(), not_available=SAME_MODEL)
    try:
        drift = compute_drift(Path(model_path), Path(reference.model_path), images, inputs, input_infos,
                              pre, samples, options.threads, options.options, reference.options)
    except Cancelled:
        raise
    except Exception as exc:  # drift is extra information: the run still succeeds
        return Drift(reference=reference.describe(), not_available=f"{type(exc).__name__}: {exc}")
    drift.reference = reference.describe()
    return drift
