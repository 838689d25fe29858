"""Where the CLI finds its server URL and token.

Precedence, first found wins, separately for each of the two settings:

1. the ``--url`` / ``--token`` flags;
2. the ``EDGEFARM_URL`` / ``EDGEFARM_TOKEN`` environment variables;
3. the ``url`` / ``token`` keys of ``~/.config/edgefarm/cli.toml`` (or
   ``$XDG_CONFIG_HOME/edgefarm/cli.toml``).

The file is read with ``tomllib`` when Python has it (3.11+); Python 3.9 and
3.10 have no TOML reader in the standard library, so a tiny parser that reads
top-level ``key = "value"`` lines is used there instead.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional

from .errors import CliError

URL_ENV = "EDGEFARM_URL"
TOKEN_ENV = "EDGEFARM_TOKEN"
_ESCAPES = {"n": "\n", "t": "\t"}


@dataclass(frozen=True)
class Config:
    url: str
    token: str


def config_path(environ: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/edgefarm/cli.toml``, else ``~/.config/edgefarm/cli.toml``."""
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgefarm" / "cli.toml"


def resolve_config(
    url: Optional[str] = None,
    token: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
    path: Optional[Path] = None,
) -> Config:
    """The URL and token to use; raises CliError (exit 2) naming what is missing."""
    environ = os.environ if environ is None else environ
    path = config_path(environ) if path is None else path
    stored = read_config_file(path)
    url = _first(url, environ.get(URL_ENV), stored.get("url"))
    token = _first(token, environ.get(TOKEN_ENV), stored.get("token"))
    if not url:
        raise CliError(
            f"no server URL: pass --url, set {URL_ENV}, or put url = \"http://HOST:8000\" in {path}"
        )
    if not token:
        raise CliError(
            f"no API token: pass --token, set {TOKEN_ENV}, or put token = \"...\" in {path} "
            "(an admin creates one with 'edgefarm-server create-token --role user')"
        )
    if not url.startswith(("http://", "https://")):
        raise CliError(f"server URL {url!r} must start with http:// or https://")
    return Config(url=url.rstrip("/"), token=token)


def _first(*values: Optional[str]) -> Optional[str]:
    for value in values:
        if value is not None and value.strip():
            return value.strip()
    return None


def read_config_file(path: Path) -> Dict[str, str]:
    """The string keys of the config file; an absent file is an empty config."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CliError(f"cannot read the config file {path}: {exc}")
    try:
        data = _parse_toml(text)
    except ValueError as exc:
        raise CliError(f"config file {path} is not valid TOML: {exc}")
    return {key: value for key, value in data.items() if isinstance(value, str)}


def _parse_toml(text: str) -> Dict[str, object]:
    try:
        import tomllib  # novermin  (guarded: 3.11+ only)
    except ImportError:  # Python < 3.11
        return parse_simple_toml(text)
    return tomllib.loads(text)


def parse_simple_toml(text: str) -> Dict[str, str]:
    """Top-level ``key = "value"`` (or ``'value'``) lines; comments and blank lines
    are skipped, and so is everything after the first ``[table]`` header."""
    values: Dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            break
        key, sep, rest = line.partition("=")
        key = key.strip().strip('"')
        if not sep or not key:
            raise ValueError(f"line {number}: expected key = \"value\"")
        values[key] = _parse_string(rest.strip(), number)
    return values


def _parse_string(text: str, number: int) -> str:
    if len(text) < 2 or text[0] not in "\"'":
        raise ValueError(f"line {number}: the value must be a quoted string")
    quote = text[0]
    end = text.find(quote, 1)
    if quote == '"':
        while end > 0 and _escaped(text, end):
            end = text.find(quote, end + 1)
    if end < 0:
        raise ValueError(f"line {number}: unterminated string")
    trailing = text[end + 1:].strip()
    if trailing and not trailing.startswith("#"):
        raise ValueError(f"line {number}: unexpected text after the value")
    body = text[1:end]
    if quote == '"':
        body = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)
    return body


def _escaped(text: str, index: int) -> bool:
    backslashes = 0
    while index - backslashes - 1 >= 0 and text[index - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1
