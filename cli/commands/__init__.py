"""The subcommands, one module per resource, and what they share.

Each module exposes ``register(subparsers)``, which adds its parsers and sets
``handler`` on them: a function ``handler(ctx) -> int`` returning the exit code.
``Context`` carries the parsed arguments and builds the SDK's ``FarmClient``
lazily, so that a handler checks its own input (files, selectors) before the
configuration is even looked at.

Global options (``--url``, ``--token``, ``--json``) are accepted both before
and after the subcommand: ``add_global_options`` adds them to every parser,
with ``SUPPRESS`` defaults on the subparsers so that a value given before the
subcommand is not reset by the subparser.
"""

from __future__ import annotations

import argparse
from typing import Any, Optional

from edgefarm.shared.client import FarmClient

from ..config import resolve_config


class Context:
    """Arguments of one invocation and the client built from them on first use."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._client: Optional[FarmClient] = None

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def client(self) -> FarmClient:
        if self._client is None:
            config = resolve_config(getattr(self.args, "url", None), getattr(self.args, "token", None))
            self._client = FarmClient(config.url, config.token, user_agent="edgefarm-cli")
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def add_global_options(parser: argparse.ArgumentParser, top: bool = False, json: bool = True) -> None:
    """``--url``, ``--token`` and (unless ``json=False``) ``--json``."""
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument("--url", default=default, metavar="URL",
                        help="server URL (default: $EDGEFARM_URL or the config file)")
    parser.add_argument("--token", default=default, metavar="TOKEN",
                        help="API token (default: $EDGEFARM_TOKEN or the config file)")
    if json:
        add_json_option(parser, top)


def add_json_option(parser: Any, top: bool = False) -> None:
    parser.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="print one JSON document on stdout instead of a table")


def add_command(subparsers: Any, name: str, handler: Any, help: str,
                json: bool = True, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand parser with the global options and its handler set."""
    parser = subparsers.add_parser(name, help=help, description=help, **kwargs)
    add_global_options(parser, json=json)
    parser.set_defaults(handler=handler)
    return parser
