"""The runtime registry: names mapped to ``module:Class``, imported lazily so a
device only needs the libraries of the runtimes it actually uses."""

import importlib
from typing import Dict, List, Type

from .base import BatchRun, LoadOptions, ModelLoadError, Runtime, RuntimeUnavailable, TensorInfo

REGISTRY: Dict[str, str] = {
    "tflite": "edgefarm.agent.runtimes.tflite:TFLiteRuntime",
    "opencv": "edgefarm.agent.runtimes.opencv:OpenCVRuntime",
    "onnxruntime": "edgefarm.agent.runtimes.onnxruntime:ONNXRuntime",
    "snpe": "edgefarm.agent.runtimes.snpe:SNPERuntime",
    "null": "edgefarm.agent.runtimes.null:NullRuntime",
}

__all__ = ["REGISTRY", "BatchRun", "LoadOptions", "ModelLoadError", "Runtime", "RuntimeUnavailable",
           "TensorInfo", "get_runtime_class", "available_runtimes"]


def get_runtime_class(name: str) -> Type[Runtime]:
    if name not in REGISTRY:
        raise RuntimeUnavailable(f"unknown runtime {name!r}; known: {', '.join(sorted(REGISTRY))}")
    module_name, class_name = REGISTRY[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeUnavailable(f"runtime {name!r} cannot be imported: {exc}") from exc
    return getattr(module, class_name)


def available_runtimes(enabled=None) -> List[dict]:
    """Runtimes that import on this device, as RuntimeInfo dicts for the capability report."""
    found = []
    for name in sorted(REGISTRY):
        if enabled is not None and name not in enabled:
            continue
        try:
            cls = get_runtime_class(name)
            version = cls.version()
        except RuntimeUnavailable:
            continue
        found.append({"name": name, "version": version, "accelerators": cls.accelerators()})
    return found
