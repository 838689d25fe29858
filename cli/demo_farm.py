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
from edgefarm.shared.contract.schemas import DatasetOut, DeviceOut, JobOut, ModelOut, ResultOut

from .demo_processes import Child, DemoError
from .output import say
from .study_tables import markdown_of

DEVICE_NAME = "local-pc"
DATASET_NAME = "digits-test"
#: The digits MLP runs in microseconds: half a second of timed invokes is plenty.
RUN_SETTINGS = {"runtime": "tflite", "threads": 2, "measured_runs": 50, "min_seconds": 0.5}
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


def push_dataset(user: FarmClient, archive: Path, name: str = DATASET_NAME,
                 layout: str = "imagefolder") -> DatasetOut:
    """The dataset ``name`` on the server, uploaded unless the same archive is there."""
    try:
        dataset: Optional[DatasetOut] = user.get_dataset(name)
    except NotFound:
        dataset = None
    if dataset is not None and dataset.sha256 == sha256_file(archive):
        return dataset
    with open(archive, "rb") as handle:
        dataset = user.push_dataset(handle, archive.name, {"name": name, "layout": layout})
    say(f"uploaded dataset {name} ({dataset.sample_count} images, {layout})")
    return dataset


# ---------------------------------------------------------------- jobs


def submit(user: FarmClient, name: str, models: Sequence[ModelOut], device_id: int,
           dataset: Optional[DatasetOut], task: str, **settings: Any) -> JobOut:
    """One job of ``models`` on the local device; ``settings`` override ``RUN_SETTINGS``."""
    settings = dict(RUN_SETTINGS, **settings)
    runtime = settings["runtime"]
    body: Dict[str, Any] = {"name": name, "models": [m.id for m in models], "task": task,
                            "settings": settings, "devices": f"id={device_id}"}
    if dataset is not None:
        body["dataset"] = dataset.id
    job = user.submit_job(body)
    say(f"submitted job {job.id} ({name}): {len(job.runs)} run(s) on {runtime}, device {device_id}")
    return job


def wait_jobs(user: FarmClient, jobs: List[JobOut], children: List[Child],
              names: Dict[int, str]) -> List[JobOut]:
    """Each job in its final state, waited for with the SDK's loop: one stderr line
    when a run starts and when it ends (``run k/n``, numbered over all the jobs), the
    children checked at every poll. ``names``: model id -> name."""
    started = time.monotonic()
    numbers = {run.id: k for k, run in enumerate((r for job in jobs for r in job.runs), 1)}
    seen: Dict[int, str] = {}
    finished = []
    for job in jobs:
        remaining = max(0.0, started + JOB_TIMEOUT_SECONDS - time.monotonic())
        watch = _watcher(started, children, numbers, seen, names)
        final, ended = user.wait_for_job(job.id, remaining, interval=POLL_SECONDS, on_update=watch)
        if not ended:
            raise DemoError(f"job {job.id} did not finish within {JOB_TIMEOUT_SECONDS} s")
        for run in final.runs:
            if run.error:
                say(f"  run {run.id} {run.state}: {run.error}")
        finished.append(final)
    return finished


def _watcher(started: float, children: List[Child], numbers: Dict[int, int], seen: Dict[int, str],
             names: Dict[int, str]) -> Callable[[JobOut], None]:
    """The ``on_update`` of one wait: a line per run that started or ended; the children alive."""

    def watch(job: JobOut) -> None:
        for run in job.runs:
            state = str(run.state)
            if seen.get(run.id) == state or state in ("queued", "leased"):
                continue
            seen[run.id] = state
            took = ""
            if run.started_at and run.finished_at:
                took = f" in {(run.finished_at - run.started_at).total_seconds():.1f} s"
            say(f"[{time.monotonic() - started:5.1f} s] run {numbers.get(run.id, '?')}/{len(numbers)} "
                f"{state}{took}: {names.get(run.model_id, run.model_id)} on {job.settings.runtime}")
        for child in children:
            child.check_alive("exited while jobs were running")

    return watch


# ---------------------------------------------------------------- results


def check_accuracy(results: List[ResultOut], variants: List[Dict[str, Any]]) -> None:
    """Say whether the agent's top-1 equals the accuracy computed in process at training."""
    expected = {v["name"]: v["accuracy_in_process"] for v in variants
                if v.get("accuracy_in_process") is not None}
    checked = [r for r in results
               if r.model_name in expected and r.metrics is not None and r.metrics.top1 is not None]
    same = [r for r in checked if abs((r.metrics.top1 or 0) - expected[r.model_name]) < 1e-9]
    say(f"accuracy check: the agent's top-1 equals the in-process accuracy for "
        f"{len(same)}/{len(checked)} digits variants")


def print_report(url: str, results: List[ResultOut], user_token: str, notes: Dict[str, str],
                 compare_family: str) -> None:
    """The study's tables (Markdown, one per task), the URLs and the CLI's ``export``
    line on stdout; the dashboard's compare page of ``compare_family`` last."""
    print(markdown_of(results, notes) if results else "no results")
    print(f"API docs: {url}/docs\n"
          f"Results as CSV: {url}/api/v1/results?format=csv\n"
          f"  curl -H \"Authorization: Bearer $EDGEFARM_TOKEN\" \"$EDGEFARM_URL/api/v1/results?format=csv\"\n"
          f"For the edgefarm CLI (e.g. edgefarm results --format markdown, "
          f"edgefarm results --compare {compare_family}):\n"
          f"export EDGEFARM_URL={url} EDGEFARM_TOKEN={user_token}\n"
          f"\nThe {compare_family} family side by side (sign in with the token above):\n"
          f"{url}/compare/{compare_family}", flush=True)
