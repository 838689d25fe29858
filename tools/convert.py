"""``edgefarm tools convert``: Keras (``.keras``, ``.h5``) and TensorFlow
SavedModel folders to a float32 ``.tflite`` file, and the TensorFlow import
that every TensorFlow-backed tool goes through.

TensorFlow is an optional extra (``edgefarm[tools-tf]``: TensorFlow,
``tf-keras``, ``tensorflow-model-optimization``), imported only when a
command needs it; without it the commands stop with one clear message.
Keras models are read with ``tf-keras`` (Keras 2, which the pruning toolkit
needs); a ``.keras`` file written by Keras 3 is exported to a SavedModel
first and converted from there.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple

from edgefarm.shared.contract.digests import sha256_file
from edgefarm.shared.formats.tflite_objects import write_atomically

from .common import ToolError
from .lineage import write_sidecar

TF_MISSING = "TensorFlow is needed for this: pip install 'edgefarm[tools-tf]'"
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
PACKAGES = ("tensorflow", "tf-keras")


def require_tensorflow() -> Tuple[Any, Any]:
    """``(tensorflow, tf_keras)``; ToolError with the install hint when absent."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.keras is tf-keras (Keras 2)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
        import tf_keras
    except ImportError:
        raise ToolError(TF_MISSING)
    return tf, tf_keras


def source_kind(path: Path) -> str:
    """``"keras"`` or ``"saved_model"``; ToolError for anything else."""
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "saved_model"
        raise ToolError(f"{path} is a folder without saved_model.pb: not a TensorFlow SavedModel")
    if not path.is_file():
        raise ToolError(f"no such model file or folder: {path}")
    if path.suffix.lower() in KERAS_SUFFIXES:
        return "keras"
    raise ToolError(f"{path}: expected a Keras model (.keras, .h5) or a SavedModel folder")


def load_keras(path: Path) -> Any:
    """The Keras 2 model in the file (not compiled)."""
    _, keras = require_tensorflow()
    try:
        return keras.models.load_model(str(path), compile=False)
    except (ValueError, OSError, TypeError) as exc:
        raise ToolError(f"cannot load the Keras model {path} with tf-keras: {exc}")


def to_tflite(model: Any, optimizations: Sequence[str] = ()) -> bytes:
    """A Keras 2 model (or a SavedModel folder path) as float32 TFLite bytes;
    ``optimizations`` names ``tf.lite.Optimize`` members."""
    tf, _ = require_tensorflow()
    if isinstance(model, (str, Path)):
        converter = tf.lite.TFLiteConverter.from_saved_model(str(model))
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [getattr(tf.lite.Optimize, name) for name in optimizations]
    try:
        return bytes(converter.convert())
    except Exception as exc:  # the converter raises ConverterError and plain Exceptions
        raise ToolError(f"TensorFlow Lite conversion failed: {exc}")


def _keras3_tflite(path: Path) -> bytes:
    """A Keras 3 ``.keras`` file, exported to a SavedModel and converted."""
    require_tensorflow()
    try:
        import keras as keras3

        model = keras3.models.load_model(str(path), compile=False)
    except Exception as exc:
        raise ToolError(f"cannot load the Keras model {path} with tf-keras or Keras 3: {exc}")
    with tempfile.TemporaryDirectory(prefix="edgefarm-savedmodel-") as tmp:
        model.export(tmp, format="tf_saved_model")
        return to_tflite(tmp)


def convert_model(source: Any, dest: Any) -> Dict[str, Any]:
    """Write ``dest`` (float32 TFLite) and its lineage sidecar; returns a report."""
    source, dest = Path(source), Path(dest)
    kind = source_kind(source)
    if kind == "saved_model":
        data = to_tflite(source)
    else:
        try:
            data = to_tflite(load_keras(source))
        except ToolError as first:
            if source.suffix.lower() != ".keras":
                raise
            try:
                data = _keras3_tflite(source)
            except ToolError:
                raise first
    write_atomically(dest, data)
    recipe = {"method": "convert", "from": kind, "source": source.name,
              "source_sha256": sha256_file(source) if source.is_file() else None}
    sidecar = write_sidecar(dest, None, recipe, {"quantization": "none", "label": "fp32"}, PACKAGES)
    return {"model": str(dest), "source": str(source), "from": kind, "size_bytes": len(data),
            "lineage_file": str(sidecar)}
