"""Agent configuration: a small TOML file (``/etc/edgefarm/agent.toml`` for
root, ``~/.config/edgefarm/agent.toml`` otherwise, or ``--config PATH``).

Keys: ``server_url``, ``token_file``, ``name``, ``platform`` (override),
``labels``, ``runtimes`` (enabled names), ``threads``, ``cache_dir``,
``cache_max_bytes``, ``state_dir``, ``shutdown`` ("release" or "finish"), a
table ``[runtime_options.NAME]`` per runtime (e.g. ``delegate = "/path.so"``), the
thermal gate's ``[thermal]`` table (``edgefarm.agent.thermal.ThermalConfig``) and the
re-measurement of noisy runs, ``[repetition]``
(``edgefarm.agent.repetition.RepetitionConfig``); both are checked when the file is read.
"""

import os
import socket
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

if sys.version_info >= (3, 11):
    import tomllib  # novermin
else:  # Python 3.9 and 3.10 on the devices
    import tomli as tomllib


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def default_config_path() -> Path:
    if is_root():
        return Path("/etc/edgefarm/agent.toml")
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "edgefarm" / "agent.toml"


def _default_dir(root_path: str, xdg_var: str, fallback: str) -> str:
    if is_root():
        return root_path
    base = Path(os.environ.get(xdg_var) or Path.home() / fallback)
    return str(base / "edgefarm-agent")


@dataclass
class AgentConfig:
    server_url: str = ""
    token_file: str = ""
    name: str = field(default_factory=socket.gethostname)
    platform: Optional[str] = None
    labels: List[str] = field(default_factory=list)
    runtimes: Optional[List[str]] = None  # None: every runtime that imports
    threads: Optional[int] = None
    cache_dir: str = field(
        default_factory=lambda: _default_dir("/var/cache/edgefarm", "XDG_CACHE_HOME", ".cache")
    )
    cache_max_bytes: int = 20 * 1024**3
    state_dir: str = field(
        default_factory=lambda: _default_dir("/var/lib/edgefarm", "XDG_STATE_HOME", ".local/state")
    )
    shutdown: str = "release"
    runtime_options: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    thermal: Dict[str, Any] = field(default_factory=dict)
    repetition: Dict[str, Any] = field(default_factory=dict)

    @property
    def token_path(self) -> Path:
        return Path(self.token_file) if self.token_file else Path(self.state_dir) / "agent.token"

    def read_token(self) -> str:
        """The agent token: a systemd credential when present, else the token file."""
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        if credentials and (Path(credentials) / "agent-token").exists():
            return (Path(credentials) / "agent-token").read_text().strip()
        return self.token_path.read_text().strip()


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or has wrong values."""


def load_config(path: Optional[Path] = None) -> AgentConfig:
    path = Path(path) if path else default_config_path()
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"no agent configuration at {path}; run 'edgefarm-agent enroll' first")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}")
    known = set(AgentConfig.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    config = AgentConfig(**data)
    if config.shutdown not in ("release", "finish"):
        raise ConfigError(f"{path}: shutdown must be 'release' or 'finish'")
    _check_tables(path, config)
    return config


def _check_tables(path: Path, config: AgentConfig) -> None:
    """Refuse a ``[thermal]`` or ``[repetition]`` table the run could not use."""
    from .repetition import RepetitionConfig
    from .thermal import ThermalConfig

    for name, owner in (("thermal", ThermalConfig), ("repetition", RepetitionConfig)):
        table = getattr(config, name)
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {name} must be a table ([{name}])")
        try:
            owner.from_dict(table)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}") from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def dump_config(config: AgentConfig) -> str:
    lines, tables = ["# EdgeFarm agent configuration (written by 'edgefarm-agent enroll')"], []
    for key, value in asdict(config).items():
        if value is None:
            continue
        if key == "runtime_options":
            for name, options in value.items():
                tables.append(f"\n[runtime_options.{name}]")
                tables += [f"{k} = {_toml_value(v)}" for k, v in options.items()]
            continue
        if key in ("thermal", "repetition"):
            if value:
                tables.append(f"\n[{key}]")
                tables += [f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None]
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines + tables) + "\n"


def save_config(config: AgentConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dump_config(config))
    os.replace(tmp, path)


def write_secret(path: Path, secret: str) -> None:
    """Write a token readable by its owner only (0600), never briefly wider."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    os.chmod(path, 0o600)
