"""What the compression tools share: their error type, file hashes, the
flatbuffers object API of a ``.tflite`` file, and samples of a local dataset
read through the agent's own dataset readers and pre-processing.

Samples are never invented: calibration (``tools.quantize``) and fine-tuning
(``tools.prune``) see the tensors an agent would feed the model, decoded by
``agent.evaluation.datasets`` and built by ``agent.evaluation.preprocess``.
A dataset is a folder, or a zip/tar archive that is extracted (with the
agent's safety checks) into a temporary folder for the duration.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

#: Layouts whose samples are records of one file (cheap to decode in order).
RECORD_LAYOUTS = ("mnist-idx", "cifar10-bin")


class ToolError(Exception):
    """A tool cannot do what was asked; the message says why, for a person."""


def file_sha256(path: Any) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def schema_module() -> Any:
    """LiteRT's generated TFLite schema (``ModelT`` and friends), from the first
    interpreter package that ships it."""
    for name in ("ai_edge_litert.schema_py_generated", "tflite_runtime.schema_py_generated",
                 "tensorflow.lite.python.schema_py_generated"):
        try:
            return __import__(name, fromlist=["ModelT"])
        except ImportError:
            continue
    raise ToolError("rewriting .tflite files needs LiteRT: pip install 'edgefarm[tools]'")


def read_model_object(path: Any) -> Tuple[Any, Any]:
    """``(schema module, ModelT)`` of the ``.tflite`` file: the whole model as
    mutable Python objects (buffers as numpy uint8 arrays). Buffers stored after
    the flatbuffer (``offset > 1``, as ai-edge-quantizer writes them) are read
    in, so that ``model_object_bytes`` writes a self-contained file."""
    import numpy as np

    schema = schema_module()
    data = Path(path).read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ToolError(f"{path} is not a TFLite model (no TFL3 identifier)")
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    for buffer in model.buffers or []:
        if buffer.offset > 1:
            if buffer.offset + buffer.size > len(data):
                raise ToolError(f"{path}: a buffer lies outside the file (truncated?)")
            chunk = data[buffer.offset:buffer.offset + buffer.size]
            buffer.data = np.frombuffer(chunk, dtype=np.uint8)
            buffer.offset, buffer.size = 0, 0
    return schema, model


def model_object_bytes(model: Any) -> bytes:
    """The ``ModelT`` serialised as a ``.tflite`` file."""
    import flatbuffers

    builder = flatbuffers.Builder(1024 * 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_atomically(path: Any, data: bytes) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)


@contextmanager
def dataset_folder(path: Any, layout: str) -> Iterator[Path]:
    """The folder holding the ``layout`` dataset at ``path`` (a folder, or an
    archive extracted into a temporary folder that is removed afterwards)."""
    from shared.layouts import DatasetError, safe_extract, validate_archive

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
    from agent.evaluation.datasets import iter_decoded, load_image
    from shared.layouts import list_samples

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
    from agent.evaluation.preprocess import InputSpec, preprocess_image
    from shared.layouts import DatasetError, list_samples

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
