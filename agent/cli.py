"""``edgefarm-agent``: enroll, run (the service loop), doctor, bench."""

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

from edgefarm.shared.contract.schemas import DeviceCapabilities, RunSettings

from . import __version__
from .config import AgentConfig, ConfigError, default_config_path, load_config, save_config, write_secret
from .runtimes import REGISTRY

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the person at the terminal: exit 2 with this message."""


def _capabilities(config: AgentConfig) -> DeviceCapabilities:
    from .sysinfo import capabilities

    caps = capabilities(config.labels, platform_override=config.platform, enabled_runtimes=config.runtimes)
    return DeviceCapabilities.model_validate(caps)


def cmd_enroll(args: argparse.Namespace) -> int:
    from edgefarm.shared.client import AgentSession, FarmError

    path = Path(args.config) if args.config else default_config_path()
    config = AgentConfig(server_url=args.server.rstrip("/"))
    if args.name:
        config.name = args.name
    config.labels = list(args.label or [])
    config.platform = args.platform
    if args.state_dir:
        config.state_dir = args.state_dir
    if args.cache_dir:
        config.cache_dir = args.cache_dir
    client = AgentSession(config.server_url, args.token)
    try:
        answer = client.enroll(config.name, _capabilities(config))
    except FarmError as exc:
        raise UsageError(f"enrollment failed: {exc}")
    finally:
        client.close()
    config.token_file = str(Path(config.state_dir) / "agent.token")
    write_secret(config.token_path, answer.agent_token)
    save_config(config, path)
    print(
        f"enrolled as device {answer.device_id} ({config.name}); config {path}, "
        f"token {config.token_path} (0600)",
        file=sys.stderr,
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edgefarm.shared.client import AgentSession

    from .worker import Worker

    config = load_config(args.config)
    try:
        token = config.read_token()
    except FileNotFoundError:
        raise UsageError(f"no agent token at {config.token_path}; run 'edgefarm-agent enroll' first")
    client = AgentSession(config.server_url, token)
    worker = Worker(config, client, _capabilities(config))
    worker.install_signal_handlers()
    logging.getLogger("edgefarm.agent").info("agent %s serving %s", __version__, config.server_url)
    try:
        return worker.run_forever()
    finally:
        client.close()


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose, render

    report = diagnose(args.config)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return 0


def _bench_dataset(path: Optional[str], layout: Optional[str], tmp: str) -> Optional[Path]:
    if not path:
        return None
    if not layout:
        raise UsageError(
            "--dataset needs --layout (voc-seg, imagenet-val, imagefolder, mnist-idx, cifar10-bin)"
        )
    from edgefarm.shared.datasets import DatasetError, safe_extract, validate_archive, validate_directory

    source = Path(path)
    try:
        if source.is_dir():
            validate_directory(source, layout)
            return source
        if not source.exists():
            raise UsageError(f"dataset {source} does not exist")
        validate_archive(source, layout)
        target = Path(tmp) / "dataset"
        safe_extract(source, target)
        return target
    except DatasetError as exc:
        raise UsageError(f"dataset {source}: {exc}")


def cmd_bench(args: argparse.Namespace) -> int:
    from .execute import RunFailed, RunSpec, run_benchmark

    model = Path(args.model)
    if not model.is_file():
        raise UsageError(f"model {model} does not exist")
    settings = {
        "runtime": args.runtime,
        "accelerator": args.accelerator,
        "threads": args.threads,
        "sample_limit": args.sample_limit,
    }
    for key in ("warmup_runs", "measured_runs", "min_seconds", "max_seconds"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    try:
        run_settings = RunSettings(**settings)
    except ValueError as exc:
        raise UsageError(str(exc))
    with tempfile.TemporaryDirectory(prefix="edgefarm-bench-") as tmp:
        dataset = _bench_dataset(args.dataset, args.layout, tmp)
        task = args.task or (
            "segmentation" if args.layout == "voc-seg" else "classification" if dataset else "latency"
        )
        spec = RunSpec(
            model_path=str(model),
            settings=run_settings,
            task=task,
            dataset_dir=str(dataset) if dataset else None,
            dataset_layout=args.layout,
        )
        progress = None if args.json else _stderr_progress
        try:
            result = run_benchmark(spec, progress=progress)
        except RunFailed as exc:
            raise UsageError(str(exc))
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        from .doctor import render_result

        print(render_result(result))
    return 0


def _stderr_progress(info: dict) -> None:
    if sys.stderr.isatty():
        print(f"\r{info.get('phase')}: {info.get('done')}", end="", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgefarm-agent", description="EdgeFarm device agent")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    enroll = sub.add_parser("enroll", help="exchange an enrollment token for this device's agent token")
    enroll.add_argument("--server", required=True)
    enroll.add_argument("--token", required=True, help="one-time enrollment token")
    enroll.add_argument("--config", help=f"config file to write (default {default_config_path()})")
    enroll.add_argument("--name", help="device name (default: hostname)")
    enroll.add_argument("--label", action="append", help="free label (repeatable)")
    enroll.add_argument("--platform", help="override the detected platform (pc, rpi3, rb5, ...)")
    enroll.add_argument("--state-dir")
    enroll.add_argument("--cache-dir")
    enroll.set_defaults(func=cmd_enroll)
    run = sub.add_parser("run", help="serve runs (foreground; the systemd unit runs this)")
    run.add_argument("--config")
    run.set_defaults(func=cmd_run)
    doctor = sub.add_parser("doctor", help="print what this device has and whether the server answers")
    doctor.add_argument("--config")
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(func=cmd_doctor)
    bench = sub.add_parser("bench", help="benchmark a model locally, without a server")
    bench.add_argument("model")
    bench.add_argument("--dataset", help="dataset folder or archive")
    bench.add_argument(
        "--layout", choices=["voc-seg", "imagenet-val", "imagefolder", "mnist-idx", "cifar10-bin"]
    )
    bench.add_argument("--task", choices=["classification", "segmentation", "latency"])
    bench.add_argument("--runtime", default="tflite", choices=sorted(REGISTRY))
    bench.add_argument("--accelerator", default="cpu")
    bench.add_argument("--threads", type=int)
    bench.add_argument("--warmup-runs", type=int)
    bench.add_argument("--runs", dest="measured_runs", type=int)
    bench.add_argument("--min-seconds", type=float)
    bench.add_argument("--max-seconds", type=float)
    bench.add_argument("--sample-limit", type=int)
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(
        level=os.environ.get("EDGEFARM_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ConfigError) as exc:
        print(f"edgefarm-agent: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
