"""Lineage sidecars: where a derived model comes from, written beside it as
``OUT.lineage.json`` and read back by ``edgefarm models push --lineage``.

A sidecar holds the model's own sha256 (so a sidecar is never applied to
another file), its ``Variant`` (quantization, sparsity, label) and its
``Lineage`` (parent sha256, recipe, calibration dataset sha256, tool and
versions), both validated with the wire schemas of ``edgefarm.shared.contract.schemas``.

A dataset's sha256 is the one the server records for it: the archive's bytes,
or for a folder the deterministic tar that ``edgefarm datasets push`` packs.

Standard library and ``shared`` only, so the CLI can read sidecars without the
compression tools' dependencies.
"""

from __future__ import annotations

import json
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from edgefarm.shared.contract.digests import sha256_file
from edgefarm.shared.contract.schemas import Lineage, Variant

from .common import ToolError

SIDECAR_SUFFIX = ".lineage.json"
SIDECAR_FORMAT = "edgefarm-lineage/1"


def sidecar_path(model_path: Any) -> Path:
    path = Path(model_path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def tool_name(packages: Sequence[str] = ()) -> str:
    """``edgefarm 0.1.0, ai-edge-quantizer 0.10.0``: this tool and the libraries it used."""
    return ", ".join(f"{p} {package_version(p)}" for p in ("edgefarm",) + tuple(packages))


def dataset_sha256(path: Any) -> str:
    """The sha256 the server gives this dataset when it is pushed as it is."""
    source = Path(path)
    if source.is_file():
        return sha256_file(source)
    from edgefarm.shared.datasets import pack_directory

    with tempfile.TemporaryDirectory(prefix="edgefarm-hash-") as tmp:
        archive = Path(tmp) / "dataset.tar"
        pack_directory(source, archive)
        return sha256_file(archive)


def write_sidecar(model_path: Any, parent_path: Optional[Any], recipe: Dict[str, Any],
                  variant: Dict[str, Any], packages: Sequence[str] = (),
                  calibration: Optional[Any] = None) -> Path:
    """Write ``MODEL.lineage.json`` for the model just written; returns its path.
    ``parent_path`` is the model it derives from (None for an original, such as
    a converted Keras model, which is the base of its family)."""
    lineage = Lineage(
        parent_sha256=sha256_file(parent_path) if parent_path is not None else None,
        recipe=json.loads(json.dumps(recipe, default=str)),
        calibration_dataset_sha256=dataset_sha256(calibration) if calibration else None,
        tool=tool_name(packages),
    )
    document = {
        "format": SIDECAR_FORMAT, "model": Path(model_path).name,
        "model_sha256": sha256_file(model_path),
        "parent": Path(parent_path).name if parent_path is not None else None,
        "variant": Variant.model_validate(variant).model_dump(mode="json", exclude_none=True),
        "lineage": lineage.model_dump(mode="json"),
    }
    path = sidecar_path(model_path)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def read_sidecar(path: Any, model_path: Optional[Any] = None) -> Dict[str, Any]:
    """``{"variant": {...}, "lineage": {...}}`` from a sidecar, validated; when
    ``model_path`` is given, the sidecar must describe that very file."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ToolError(f"cannot read the lineage file {path}: {exc}")
    if not isinstance(document, dict) or document.get("format") != SIDECAR_FORMAT:
        raise ToolError(f"{path} is not an EdgeFarm lineage file (format {SIDECAR_FORMAT})")
    if model_path is not None and document.get("model_sha256") != sha256_file(model_path):
        raise ToolError(f"the lineage file {path} describes another file than {model_path} "
                        "(sha256 differs)")
    try:
        variant = Variant.model_validate(document.get("variant") or {})
        lineage = Lineage.model_validate(document.get("lineage") or {})
    except ValueError as exc:
        raise ToolError(f"invalid lineage file {path}: {exc}")
    return {"variant": variant.model_dump(mode="json", exclude_none=True),
            "lineage": lineage.model_dump(mode="json", exclude_none=True)}
