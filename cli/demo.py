"""The README's main job (``make demo``): a whole farm on this machine, offline,
benchmarking a real compressed model family end to end.

In the data dir (``./edgefarm-data`` or ``$EDGEFARM_DATA_DIR``) it

1. starts ``edgefarm-server serve`` on the embedded SQLite default (port 8000 or
   ``$EDGEFARM_PORT``; a free port when that one is taken) with a 2 s agent poll
   (unless ``EDGEFARM_POLL_WAIT_SECONDS`` says otherwise) so that it stops quickly,
2. creates an admin and a user token (kept in ``demo-tokens.json``),
3. enrols a local agent once (``agent/agent.toml``) and runs it (``agent/agent.log``),
4. trains the ``digits-mlp`` family on scikit-learn's bundled digits and writes
   its fp32, pruned-0.5 and pruned-0.8 TFLite variants and the test split as an
   imagefolder dataset into ``demo/`` (``edgefarm.tools.digits``), and uploads them through
   the REST API (the DeepLabv3 fixture too when ``../shared/fixtures`` holds it),
5. submits a benchmark job on the local device, shows its progress on stderr and
   prints the results table, the URLs and the CLI's ``export`` line on stdout,
6. serves until Ctrl-C or SIGTERM, then stops the agent and the server.

A second run reuses the tokens, the enrolled agent, the built files and the
uploads (compared by sha256) and submits the job again. With
``EDGEFARM_DEMO_EXIT=1`` it stops after the table (used by the tests).
"""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import httpx

from edgefarm.shared.contract.rules import headline_metric

PROJECT = Path(__file__).resolve().parents[1]
DEEPLAB = PROJECT.parent / "shared" / "fixtures" / "deeplabv3_mnv2_dm05_pascal_fp32.tflite"
DEVICE_NAME = "local-pc"
DATASET_NAME = "digits-test"
RUN_SETTINGS = {"runtime": "tflite", "threads": 2, "measured_runs": 50, "min_seconds": 1}
FINAL_JOB_STATES = ("succeeded", "failed", "cancelled")
JOB_TIMEOUT_SECONDS = 600
# An agent finishes its long poll before it stops, so a short poll lets the demo
# stop within seconds; with one agent on loopback the extra polls cost nothing.
DEMO_POLL = {"EDGEFARM_POLL_WAIT_SECONDS": "2", "EDGEFARM_POLL_JITTER_SECONDS": "0.5"}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class DemoError(Exception):
    """A step of the demo failed; the message says which and where to look."""


class Child:
    """A subprocess in its own session (Ctrl-C reaches only the demo, which stops
    its children in order), with stdout and stderr in a log file."""

    def __init__(self, name: str, args: List[str], log_path: Path, env: Dict[str, str]):
        self.name, self.log_path = name, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, *args], env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> bool:
        """True when the process ended within ``timeout``; killed otherwise."""
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return False

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------- server, tokens, agent


def choose_port(wanted: int) -> int:
    """``wanted`` when nothing listens on it, else a free port (said on stderr)."""
    for port in (wanted, 0):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen = sock.getsockname()[1]
        if port == 0:
            say(f"port {wanted} is in use; the demo uses port {chosen} instead")
        return chosen
    raise DemoError("no free TCP port on 127.0.0.1")


def start_server(data_dir: Path, port: int, env: Dict[str, str]) -> Child:
    server = Child("server", ["-m", "edgefarm.server.cli", "serve", "--data-dir", str(data_dir),
                              "--port", str(port), "--log-level", "warning"],
                   data_dir / "server.log", env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not server.alive():
            raise DemoError(f"the server exited at start:\n{server.log_tail()}")
        try:
            if httpx.get(f"{url}/api/v1/info", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise DemoError(f"the server did not answer {url}/api/v1/info within 60 s:\n{server.log_tail()}")


def _token_works(url: str, token: str, path: str) -> bool:
    response = httpx.get(url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return response.status_code == 200


def demo_tokens(data_dir: Path, url: str, env: Dict[str, str]) -> Dict[str, str]:
    """An admin and a user token, reused from ``demo-tokens.json`` while the server accepts them."""
    path = data_dir / "demo-tokens.json"
    tokens = json.loads(path.read_text()) if path.exists() else {}
    checks = {"admin": "/api/v1/tokens", "user": "/api/v1/devices"}  # admin-only, user-readable
    changed = False
    for role, check in checks.items():
        if tokens.get(role) and _token_works(url, tokens[role], check):
            continue
        result = subprocess.run(
            [sys.executable, "-m", "edgefarm.server.cli", "create-token", "--role", role,
             "--name", f"demo {role}",
             "--data-dir", str(data_dir)], env=env, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise DemoError(f"edgefarm-server create-token --role {role} failed:\n{result.stderr}")
        tokens[role], changed = result.stdout.strip(), True
    if changed:
        path.write_text(json.dumps(tokens, indent=2) + "\n")
        path.chmod(0o600)
    return tokens


def _local_device(user: httpx.Client) -> Optional[dict]:
    devices = [d for d in _ok(user.get("/api/v1/devices")) if d["name"] == DEVICE_NAME]
    return max(devices, key=lambda d: d["id"]) if devices else None


def enrol_agent(data_dir: Path, url: str, admin: httpx.Client, user: httpx.Client,
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
            say(f"agent: reusing device {device['id']} ({DEVICE_NAME}), config {config_path}")
            return config_path, device["id"]
    enrol_token = _ok(admin.post("/api/v1/tokens", json={"role": "enrol", "name": "demo agent"}))["token"]
    result = subprocess.run(
        [sys.executable, "-m", "edgefarm.agent.cli", "enroll", "--server", url, "--token", enrol_token,
         "--config", str(config_path), "--state-dir", str(home / "state"),
         "--cache-dir", str(home / "cache"), "--name", DEVICE_NAME],
        env=env, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise DemoError(f"edgefarm-agent enroll failed:\n{result.stderr}")
    say(result.stderr.strip().splitlines()[-1])
    device = _local_device(user)
    if device is None:
        raise DemoError(f"the agent enrolled but no device named {DEVICE_NAME} is listed")
    return config_path, device["id"]


# ---------------------------------------------------------------- models and dataset


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


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise DemoError(f"{response.request.method} {response.request.url.path} answered "
                        f"{response.status_code}: {response.text}")
    return response.json()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def push_model(user: httpx.Client, stored: Dict[str, dict], path: Path, meta: dict) -> dict:
    """The stored model with this file's sha256, uploaded only when the server lacks it."""
    sha = sha256_of(path)
    if sha in stored:
        return stored[sha]
    with open(path, "rb") as handle:
        model = _ok(user.post("/api/v1/models", files={"file": (path.name, handle)},
                              data={"meta": json.dumps(meta)}))
    say(f"uploaded model {model['name']} (id {model['id']}, {model['size_bytes']} bytes)")
    stored[sha] = model
    return model


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


def push_digits(user: httpx.Client, variants: List[Dict[str, Any]]) -> List[dict]:
    """The digits variants on the server, base first (the pruned ones name it as parent)."""
    from edgefarm.tools.digits import FAMILY, LABELS, MEAN, STD

    stored = {m["sha256"]: m for m in _ok(user.get("/api/v1/models"))}
    models, base_sha = [], None
    for variant in variants:
        meta = {"name": variant["name"], "family": FAMILY, "task": "classification",
                "labels": LABELS, "preprocessing": {"mean": [MEAN], "std": [STD]},
                "variant": {k: v for k, v in variant["variant"].items() if v is not None},
                "description": "MLP 64-32-10 on scikit-learn's digits (edgefarm.tools.digits)"}
        if variant.get("recipe") and base_sha:
            meta["lineage"] = {"parent_sha256": base_sha, "recipe": variant["recipe"],
                               "tool": "edgefarm.tools.digits"}
        model = push_model(user, stored, Path(variant["path"]), meta)
        base_sha = base_sha or model["sha256"]
        models.append(model)
    return models


def push_dataset(user: httpx.Client, archive: Path) -> dict:
    response = user.get(f"/api/v1/datasets/{DATASET_NAME}")
    if response.status_code == 200 and response.json()["sha256"] == sha256_of(archive):
        return response.json()
    with open(archive, "rb") as handle:
        dataset = _ok(user.post("/api/v1/datasets", files={"file": (archive.name, handle)},
                                data={"name": DATASET_NAME, "layout": "imagefolder"}))
    say(f"uploaded dataset {DATASET_NAME} ({dataset['sample_count']} images, imagefolder)")
    return dataset


def push_deeplab(user: httpx.Client) -> Optional[dict]:
    """The DeepLabv3 fixture, when ``../shared/fixtures`` has it (optional)."""
    if not DEEPLAB.exists():
        return None
    stored = {m["sha256"]: m for m in _ok(user.get("/api/v1/models"))}
    meta = {"name": DEEPLAB.stem, "family": "deeplabv3-mnv2-dm05", "task": "segmentation",
            "variant": {"quantization": "none", "label": "fp32"}}
    return push_model(user, stored, DEEPLAB, meta)


# ---------------------------------------------------------------- jobs and results


def submit(user: httpx.Client, name: str, models: List[dict], device_id: int,
           dataset: Optional[dict], task: str) -> dict:
    body = {"name": name, "models": [m["id"] for m in models], "task": task,
            "settings": RUN_SETTINGS, "devices": f"id={device_id}"}
    if dataset is not None:
        body["dataset"] = dataset["id"]
    job = _ok(user.post("/api/v1/jobs", json=body))
    say(f"submitted job {job['id']} ({name}): {len(job['runs'])} run(s) on device {device_id}")
    return job


def _progress_line(job: dict, elapsed: float) -> str:
    total = len(job["runs"])
    finished = sum(1 for r in job["runs"] if r["state"] in ("succeeded", "failed", "cancelled", "lost"))
    counts = ", ".join(f"{n} {state}" for state, n in sorted(job["counts"].items()))
    return (f"[{elapsed:5.1f} s] job {job['id']} ({job['name']}): {finished}/{total} runs finished "
            f"({counts}), job {job['state']}")


def wait_jobs(user: httpx.Client, jobs: List[dict], children: List[Child]) -> List[dict]:
    """Poll until every job is final, one stderr line per change of its run states."""
    started, shown = time.monotonic(), {}
    pending = {job["id"]: job for job in jobs}
    while True:
        for job_id in list(pending):
            job = _ok(user.get(f"/api/v1/jobs/{job_id}"))
            states = tuple(r["state"] for r in job["runs"])
            if shown.get(job_id) != states:
                shown[job_id] = states
                say(_progress_line(job, time.monotonic() - started))
            pending[job_id] = job
            if job["state"] in FINAL_JOB_STATES:
                for run in job["runs"]:
                    if run["error"]:
                        say(f"  run {run['id']} {run['state']}: {run['error']}")
                jobs = [job if j["id"] == job_id else j for j in jobs]
                del pending[job_id]
        if not pending:
            return jobs
        for child in children:
            if not child.alive():
                raise DemoError(f"the {child.name} exited while jobs were running "
                                f"({child.log_path}):\n{child.log_tail()}")
        if time.monotonic() - started > JOB_TIMEOUT_SECONDS:
            raise DemoError(f"jobs {sorted(pending)} did not finish within {JOB_TIMEOUT_SECONDS} s")
        time.sleep(0.3)


COLUMNS = ("platform", "runtime", "model", "quantization", "pruning", "accuracy", "p50 ms",
           "p90 ms", "size bytes", "peak RSS MiB")


def _ms(value: Optional[float]) -> str:
    """4 significant digits: 0.001234 (a tiny MLP) and 40.47 (DeepLab) both read well."""
    return "-" if value is None else f"{value:.4g}"


def result_row(result: dict) -> Tuple[str, ...]:
    accuracy, _ = headline_metric(result.get("metrics"))
    latency = result.get("latency_ms") or {}
    sparsity = result["variant"].get("sparsity")
    rss = result.get("peak_rss_bytes")
    return (
        result["platform"], result["runtime"]["name"], result["model_name"],
        result["variant"]["quantization"], f"{sparsity:.0%}" if sparsity else "-",
        f"{accuracy:.4f}" if accuracy is not None else "-",
        _ms(latency.get("p50")), _ms(latency.get("p90")),
        str(result.get("model_size_bytes") or "-"), f"{rss / 2**20:.1f}" if rss else "-",
    )


def render_table(rows: List[Tuple[str, ...]]) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    left = {"platform", "runtime", "model", "quantization"}

    def line(cells) -> str:
        return "  ".join(c.ljust(w) if name in left else c.rjust(w)
                         for c, w, name in zip(cells, widths, COLUMNS)).rstrip()

    return "\n".join([line(COLUMNS), line("-" * w for w in widths), *(line(r) for r in rows)])


def check_accuracy(results: List[dict], variants: List[Dict[str, Any]]) -> None:
    """Say whether the agent's top-1 equals the accuracy computed in process at training."""
    expected = {v["name"]: v["accuracy_in_process"] for v in variants
                if v.get("accuracy_in_process") is not None}
    checked = [r for r in results
               if r["model_name"] in expected and (r.get("metrics") or {}).get("top1") is not None]
    same = [r for r in checked if abs(r["metrics"]["top1"] - expected[r["model_name"]]) < 1e-9]
    say(f"accuracy check: the agent's top-1 equals the in-process accuracy for "
        f"{len(same)}/{len(checked)} digits variants")


def report(url: str, user: httpx.Client, jobs: List[dict], user_token: str) -> None:
    results = [r for job in jobs for r in _ok(user.get("/api/v1/results", params={"job": job["id"]}))]
    print(render_table([result_row(r) for r in results]) if results else "no results")
    print(f"\nAPI docs: {url}/docs\n"
          f"Results as CSV: {url}/api/v1/results?format=csv\n"
          f"  curl -H \"Authorization: Bearer $EDGEFARM_TOKEN\" \"$EDGEFARM_URL/api/v1/results?format=csv\"\n"
          f"For the edgefarm CLI (e.g. edgefarm results --compare digits-mlp):\n"
          f"export EDGEFARM_URL={url} EDGEFARM_TOKEN={user_token}", flush=True)


# ---------------------------------------------------------------- the main job


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_children(agent: Optional[Child], server: Optional[Child]) -> None:
    """The agent first (it ends its long poll, then exits), then the server. An agent
    still polling after a grace (a long poll set by the environment) is unblocked by
    stopping the server."""
    if agent is not None:
        agent.terminate()
        try:
            agent.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            if server is not None:
                server.terminate()
        agent.wait(30)
    if server is not None:
        server.terminate()
        server.wait(15)


def run_demo(data_dir: Path, wanted_port: int, exit_after: bool) -> int:
    env = dict(os.environ, EDGEFARM_DATA_DIR=str(data_dir), EDGEFARM_LOG_LEVEL="INFO")
    env.pop("EDGEFARM_DATABASE_URL", None)  # the demo is the embedded SQLite default
    for key, value in DEMO_POLL.items():
        env.setdefault(key, value)
    port = choose_port(wanted_port)
    url = f"http://127.0.0.1:{port}"
    server = agent = None
    try:
        say(f"EdgeFarm demo: data in {data_dir}, server at {url} (log {data_dir / 'server.log'})")
        server = start_server(data_dir, port, env)
        tokens = demo_tokens(data_dir, url, env)
        auth = {"Authorization": f"Bearer {tokens['user']}"}
        admin_auth = {"Authorization": f"Bearer {tokens['admin']}"}
        with httpx.Client(base_url=url, headers=auth, timeout=120) as user, \
                httpx.Client(base_url=url, headers=admin_auth, timeout=60) as admin:
            config_path, device_id = enrol_agent(data_dir, url, admin, user, env)
            agent = Child("agent", ["-m", "edgefarm.agent.cli", "run", "--config", str(config_path)],
                          data_dir / "agent" / "agent.log", env)
            variants, archive = build_demo_files(data_dir / "demo")
            models = push_digits(user, variants)
            dataset = push_dataset(user, archive)
            jobs = [submit(user, "demo: digits-mlp variants", models, device_id, dataset,
                           "classification")]
            deeplab = push_deeplab(user)
            if deeplab is not None:
                jobs.append(submit(user, "demo: deeplabv3 latency", [deeplab], device_id, None, "latency"))
            jobs = wait_jobs(user, jobs, [server, agent])
            results = _ok(user.get("/api/v1/results", params={"job": jobs[0]["id"]}))
            check_accuracy(results, variants)
            report(url, user, jobs, tokens["user"])
        failed = [j for j in jobs if j["state"] != "succeeded"]
        if exit_after:
            return 1 if failed else 0
        say(f"\nserving at {url} until Ctrl-C (agent log {agent.log_path})")
        while server.alive() and agent.alive():
            time.sleep(0.5)
        down = server if not server.alive() else agent
        raise DemoError(f"the {down.name} stopped unexpectedly ({down.log_path}):\n{down.log_tail()}")
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
    except DemoError as exc:
        say(f"edgefarm demo: error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
