"""Agent overhead on the DeepLab fixture, measured side by side in one run.

1. Latency: the agent harness's p50 (``edgefarm.agent.execute.run_benchmark``, as
   ``edgefarm-agent bench`` runs it) divided by the p50 of a bare
   ``interpreter.invoke()`` loop on the same model, threads and input.
   Target <= 1.03.
2. Evaluation: the agent's evaluation wall time on a VOC-style dataset divided
   by (samples x bare p50 invoke). Target <= 1.25.

The two measurements alternate (bare, agent, bare, agent, ...) so that drift in
a noisy machine hits both. Both are run for each thread count given (default
1 and 2): on a 2-core machine, 2 inference threads leave no core for the
pipeline's decoding and post-processing, 1 thread leaves one.
Run: ``.venv/bin/python benchmarks/agent_overhead.py``.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT.parent / "shared" / "fixtures"
MODEL = FIXTURES / "deeplabv3_mnv2_dm05_pascal_fp32.tflite"
PHOTO = FIXTURES / "deeplab_demo_person_horse.jpg"


def bare_p50(threads: int, x: np.ndarray, seconds: float, runs: int) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(MODEL), num_threads=threads)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    for _ in range(3):
        interpreter.invoke()
    samples, start = [], time.perf_counter()
    while len(samples) < runs or time.perf_counter() - start < seconds:
        t0 = time.perf_counter_ns()
        interpreter.invoke()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(samples)


def agent_run(threads: int, seconds: float, runs: int, dataset: Path = None):
    from edgefarm.agent.execute import RunSpec, run_benchmark
    from edgefarm.shared.contract.schemas import RunSettings

    settings = RunSettings(threads=threads, measured_runs=runs, min_seconds=seconds,
                           warmup_runs=3, warmup_seconds=0.2)
    spec = RunSpec(model_path=str(MODEL), settings=settings,
                   task="segmentation" if dataset else "latency",
                   dataset_dir=str(dataset) if dataset else None,
                   dataset_layout="voc-seg" if dataset else None)
    return run_benchmark(spec)


def build_dataset(root: Path, count: int) -> Path:
    """``count`` VOC-style samples made from the demo photo (crops and flips of varying sizes)."""
    photo = Image.open(PHOTO).convert("RGB")
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(count):
        w, h = photo.size
        left, top = int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4))
        image = photo.crop((left, top, w - int(rng.integers(0, w // 4)), h - int(rng.integers(0, h // 4))))
        if i % 2:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        name = f"sample_{i:03d}"
        image.save(root / "JPEGImages" / f"{name}.jpg", quality=90)
        mask = np.zeros((image.size[1], image.size[0]), np.uint8)
        mask[:, : image.size[0] // 2] = 15
        mask[:4, :] = 255
        Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes()).save(root / "SegmentationClass" / f"{name}.png")
        names.append(name)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(names) + "\n")
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2", help="comma-separated inference thread counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    if not MODEL.exists():
        print(f"fixture {MODEL} absent: ../shared/fixtures must be beside the checkout", file=sys.stderr)
        return 2
    image = Image.open(PHOTO).convert("RGB").resize((513, 513), Image.BILINEAR)
    x = (np.asarray(image, np.float32) / 127.5 - 1.0)[None]
    with tempfile.TemporaryDirectory() as tmp:
        dataset = build_dataset(Path(tmp) / "voc", args.samples)
        for threads in (int(t) for t in args.threads.split(",")):
            measure(threads, x, dataset, args)
    return 0


def measure(threads: int, x: np.ndarray, dataset: Path, args: argparse.Namespace) -> None:
    bare, agent = [], []
    for _ in range(args.rounds):
        bare.append(bare_p50(threads, x, args.seconds, args.runs))
        agent.append(agent_run(threads, args.seconds, args.runs).latency_ms.p50)
    evals = []
    for _ in range(args.rounds):
        p50 = bare_p50(threads, x, args.seconds, args.runs)
        result = agent_run(threads, 0.5, 10, dataset)
        wall = result.extra["evaluation_wall_seconds"]
        evals.append((wall * 1000 / (args.samples * p50), wall, p50, result.extra.get("stage_ms")))
    latency_ratio = statistics.median(a / b for a, b in zip(agent, bare))
    print(f"\n== threads={threads} rounds={args.rounds} samples={args.samples}")
    for i, (b, a) in enumerate(zip(bare, agent)):
        print(f"round {i}: bare invoke p50 {b:.2f} ms, agent harness p50 {a:.2f} ms, ratio {a / b:.3f}")
    print(f"latency: agent p50 / bare p50 = {latency_ratio:.3f} (target <= 1.03)")
    for i, (ratio, wall, p50, stages) in enumerate(evals):
        shown = {k: round(v, 1) for k, v in (stages or {}).items()}
        print(f"eval round {i}: wall {wall:.2f} s for {args.samples} samples, bare p50 {p50:.2f} ms, "
              f"ratio {ratio:.3f}, stage means (ms) {shown}")
    eval_ratio = statistics.median(r for r, *_ in evals)
    print(f"evaluation: wall / (samples x bare p50) = {eval_ratio:.3f} (target <= 1.25)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
