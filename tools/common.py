"""What the compression tools share: their error type, a ``.tflite`` file as
objects (``edgefarm.shared.formats.tflite_objects``, errors as ToolError), a dataset
given as a folder or an archive (``dataset_folder``), and its samples as input
tensors (``dataset_inputs``).

Samples are never invented: calibration (``edgefarm.tools.quantize``,
``edgefarm.tools.dlc``) and fine-tuning (``edgefarm.tools.prune``) see the tensors an
agent would feed the model, spread over the dataset, decoded and pre-processed by
``edgefarm.shared.datasets.dataset.sample_inputs``. A dataset is a folder, or a
zip/tar archive that is extracted (with the agent's safety checks) into a temporary
folder for the duration.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Tuple

if TYPE_CHECKING:  # pragma: no cover - imported when used: the CLI imports ToolError without numpy
    from edgefarm.shared.datasets.dataset import SampleInputs
    from edgefarm.shared.datasets.preprocess import InputSpec


class ToolError(Exception):
    """A tool cannot do what was asked; the message says why, for a person."""


def read_model_object(path: Any) -> Tuple[Any, Any]:
    """``(schema module, ModelT)`` of a ``.tflite`` file (``formats.tflite_objects``),
    with its errors as ToolError."""
    from edgefarm.shared.formats import ModelFormatError
    from edgefarm.shared.formats.tflite_objects import SchemaUnavailable
    from edgefarm.shared.formats.tflite_objects import read_model_object as read_object

    try:
        return read_object(path)
    except (ModelFormatError, SchemaUnavailable) as exc:
        raise ToolError(str(exc))


@contextmanager
def dataset_folder(path: Any, layout: str) -> Iterator[Path]:
    """The folder holding the ``layout`` dataset at ``path`` (a folder, or an
    archive extracted into a temporary folder that is removed afterwards)."""
    from edgefarm.shared.datasets import DatasetError, safe_extract, validate_archive

    source = Path(path)
    if source.is_dir():
        yield source
        return
    if not source.is_file():
        raise ToolError(f"no such dataset folder or archive: {source}")
    try:
        summary = validate_archive(source, layout)
    except DatasetError as exc:
        raise ToolError(f"{source}: {exc}")
    with tempfile.TemporaryDirectory(prefix="edgefarm-dataset-") as tmp:
        safe_extract(source, Path(tmp) / "data")
        yield Path(tmp) / "data" / summary.root


def dataset_inputs(root: Path, layout: str, split: Optional[str], count: Optional[int],
                   spec: InputSpec, pre: Any = None) -> SampleInputs:
    """``count`` samples (all when None) of the dataset folder ``root``, spread over it,
    as input tensors for ``spec`` (an ``InputSpec``) with their labels
    (``edgefarm.shared.datasets.dataset.SampleInputs``)."""
    from edgefarm.shared.datasets import DatasetError
    from edgefarm.shared.datasets.dataset import open_dataset, sample_inputs

    try:
        found = sample_inputs(open_dataset(root, layout, split), count, spec, pre)
    except (DatasetError, ValueError) as exc:
        raise ToolError(f"cannot read samples of {root} as {layout}: {exc}")
    if not found.tensors:
        raise ToolError(f"the {layout} dataset at {root} has no samples")
    return found
