"""Results that carry the data for intervals and significance (raw latency samples,
per-sample correctness, per-image IoU counts), built with ``edgefarm.shared.stats.encoding``
and posted through the real agent API (``Farm``/``AgentSession``)."""

import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from edgefarm.shared.stats import bootstrap, encoding, quantile_ci

SAMPLE_IDS = [f"val/{i:05d}.png" for i in range(1000)]
IMAGE_IDS = [f"voc/{i:04d}.jpg" for i in range(60)]


def latency_samples(seed: int, median_ms: float, count: int = 3000, spread: float = 0.05) -> List[float]:
    rng = random.Random(seed)
    return [round(median_ms * rng.lognormvariate(0.0, spread), 6) for _ in range(count)]


def latency_stats(samples: Sequence[float]) -> dict:
    ordered = sorted(samples)
    n = len(ordered)
    mean = sum(ordered) / n
    std = (sum((x - mean) ** 2 for x in ordered) / n) ** 0.5
    q = {name: quantile_ci(ordered, p, presorted=True).estimate
         for name, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))}
    return {"count": n, "mean": mean, "std": std, "min": ordered[0], "max": ordered[-1], **q,
            "samples": list(samples)}


def correct_flags(seed: int, accuracy: float = 0.8) -> List[bool]:
    rng = random.Random(seed)
    return [rng.random() < accuracy for _ in SAMPLE_IDS]


def improved(flags: Sequence[bool], gained: int, lost: int, seed: int = 7) -> List[bool]:
    """``flags`` with ``gained`` wrong samples made right and ``lost`` right ones made wrong."""
    rng = random.Random(seed)
    wrong = [i for i, f in enumerate(flags) if not f]
    right = [i for i, f in enumerate(flags) if f]
    out = list(flags)
    for i in rng.sample(wrong, gained):
        out[i] = True
    for i in rng.sample(right, lost):
        out[i] = False
    return out


def classification_result(samples: Sequence[float], flags: Sequence[bool]) -> dict:
    return {
        "runtime": {"name": "tflite", "version": "2.3.0", "accelerator": "cpu", "threads": 1},
        "agent_version": "0.1.0", "latency_ms": latency_stats(samples),
        "model_size_bytes": 1000,
        "metrics": {"sample_count": len(flags), "top1": sum(flags) / len(flags),
                    "per_sample": {"count": len(flags),
                                   "order_sha256": encoding.sample_order_sha256(SAMPLE_IDS),
                                   "top1_correct": encoding.pack_flags(flags)}},
    }


def iou_tables(seed: int, quality: float = 0.7, classes: int = 21):
    """Per-image intersection and union tables: each image holds background and two classes."""
    rng = random.Random(seed)
    inter, union = [], []
    for _ in IMAGE_IDS:
        i_row, u_row = [0] * classes, [0] * classes
        for c in [0] + rng.sample(range(1, classes), 2):
            u = rng.randrange(500, 20000)
            u_row[c] = u
            i_row[c] = int(u * min(1.0, max(0.0, rng.gauss(quality, 0.08))))
        inter.append(i_row)
        union.append(u_row)
    return inter, union


def segmentation_result(samples: Sequence[float], inter, union) -> dict:
    counts = bootstrap.ImageCounts.from_tables(inter, union)
    sums = bootstrap.sums(counts.rows, range(len(counts.rows)))
    return {
        "runtime": {"name": "tflite", "version": "2.3.0", "accelerator": "cpu", "threads": 1},
        "agent_version": "0.1.0", "latency_ms": latency_stats(samples), "model_size_bytes": 1000,
        "metrics": {"sample_count": len(inter), "miou": bootstrap.miou_of(*sums),
                    "pixel_accuracy": bootstrap.pixel_accuracy_of(*sums),
                    "per_sample": {"count": len(inter),
                                   "order_sha256": encoding.sample_order_sha256(IMAGE_IDS),
                                   "iou": {"classes": len(inter[0]), "images": len(inter),
                                           "intersection": encoding.pack_counts(inter),
                                           "union": encoding.pack_counts(union)}}},
    }


def post_family(farm, folder: Path, family: str, task: str, results: Dict[str, Optional[dict]],
                device: str = "pc-sig") -> Dict[str, dict]:
    """Push one model per entry of ``results`` (name -> result body, the first the family's
    original), run them as one job on one enrolled device, report the bodies; returns
    name -> model."""
    from edgefarm.shared.formats.tflite_builder import tiny_tflite

    models = {}
    for i, name in enumerate(results):
        path = Path(folder) / f"{name}.tflite"
        path.write_bytes(tiny_tflite(seed=100 + i))
        variant = {} if i == 0 else {"quantization": "none", "label": name}
        models[name] = farm.push_model(path, name=name, family=family, task=task, variant=variant)
    agent = farm.enroll(device)
    farm.submit(models=[str(m["id"]) for m in models.values()], devices=f"id={agent.device_id}")
    by_id = {m["id"]: name for name, m in models.items()}
    while (lease := agent.lease()) is not None:
        response = agent.report(lease, result=results[by_id[lease["model"]["id"]]])
        assert response.status_code == 200, response.text
    return models
