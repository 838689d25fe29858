"""A farm filled the way the compression study's tables look: DeepLabv3 (fp32,
fp16, dynamic-range, int8) and MobileNet v1 (original, 90% pruned) on a PC, a
Raspberry Pi 3 and an RB5, with figures close to the study's, raw latency
samples, per-class IoU and thermal provenance. Agents are faked over HTTP
(``tests.servers``); used by the browser test and its screenshots."""

import hashlib
import random
import statistics
from pathlib import Path
from typing import Dict, List

from tests.servers import Farm
from tests.tflite_builder import tiny_tflite

DEEPLAB = [  # name, variant, size in bytes
    ("deeplabv3-fp32", {}, 2_936_012),
    ("deeplabv3-fp16", {"quantization": "fp16"}, 1_503_238),
    ("deeplabv3-dynamic", {"quantization": "dynamic"}, 987_340),
    ("deeplabv3-int8", {"quantization": "int8"}, 1_046_512),
]
MOBILENET = [
    ("mobilenet_v1_1.0_224", {}, 16_900_000),
    ("mbv1_100_90_12b4_684", {"sparsity": 0.9, "label": "pruned-0.9"}, 6_200_000),
]
FIGURES = {  # (model, platform) -> (p50 ms, headline metric)
    ("deeplabv3-fp32", "pc"): (92, .5853), ("deeplabv3-fp16", "pc"): (90, .5853),
    ("deeplabv3-dynamic", "pc"): (71, .5744), ("deeplabv3-int8", "pc"): (48, .5712),
    ("deeplabv3-fp32", "rpi3"): (3176, .5853), ("deeplabv3-fp16", "rpi3"): (3120, .5852),
    ("deeplabv3-dynamic", "rpi3"): (2278, .5745), ("deeplabv3-int8", "rpi3"): (1410, .5709),
    ("deeplabv3-fp32", "rb5"): (413, .5853), ("deeplabv3-fp16", "rb5"): (398, .5852),
    ("deeplabv3-dynamic", "rb5"): (305, .5744), ("deeplabv3-int8", "rb5"): (190, .5711),
    ("mobilenet_v1_1.0_224", "pc"): (28, .9759), ("mbv1_100_90_12b4_684", "pc"): (24, .9684),
    ("mobilenet_v1_1.0_224", "rpi3"): (565, .9687), ("mbv1_100_90_12b4_684", "rpi3"): (309, .9692),
    ("mobilenet_v1_1.0_224", "rb5"): (121, .9759), ("mbv1_100_90_12b4_684", "rb5"): (86, .9690),
}
DEVICES = [("pc-lab", "pc", "2.16.1"), ("rpi3-a", "rpi3", "2.14.0"), ("rb5-a", "rb5", "2.16.1")]
VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor"]


def latency(p50: float, count: int, rng: random.Random) -> dict:
    samples = sorted(round(rng.gauss(p50, p50 * 0.025) + abs(rng.gauss(0, p50 * 0.02)), 3)
                     for _ in range(count))
    cut = statistics.quantiles(samples, n=100, method="inclusive")
    return {"count": count, "mean": statistics.fmean(samples), "std": statistics.stdev(samples),
            "min": samples[0], "p50": statistics.median(samples), "p90": cut[89], "p99": cut[98],
            "max": samples[-1], "samples": samples}


def report_body(model: dict, platform: str, version: str, seed: int) -> dict:
    rng = random.Random(seed)
    p50, score = FIGURES[(model["name"], platform)]
    metric = "miou" if model["task"] == "segmentation" else "top1"
    metrics: Dict[str, object] = {metric: score, "sample_count": 1449 if metric == "miou" else 1000}
    if metric == "miou":
        metrics["pixel_accuracy"] = round(0.9 + score / 20, 4)
        metrics["per_class_iou"] = {c: round(min(0.95, max(0.2, rng.gauss(score, 0.15))), 4)
                                    for c in VOC_CLASSES}
    else:
        metrics["top5"] = round(min(0.999, score + 0.02), 4)
    hot = platform == "rpi3"
    return {
        "runtime": {"name": "tflite", "version": version, "accelerator": "cpu", "threads": 4,
                    "delegate": "xnnpack"},
        "agent_version": "0.1.0", "init_ms": round(p50 * 0.4 + 3, 2), "first_inference_ms": round(p50 * 1.6, 2),
        "latency_ms": latency(p50, 60 if hot else 200, rng),
        "end_to_end_ms": latency(p50 * 1.35, 60 if hot else 200, rng),
        "model_size_bytes": model["size_bytes"], "peak_rss_bytes": int(48e6 + model["size_bytes"] * 3),
        "metrics": metrics,
        "environment": {"governor": "ondemand" if hot else "performance",
                        "temp_c_before": 52.1 if hot else 41.0, "temp_c_after": 79.8 if hot else 55.5,
                        "throttled": hot and p50 > 2000, "freq_khz_before": [1200000] * 4,
                        "freq_khz_after": [600000 if hot and p50 > 2000 else 1200000] * 4},
    }


def push_family(farm: Farm, folder: Path, family: str, task: str, specs: List[tuple]) -> List[dict]:
    models = []
    for name, variant, size in specs:
        path = folder / f"{name}.tflite"
        path.write_bytes(tiny_tflite(seed=len(name) * 31 + size % 97))
        model = farm.push_model(path, name=name, family=family, task=task, variant=variant)
        models.append(dict(model, size_bytes=size))
    return models


def load_study_results(farm: Farm, folder: Path) -> dict:
    """Push both families, enrol three devices, run every variant everywhere; returns the models."""
    folder.mkdir(parents=True, exist_ok=True)
    deeplab = push_family(farm, folder, "deeplabv3", "segmentation", DEEPLAB)
    mobilenet = push_family(farm, folder, "mobilenet-v1", "classification", MOBILENET)
    for name, layout in (("voc2012-val", "voc-seg"), ("imagenet-val-1k", "imagenet-val")):
        response = farm.user.post("/api/v1/datasets/register", json={
            "name": name, "layout": layout, "path": f"/srv/datasets/{name}",
            "sha256": hashlib.sha256(name.encode()).hexdigest(), "sample_count": 1000})
        assert response.status_code == 201, response.text
    agents = {platform: (farm.enrol(name, platform=platform, labels=["lab"]), version)
              for name, platform, version in DEVICES}
    farm.submit(models=[str(m["id"]) for m in deeplab], dataset="voc2012-val", devices="all")
    farm.submit(models=[str(m["id"]) for m in mobilenet], dataset="imagenet-val-1k", devices="all")
    by_id = {m["id"]: m for m in deeplab + mobilenet}
    for seed, (platform, (agent, version)) in enumerate(agents.items()):
        while (lease := agent.lease()) is not None:
            body = report_body(by_id[lease["model"]["id"]], platform, version, seed * 100 + lease["run_id"])
            response = agent.report(lease, result=body)
            assert response.status_code == 200, response.text
    return {"deeplabv3": deeplab, "mobilenet-v1": mobilenet, "agents": agents}
