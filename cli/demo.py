"""The README's main job (``make demo``): a whole farm on this machine, offline,
reproducing the study's two tables on real models end to end.

In the data dir (``./edgefarm-data`` or ``$EDGEFARM_DATA_DIR``), in six steps shown
on stderr (``step k/6``, then ``run k/n`` while the agent works), it

1. starts ``edgefarm-server serve`` on the embedded SQLite default (port 8000 or
   ``$EDGEFARM_PORT``; a free port when that one is taken) with a 2 s agent poll
   (unless ``EDGEFARM_POLL_WAIT_SECONDS`` says otherwise) so that it stops quickly,
2. creates an admin and a user token (kept in ``demo-tokens.json``), enrolls a local
   agent once (``agent/agent.toml``) and runs it (``agent/agent.log``),
3. classification: trains the ``digits-mlp`` family on scikit-learn's bundled digits,
   writes its fp32, pruned, fp16 and dynamic-range TFLite variants and the test split
   (``edgefarm.tools.digits``) into ``demo/`` and uploads them through the SDK,
4. segmentation: the study's DeepLabv3 (``edgefarm.examples``), its variants made by
   the sweep tools and the real VOC sample (``demo_deeplab``), uploaded alike,
5. submits the jobs (every variant on ``tflite``, DeepLab fp32 on ``opencv`` too, and
   on ``onnxruntime`` when tf2onnx can convert it) on the local device and follows
   their runs,
6. prints the study's two tables (Classification, Segmentation; Markdown, as
   ``edgefarm results --format markdown``), the URLs and the CLI's ``export`` line,
   the dashboard's DeepLab compare page last, then serves until Ctrl-C or SIGTERM
   and stops the agent and the server.

A second run reuses the tokens, the enrolled agent, the built files and the
uploads (compared by sha256) and submits the jobs again. With
``EDGEFARM_DEMO_EXIT=1`` it stops after the tables (used by the tests).

This module holds the steps in order and the digits files; ``demo_deeplab`` builds
the DeepLab family, ``demo_processes`` supervises the server and agent processes,
``demo_farm`` talks to the farm.
"""

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edgefarm.shared.client import FarmClient, FarmError
from edgefarm.shared.contract.schemas import JobOut

from . import demo_deeplab
from .demo_farm import (
    DATASET_NAME,
    check_accuracy,
    demo_tokens,
    enroll_agent,
    print_report,
    push_dataset,
    push_digits,
    submit,
    wait_jobs,
)
from .demo_processes import Child, DemoError, choose_port, start_server, stop_children
from .output import say

# An agent finishes its long poll before it stops, so a short poll lets the demo
# stop within seconds; with one agent on loopback the extra polls cost nothing.
DEMO_POLL = {"EDGEFARM_POLL_WAIT_SECONDS": "2", "EDGEFARM_POLL_JITTER_SECONDS": "0.5"}
STEPS = 6
DIGITS_NOTE = ("digits-mlp: a 64-32-10 MLP trained here on scikit-learn's bundled digits (8x8 images), "
               "in the role of the study's MobileNet v1 (a small stand-in: its latencies are microseconds); "
               "accuracy is top-1 on its held-out test split.")


def step(number: int, what: str) -> None:
    say(f"step {number}/{STEPS}: {what}")


# ---------------------------------------------------------------- the files it benchmarks


def build_demo_files(demo_dir: Path) -> Tuple[List[Dict[str, Any]], Path]:
    """The digits variants (``variants.json``) and the packed test split, built once."""
    from edgefarm.shared.datasets import pack_directory
    from edgefarm.tools.digits import write_imagefolder, write_variants

    manifest = demo_dir / "variants.json"
    variants = json.loads(manifest.read_text()) if manifest.exists() else []
    for variant in variants:
        variant["path"] = str(demo_dir / Path(variant["path"]).name)
    if not variants or not all(Path(v["path"]).exists() for v in variants):
        started = time.monotonic()
        variants = write_variants(demo_dir)
        variants += quantized_variants(Path(variants[0]["path"]))
        manifest.write_text(json.dumps(variants, indent=2) + "\n")
        say(f"trained digits-mlp and wrote {len(variants)} variants into {demo_dir} "
            f"in {time.monotonic() - started:.1f} s")
    archive = demo_dir / f"{DATASET_NAME}.tar"
    if not archive.exists():
        images = demo_dir / DATASET_NAME
        count = write_imagefolder(images)
        pack_directory(images, archive)
        say(f"wrote the digits test split ({count} images) as {archive}")
    return variants, archive


def quantized_variants(base: Path) -> List[Dict[str, Any]]:
    """fp16 and dynamic-range int8 variants of the base, with ai-edge-quantizer when it
    is installed (the [tools] extra on Python 3.10+); none otherwise."""
    try:
        from edgefarm.tools.quantize import quantize_model
    except ImportError:
        return []
    made = []
    for mode, label in (("fp16", "fp16"), ("dynamic-all", "dynamic")):
        path = base.with_name(base.name.replace("-fp32", f"-{label}"))
        try:
            report = quantize_model(base, path, mode)
        except Exception as exc:  # the demo goes on with the variants it has
            say(f"could not make the {label} variant ({exc}); going on without it")
            continue
        made.append({"path": str(path), "name": path.stem, "accuracy_in_process": None,
                     "recipe": {"tool": "ai-edge-quantizer", "mode": mode,
                                "recipe": report.get("recipe_name", mode)},
                     "variant": {"quantization": label, "sparsity": None, "label": label}})
    return made


# ---------------------------------------------------------------- the main job


def benchmark(user: FarmClient, data_dir: Path, device_id: int) -> Tuple[List[JobOut], List[Dict[str, Any]],
                                                                      Dict[int, str]]:
    """Build and upload what the jobs need, then submit them; the jobs, the digits
    variants and the model names by id."""
    step(3, "classification: the digits-mlp family and its test split")
    variants, archive = build_demo_files(data_dir / "demo")
    digits = push_digits(user, variants)
    digits_set = push_dataset(user, archive, DATASET_NAME, "imagefolder")
    step(4, f"segmentation: the {demo_deeplab.FAMILY} family (sweep) and the {demo_deeplab.DATASET_NAME} set")
    folder = data_dir / "demo" / "deeplabv3"
    folder.mkdir(parents=True, exist_ok=True)
    voc_archive = demo_deeplab.build_dataset(folder)
    family = demo_deeplab.push_family(user, demo_deeplab.build_family(folder))
    voc_set = push_dataset(user, voc_archive, demo_deeplab.DATASET_NAME, demo_deeplab.LAYOUT)
    step(5, "benchmark jobs on the local agent")
    deeplab = [model for _, model in family]
    jobs = [submit(user, "demo: digits-mlp variants", digits, device_id, digits_set, "classification")]
    for name, models, settings in demo_deeplab.job_plan(family):
        jobs.append(submit(user, name, models, device_id, voc_set, "segmentation", **settings))
    names = {model.id: model.name for model in digits + deeplab}
    return jobs, variants, names


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_demo(data_dir: Path, wanted_port: int, exit_after: bool) -> int:
    env = dict(os.environ, EDGEFARM_DATA_DIR=str(data_dir), EDGEFARM_LOG_LEVEL="INFO")
    env.pop("EDGEFARM_DATABASE_URL", None)  # the demo is the embedded SQLite default
    for key, value in DEMO_POLL.items():
        env.setdefault(key, value)
    port = choose_port(wanted_port)
    url = f"http://127.0.0.1:{port}"
    server: Optional[Child] = None
    agent: Optional[Child] = None
    try:
        say(f"EdgeFarm demo: data in {data_dir}, server at {url} (log {data_dir / 'server.log'})")
        step(1, "the server (embedded SQLite)")
        server = start_server(data_dir, port, env)
        step(2, "tokens and the local agent")
        tokens = demo_tokens(data_dir, url, env)
        with FarmClient(url, tokens["user"], timeout=120, user_agent="edgefarm-demo") as user, \
                FarmClient(url, tokens["admin"], timeout=60, user_agent="edgefarm-demo") as admin:
            config_path, device_id = enroll_agent(data_dir, url, admin, user, env)
            agent = Child("agent", ["-m", "edgefarm.agent.cli", "run", "--config", str(config_path)],
                          data_dir / "agent" / "agent.log", env)
            jobs, variants, names = benchmark(user, data_dir, device_id)
            jobs = wait_jobs(user, jobs, [server, agent], names)
            results = {job.id: user.list_results({"job": job.id}) for job in jobs}
        check_accuracy(results[jobs[0].id], variants)
        step(6, "the study's tables")
        notes = {"classification": DIGITS_NOTE, "segmentation": demo_deeplab.NOTE}
        print_report(url, [r for job in jobs for r in results[job.id]], tokens["user"], notes,
                     demo_deeplab.FAMILY)
        if exit_after:
            return 1 if any(job.state != "succeeded" for job in jobs) else 0
        say(f"\nserving at {url} until Ctrl-C (agent log {agent.log_path})")
        while True:
            server.check_alive("stopped unexpectedly")
            agent.check_alive("stopped unexpectedly")
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("\nstopping the agent and the server ...")
        return 0
    finally:
        stop_children(agent, server)


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    data_dir = Path(os.environ.get("EDGEFARM_DATA_DIR") or "edgefarm-data").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = int(os.environ.get("EDGEFARM_PORT") or 8000)
    exit_after = os.environ.get("EDGEFARM_DEMO_EXIT", "") not in ("", "0")
    try:
        return run_demo(data_dir, port, exit_after)
    except (DemoError, FarmError) as exc:
        say(f"edgefarm demo: error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
