"""What the compression tools share: their error type, a ``.tflite`` file as
objects (``edgefarm.shared.formats.tflite_objects``, errors as ToolError), and
samples of a local dataset read through the shared dataset readers and
pre-processing.

Samples are never invented: calibration (``edgefarm.tools.quantize``) and fine-tuning
(``edgefarm.tools.prune``) see the tensors an agent would feed the model, decoded by
``edgefarm.shared.datasets.readers`` and built by ``edgefarm.shared.datasets.preprocess``.
A dataset is a folder, or a zip/tar archive that is extracted (with the
agent's safety checks) into a temporary folder for the duration.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

#: Layouts whose samples are records of one file (cheap to decode in order).
RECORD_LAYOUTS = ("mnist-idx", "cifar10-bin")


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


def spread(count: int, wanted: int) -> List[int]:
    """``wanted`` positions spread evenly over ``count`` (all when fewer)."""
    if wanted >= count:
        return list(range(count))
    return sorted({int(i * count / wanted) for i in range(wanted)})


def decoded_samples(root: Path, layout: str, split: Optional[str],
                    positions: Sequence[int]) -> Iterator[Tuple[Any, Optional[int]]]:
    """``(HxWx3 or HxW uint8 image, label)`` of the samples at ``positions``,
    decoded by the agent's readers."""
    from edgefarm.shared.datasets import list_samples
    from edgefarm.shared.datasets.readers import iter_decoded, load_image

    wanted = set(positions)
    if layout in RECORD_LAYOUTS:
        for index, sample in enumerate(iter_decoded(root, layout, split)):
            if index in wanted:
                yield sample.image, sample.label
        return
    samples = list_samples(root, layout, split)
    for index in positions:
        yield load_image(samples[index].image), samples[index].label


def model_inputs(root: Path, layout: str, split: Optional[str], count: Optional[int],
                 shape: Sequence[int], dtype: str, pre: Any = None) -> Tuple[List[Any], List[Any]]:
    """Up to ``count`` samples (all when None), spread over the dataset, as input
    tensors of ``shape``/``dtype`` (NHWC) and their labels."""
    from edgefarm.shared.datasets import DatasetError, list_samples
    from edgefarm.shared.datasets.preprocess import InputSpec, preprocess_image

    try:
        total = len(list_samples(root, layout, split))
        positions = spread(total, count if count is not None else total)
        spec = InputSpec(tuple(shape), dtype, "nhwc")
        pairs = list(decoded_samples(root, layout, split, positions))
    except (DatasetError, ValueError) as exc:
        raise ToolError(f"cannot read samples of {root} as {layout}: {exc}")
    if not pairs:
        raise ToolError(f"the {layout} dataset at {root} has no samples")
    inputs = [preprocess_image(image, spec, pre) for image, _ in pairs]
    return inputs, [label for _, label in pairs]
