"""The local half of ``edgefarm sweep``: from one base model, the set of
compressed variants that the input allows, each written with its lineage.

Variant names: ``fp32`` (the base itself), a quantization mode of
``edgefarm.tools.quantize.MODES`` (``fp16``, ``dynamic``, ``int8``, ...) and
``pruned-S`` for post-training magnitude pruning to sparsity S. A Keras or
SavedModel base is converted to float32 TFLite first (TensorFlow needed);
every variant then derives from that ``.tflite``. Calibrated modes are
skipped, with the reason, when no calibration dataset is given; so is any
variant whose tool fails, so one bad recipe does not stop the sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .common import ToolError
from .lineage import read_sidecar, sidecar_path
from .quantize import MODES, Calibration, quantize_model

DEFAULT_VARIANTS = ("fp32", "fp16", "dynamic", "int8", "pruned-0.5", "pruned-0.75", "pruned-0.9")
BASE_LABEL = "fp32"


def parse_variants(text: str) -> List[str]:
    """``"fp32,int8,pruned-0.9"`` -> the labels, checked; ToolError names a bad one."""
    labels: List[str] = []
    for raw in text.split(","):
        label = raw.strip()
        if not label or label in labels:
            continue
        if label != BASE_LABEL and label not in MODES and pruning_level(label) is None:
            known = ", ".join([BASE_LABEL] + list(MODES) + ["pruned-S (0 < S < 1)"])
            raise ToolError(f"unknown variant {label!r}; known: {known}")
        labels.append(label)
    if not labels:
        raise ToolError("no variants given")
    return labels


def pruning_level(label: str) -> Optional[float]:
    """``0.9`` for ``"pruned-0.9"``; None when the label is not a pruning level."""
    if not label.startswith("pruned-"):
        return None
    try:
        level = float(label[len("pruned-"):])
    except ValueError:
        return None
    return level if 0.0 < level < 1.0 else None


@dataclass
class Variant:
    """One file of the sweep: its label, path, and what its sidecar says."""

    label: str
    path: Path
    meta: Dict[str, Any] = field(default_factory=dict)  # {"variant": ..., "lineage": ...}


@dataclass
class SweepFiles:
    base: Path
    variants: List[Variant]
    skipped: List[Tuple[str, str]]  # (label, reason)


def tflite_base(base: Path, workdir: Path) -> Path:
    """The base as a ``.tflite`` file, converted from Keras/SavedModel when needed."""
    from edgefarm.shared.formats import ModelFormatError, detect_format

    try:
        if base.is_file() and detect_format(base) == "tflite":
            return base
    except ModelFormatError:
        pass
    from .convert import convert_model

    converted = workdir / f"{base.name.rsplit('.', 1)[0]}.tflite"
    convert_model(base, converted)
    return converted


def make_variant(base: Path, label: str, workdir: Path, calibration: Optional[Calibration]) -> Path:
    """Write one variant of ``base`` (with its sidecar); returns its path."""
    dest = workdir / f"{base.stem}-{label}.tflite"
    level = pruning_level(label)
    if level is not None:
        from .prune import prune_tflite

        prune_tflite(base, dest, level)
    else:
        quantize_model(base, dest, label, calibration if MODES[label].calibrated else None)
    return dest


def produce_variants(base: Any, labels: List[str], workdir: Any, calibration: Optional[Calibration] = None,
                     log: Callable[[str], None] = lambda message: None) -> SweepFiles:
    """Every variant of ``labels`` that can be made from ``base``, in ``workdir``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    source = tflite_base(Path(base), workdir)
    made: List[Variant] = []
    skipped: List[Tuple[str, str]] = []
    for label in labels:
        if label == BASE_LABEL:
            continue
        if label in MODES and MODES[label].calibrated and calibration is None:
            skipped.append((label, "needs calibration data (--calibration PATH --layout L)"))
            continue
        try:
            path = make_variant(source, label, workdir, calibration)
        except ToolError as exc:
            skipped.append((label, str(exc)))
            continue
        made.append(Variant(label, path, read_sidecar(sidecar_path(path), path)))
        log(f"made {label}: {path.name} ({path.stat().st_size} bytes)")
    return SweepFiles(source, made, skipped)
