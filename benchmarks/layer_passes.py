"""The layer passes on the DeepLab fixture: how well per-layer times add up, what the
load stages measure, and what the passes cost a run.

For onnxruntime and opencv on the fixture's ONNX conversion (tf2onnx): the sum of
per-layer times over the unprofiled end-to-end time measured in the same pass
(``LayerProfile.e2e_ms``, the median of unprofiled runs interleaved with the profiled
ones: the acceptance's 25%), over the profiled runs' wall time, and over the run's
headline mean latency (measured earlier in the same run). For tflite, onnxruntime and opencv: cold and
warm load and whether the page cache was dropped (a fresh copy of the model file). For
the int8 variant on tflite against the fp32 base and for onnxruntime: the wall time of
``run_benchmark`` with ``profile`` on over off, alternated ``--rounds`` times.
Run: ``.venv/bin/python benchmarks/layer_passes.py``.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODEL = ROOT.parent / "shared" / "fixtures" / "deeplabv3_mnv2_dm05_pascal_fp32.tflite"


def make_models(folder: Path) -> dict:
    from edgefarm.tools.onnx_export import tflite_to_onnx
    from edgefarm.tools.quantize import Calibration, quantize_model
    from tests.support.compression import write_calibration_crops

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tflite_to_onnx(MODEL, folder / "fp32.onnx")
        write_calibration_crops(folder / "calibration")
        quantize_model(MODEL, folder / "int8.tflite", "int8", Calibration(folder / "calibration", "imagefolder",
                                                                          None, 2))
    shutil.copyfile(MODEL, folder / "fp32.tflite")
    return {"onnx": folder / "fp32.onnx", "int8": folder / "int8.tflite", "tflite": folder / "fp32.tflite"}


def run(model: Path, runtime: str, threads: int, profile: bool = True, reference: Path = None):
    from edgefarm.agent.execute import ReferenceRun, RunSpec, run_benchmark
    from edgefarm.shared.contract.schemas import RunSettings

    ref = ReferenceRun(runtime="tflite", model_path=str(reference), max_samples=2) if reference else None
    settings = RunSettings(runtime=runtime, threads=threads, profile=profile)
    started = time.perf_counter()
    result = run_benchmark(RunSpec(model_path=str(model), settings=settings, reference=ref))
    return result, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgefarm-layer-bench-") as tmp:
        models = make_models(Path(tmp))
        print("per-layer sum / unprofiled e2e (same pass), / profiled runs' wall, / headline mean latency:")
        for runtime in ("onnxruntime", "opencv"):
            rows = []
            for _ in range(args.rounds):
                result, _ = run(models["onnx"], runtime, args.threads)
                layers = result.layers
                rows.append((layers.total_ms / layers.e2e_ms, layers.total_ms / layers.run_ms,
                             layers.total_ms / result.latency_ms.mean, layers.total_ms, layers.e2e_ms,
                             result.latency_ms.mean, len(layers.layers)))
            print(f"  {runtime}: " + "; ".join(
                f"{e:.3f}, {a:.3f}, {b:.3f} (sum {c:.1f} ms, e2e {x:.1f} ms, mean {d:.1f} ms, {n} layers)"
                for e, a, b, c, x, d, n in rows))
        print("stages (cold load ms, warm load ms, cache dropped):")
        for runtime, key in (("tflite", "tflite"), ("onnxruntime", "onnx"), ("opencv", "onnx")):
            stages = run(models[key], runtime, args.threads)[0].stages
            figures = {s.name: s for s in stages.stages}
            print(f"  {runtime}: cold {figures['cold_load'].ms:.1f}, warm {figures['warm_load'].ms:.1f}, "
                  f"dropped {stages.cache_dropped}; peak/increase cold "
                  f"{figures['cold_load'].rss_peak_increase_bytes}/{figures['cold_load'].rss_increase_bytes} B")
        print("run wall time, profile on / off:")
        for label, model, runtime, reference in (("int8 tflite vs fp32", models["int8"], "tflite", MODEL),
                                                 ("fp32 onnxruntime", models["onnx"], "onnxruntime", None)):
            on, off = [], []
            for _ in range(args.rounds):
                off.append(run(model, runtime, args.threads, False, reference)[1])
                on.append(run(model, runtime, args.threads, True, reference)[1])
            print(f"  {label}: {statistics.median(on):.1f} s / {statistics.median(off):.1f} s = "
                  f"+{statistics.median(on) - statistics.median(off):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
