"""What the main job asks of its farm, all through the SDK's ``FarmClient``: its
tokens and enrolled agent (reused while the server accepts them), the digits
family and its test split uploaded once (a file whose sha256 the server already
has is not sent again), the benchmark jobs, the wait for them, and the results
table on stdout (printed with the CLI's table code)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from edgefarm.shared.client import AccessDenied, FarmClient, NotFound
from edgefarm.shared.contract.digests import sha256_file
from edgefarm.shared.contract.rules import headline_metric
from edgefarm.shared.contract.schemas import DatasetOut, DeviceOut, JobOut, ModelOut, ResultOut

from .demo_processes import Child, DemoError
from .output import format_ms, print_table, say
from .waiting import run_counts

PROJECT = Path(__file__).resolve().parents[1]
DEEPLAB = PROJECT.parent / "shared" / "fixtures" / "deeplabv3_mnv2_dm05_pascal_fp32.tflite"
DEVICE_NAME = "local-pc"
DATASET_NAME = "digits-test"
RUN_SETTINGS = {"runtime": "tflite", "threads": 2, "measured_runs": 50, "min_seconds": 1}
JOB_TIMEOUT_SECONDS = 600
POLL_SECONDS = 0.3
#: Checked with each token: listing tokens needs an admin, listing devices a user.
TOKEN_ROLES = ("admin", "user")


# ---------------------------------------------------------------- tokens and the agent


def demo_tokens(data_dir: Path, url: str, env: Dict[str, str]) -> Dict[str, str]:
    """An admin and a user token, reused from ``demo-tokens.json`` while the server accepts them."""
    path = data_dir / "demo-tokens.json"
    tokens = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for role in TOKEN_ROLES:
        if tokens.get(role) and _token_works(url, role, tokens[role]):
            continue
        created = _run_cli("edgefarm-server create-token", env, "edgefarm.server.cli", "create-token",
                           "--role", role, "--name", f"demo {role}", "--data-dir", str(data_dir))
        tokens[role] = created.stdout.strip()
        changed = True
    if changed:
        path.write_text(json.dumps(tokens, indent=2) + "\n")
        path.chmod(0o600)
    return tokens


def _token_works(url: str, role: str, token: str) -> bool:
    with FarmClient(url, token, timeout=10, user_agent="edgefarm-demo") as client:
        check = client.list_tokens if role == "admin" else client.list_devices
        try:
            check()
        except AccessDenied:
            return False
    return True


def _run_cli(what: str, env: Dict[str, str], module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m module args``, done; DemoError with its stderr when it failed."""
    result = subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0:
        raise DemoError(f"{what} failed:\n{result.stderr}")
    return result


def _local_device(user: FarmClient) -> Optional[DeviceOut]:
    devices = [d for d in user.list_devices() if d.name == DEVICE_NAME]
    return max(devices, key=lambda d: d.id) if devices else None


def enroll_agent(data_dir: Path, url: str, admin: FarmClient, user: FarmClient,
                env: Dict[str, str]) -> Tuple[Path, int]:
    """The agent's config and device id: enrolled the first time, reused after
    (pointed at this run's URL when the port changed)."""
    from edgefarm.agent.config import load_config, save_config

    home = data_dir / "agent"
    config_path = home / "agent.toml"
    device = _local_device(user)
    if config_path.exists() and device is not None:
        config = load_config(config_path)
        if config.token_path.exists():
            if config.server_url != url:
                config.server_url = url
                save_config(config, config_path)
            say(f"agent: reusing device {device.id} ({DEVICE_NAME}), config {config_path}")
            return config_path, device.id
    enroll_token = admin.create_token("enroll", "demo agent").token or ""
    enrolled = _run_cli("edgefarm-agent enroll", env, "edgefarm.agent.cli", "enroll", "--server", url,
                        "--token", enroll_token, "--config", str(config_path),
                        "--state-dir", str(home / "state"), "--cache-dir", str(home / "cache"),
                        "--name", DEVICE_NAME)
    say(enrolled.stderr.strip().splitlines()[-1])
    device = _local_device(user)
    if device is None:
        raise DemoError(f"the agent enrolled but no device named {DEVICE_NAME} is listed")
    return config_path, device.id


# ---------------------------------------------------------------- uploads


def push_model(user: FarmClient, stored: Dict[str, ModelOut], path: Path, meta: Dict[str, Any]) -> ModelOut:
    """The stored model with this file's sha256, uploaded only when the server lacks it."""
    sha = sha256_file(path)
    if sha in stored:
        return stored[sha]
    with open(path, "rb") as handle:
        model, _ = user.push_model(handle, path.name, meta)
    say(f"uploaded model {model.name} (id {model.id}, {model.size_bytes} bytes)")
    stored[sha] = model
    return model


def push_digits(user: FarmClient, variants: List[Dict[str, Any]]) -> List[ModelOut]:
    """The digits variants on the server, base first (the others name it as parent)."""
    from edgefarm.tools.digits import FAMILY, LABELS, MEAN, STD

    stored = {m.sha256: m for m in user.list_models()}
    models: List[ModelOut] = []
    base_sha = None
    for variant in variants:
        meta = {"name": variant["name"], "family": FAMILY, "task": "classification",
                "labels": LABELS, "preprocessing": {"mean": [MEAN], "std": [STD]},
                "variant": {k: v for k, v in variant["variant"].items() if v is not None},
                "description": "MLP 64-32-10 on scikit-learn's digits (edgefarm.tools.digits)"}
        if variant.get("recipe") and base_sha:
            meta["lineage"] = {"parent_sha256": base_sha, "recipe": variant["recipe"],
                               "tool": "edgefarm.tools.digits"}
        model = push_model(user, stored, Path(variant["path"]), meta)
        base_sha = base_sha or model.sha256
        models.append(model)
    return models


def push_dataset(user: FarmClient, archive: Path) -> DatasetOut:
    """The digits test split on the server, uploaded unless the same archive is there."""
    try:
        dataset: Optional[DatasetOut] = user.get_dataset(DATASET_NAME)
    except NotFound:
        dataset = None
    if dataset is not None and dataset.sha256 == sha256_file(archive):
        return dataset
    with open(archive, "rb") as handle:
        dataset = user.push_dataset(handle, archive.name, {"name": DATASET_NAME, "layout": "imagefolder"})
    say(f"uploaded dataset {DATASET_NAME} ({dataset.sample_count} images, imagefolder)")
    return dataset


def push_deeplab(user: FarmClient) -> Optional[ModelOut]:
    """The DeepLabv3 fixture, when ``../shared/fixtures`` has it (optional)."""
    if not DEEPLAB.exists():
        return None
    stored = {m.sha256: m for m in user.list_models()}
    meta = {"name": DEEPLAB.stem, "family": "deeplabv3-mnv2-dm05", "task": "segmentation",
            "variant": {"quantization": "none", "label": "fp32"}}
    return push_model(user, stored, DEEPLAB, meta)


# ---------------------------------------------------------------- jobs


def submit(user: FarmClient, name: str, models: Sequence[ModelOut], device_id: int,
           dataset: Optional[DatasetOut], task: str) -> JobOut:
    body: Dict[str, Any] = {"name": name, "models": [m.id for m in models], "task": task,
                            "settings": RUN_SETTINGS, "devices": f"id={device_id}"}
    if dataset is not None:
        body["dataset"] = dataset.id
    job = user.submit_job(body)
    say(f"submitted job {job.id} ({name}): {len(job.runs)} run(s) on device {device_id}")
    return job


def wait_jobs(user: FarmClient, jobs: List[JobOut], children: List[Child]) -> List[JobOut]:
    """Each job in its final state, waited for with the SDK's loop: one stderr line per
    change of its run states, the children checked at every poll."""
    started = time.monotonic()
    finished = []
    for job in jobs:
        remaining = max(0.0, started + JOB_TIMEOUT_SECONDS - time.monotonic())
        final, ended = user.wait_for_job(job.id, remaining, interval=POLL_SECONDS,
                                         on_update=_watcher(started, children))
        if not ended:
            raise DemoError(f"job {job.id} did not finish within {JOB_TIMEOUT_SECONDS} s")
        for run in final.runs:
            if run.error:
                say(f"  run {run.id} {run.state}: {run.error}")
        finished.append(final)
    return finished


def _watcher(started: float, children: List[Child]) -> Callable[[JobOut], None]:
    """The ``on_update`` of one wait: a line when the run states change; the children alive."""
    shown: List[Tuple[str, ...]] = []

    def watch(job: JobOut) -> None:
        states = tuple(str(run.state) for run in job.runs)
        if shown[-1:] != [states]:
            shown.append(states)
            say(_progress_line(job, time.monotonic() - started))
        for child in children:
            child.check_alive("exited while jobs were running")

    return watch


def _progress_line(job: JobOut, elapsed: float) -> str:
    done, total = run_counts(job)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(job.counts.items()))
    return (f"[{elapsed:5.1f} s] job {job.id} ({job.name}): {done}/{total} runs finished "
            f"({counts}), job {job.state}")


# ---------------------------------------------------------------- results


COLUMNS = ("platform", "runtime", "model", "quantization", "pruning", "accuracy", "p50 ms",
           "p90 ms", "size bytes", "peak RSS MiB")
RIGHT = COLUMNS[4:]


def result_row(result: ResultOut) -> Tuple[Any, ...]:
    """A study-style row: the headline accuracy as a fraction, latency in ms, sizes."""
    accuracy, _ = headline_metric(result.metrics)
    latency = result.latency_ms
    sparsity = result.variant.sparsity
    rss = result.peak_rss_bytes
    return (
        result.platform, result.runtime.name, result.model_name, result.variant.quantization,
        f"{sparsity:.0%}" if sparsity else None, None if accuracy is None else f"{accuracy:.4f}",
        format_ms(latency.p50 if latency else None), format_ms(latency.p90 if latency else None),
        result.model_size_bytes or None, f"{rss / 2**20:.1f}" if rss else None,
    )


def check_accuracy(results: List[ResultOut], variants: List[Dict[str, Any]]) -> None:
    """Say whether the agent's top-1 equals the accuracy computed in process at training."""
    expected = {v["name"]: v["accuracy_in_process"] for v in variants
                if v.get("accuracy_in_process") is not None}
    checked = [r for r in results
               if r.model_name in expected and r.metrics is not None and r.metrics.top1 is not None]
    same = [r for r in checked if abs((r.metrics.top1 or 0) - expected[r.model_name]) < 1e-9]
    say(f"accuracy check: the agent's top-1 equals the in-process accuracy for "
        f"{len(same)}/{len(checked)} digits variants")


def print_report(url: str, results: List[ResultOut], user_token: str) -> None:
    """The results table, the URLs and the CLI's ``export`` line, on stdout."""
    if results:
        print_table(COLUMNS, [result_row(r) for r in results], right=RIGHT, plain=True)
    else:
        print("no results")
    print(f"\nAPI docs: {url}/docs\n"
          f"Results as CSV: {url}/api/v1/results?format=csv\n"
          f"  curl -H \"Authorization: Bearer $EDGEFARM_TOKEN\" \"$EDGEFARM_URL/api/v1/results?format=csv\"\n"
          f"For the edgefarm CLI (e.g. edgefarm results --compare digits-mlp):\n"
          f"export EDGEFARM_URL={url} EDGEFARM_TOKEN={user_token}", flush=True)
