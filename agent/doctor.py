"""``edgefarm-agent doctor`` and the human rendering of a bench result."""

from pathlib import Path
from typing import Optional

from edgefarm.shared.contract.schemas import RunResult

from . import __version__


def diagnose(config_path: Optional[str]) -> dict:
    from . import sysinfo
    from .runtimes import available_runtimes

    report = {
        "agent_version": __version__,
        "platform": sysinfo.detect_platform(),
        "arch": sysinfo.machine_arch(),
        "cpu_model": sysinfo.cpu_model(),
        "cores": sysinfo.cpu_count(),
        "memory_bytes": sysinfo.memory_bytes(),
        "os": sysinfo.os_release(),
        "python": sysinfo.python_version(),
        "environment": sysinfo.read_environment(),
        "runtimes": available_runtimes(),
        "server": _server_check(config_path),
    }
    return report


def _server_check(config_path: Optional[str]) -> dict:
    from edgefarm.shared.client import AgentSession, FarmError, NetworkError

    from .config import ConfigError, load_config

    try:
        config = load_config(Path(config_path) if config_path else None)
    except ConfigError as exc:
        return {"configured": False, "message": str(exc)}
    check = {"configured": True, "url": config.server_url}
    try:
        token = config.read_token()
    except OSError as exc:
        token = None
        check["token"] = f"unreadable: {exc}"
    client = AgentSession(config.server_url, token, timeout=5)
    try:
        check["reachable"] = True
        check["server_version"] = client.info().version
        if token:
            answer = client.heartbeat()
            check["token"] = f"accepted (device {answer.device_id}, {answer.status})"
    except FarmError as exc:
        check.setdefault("reachable", False)
        check["message"] = str(exc)
        if isinstance(exc, NetworkError):
            check["reachable"] = False
    finally:
        client.close()
    return check


def render(report: dict) -> str:
    env = report["environment"]
    lines = [
        f"agent      {report['agent_version']} on Python {report['python']}",
        f"platform   {report['platform']} ({report['arch']})",
        f"cpu        {report['cpu_model']} x {report['cores']}",
        f"memory     {_gib(report['memory_bytes'])}",
        f"os         {report['os']}",
        f"governor   {env.get('governor') or 'not readable'}",
        f"frequency  {_freqs(env.get('freq_khz'))}",
        f"temp       {env.get('temp_c') if env.get('temp_c') is not None else 'no sensor'}"
        + (" C" if env.get("temp_c") is not None else ""),
        "runtimes",
    ]
    for runtime in report["runtimes"] or [{"name": "none found", "version": "", "accelerators": []}]:
        lines.append(
            f"  {runtime['name']:<12} {runtime['version'] or ''}  [{', '.join(runtime['accelerators'])}]"
        )
    server = report["server"]
    if not server.get("configured"):
        lines.append(f"server     not configured ({server['message']})")
    else:
        state = "reachable" if server.get("reachable") else "NOT reachable"
        lines.append(
            f"server     {server['url']} {state}"
            + (f" (version {server['server_version']})" if server.get("server_version") else "")
        )
        if server.get("token"):
            lines.append(f"token      {server['token']}")
        if server.get("message"):
            lines.append(f"           {server['message']}")
    return "\n".join(lines)


def _gib(value) -> str:
    return f"{value / 1024**3:.1f} GiB" if value else "unknown"


def _freqs(values) -> str:
    if not values:
        return "not readable"
    return f"{min(values) / 1000:.0f}-{max(values) / 1000:.0f} MHz over {len(values)} cpus"


def render_result(result: RunResult) -> str:
    lat = result.latency_ms
    lines = [
        f"runtime          {result.runtime.name} {result.runtime.version or ''} "
        f"({result.runtime.accelerator}, {result.runtime.threads} threads)",
        f"model size       {result.model_size_bytes:,} bytes",
        f"init             {result.init_ms:.1f} ms",
        f"first inference  {result.first_inference_ms:.2f} ms",
    ]
    if lat:
        lines.append(
            f"latency (ms)     n={lat.count} mean={lat.mean:.2f} std={lat.std:.2f} min={lat.min:.2f} "
            f"p50={lat.p50:.2f} p90={lat.p90:.2f} p99={lat.p99:.2f} max={lat.max:.2f}"
        )
    if result.end_to_end_ms:
        lines.append(f"end to end (ms)  p50={result.end_to_end_ms.p50:.2f} per sample")
    lines.append(f"peak RSS         {result.peak_rss_bytes / 1024**2:.1f} MiB")
    if result.metrics:
        shown = {
            k: v for k, v in result.metrics.model_dump().items() if v is not None and k != "per_class_iou"
        }
        lines.append("metrics          " + "  ".join(f"{k}={_num(v)}" for k, v in shown.items()))
        for name, iou in (result.metrics.per_class_iou or {}).items():
            lines.append(f"  IoU {name:<20} {_num(iou)}")
    if result.environment and result.environment.throttled:
        lines.append("WARNING          the device throttled during the run")
    return "\n".join(lines)


def _num(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
