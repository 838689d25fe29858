"""``edgefarm``: the argument tree, the dispatch to a command handler, and the
exit-code policy.

Exit codes: 0 success; 2 bad input (argparse errors, missing files, bad
selectors, missing URL or token, any HTTP 4xx from the server); 1 server
errors (5xx), connection failures, or a waited-for job that failed or was
cancelled; 3 when ``jobs wait`` (or ``submit --wait``) times out; 4 when
``submit --wait --fail-on-regression`` finds a regressed result. Every error
is one line on stderr, ``edgefarm: error: ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from edgefarm.shared.client import FarmError

from . import __version__
from .commands import (
    Context,
    add_global_options,
    datasets,
    devices,
    jobs,
    models,
    results,
    sweep,
    tools,
    watch,
)
from .errors import EXIT_FAILURE, CliError, from_farm_error

EPILOG = """\
configuration: --url/--token, else $EDGEFARM_URL/$EDGEFARM_TOKEN, else url/token
in ~/.config/edgefarm/cli.toml.
exit codes: 0 ok, 1 server or connection failure (or the job failed),
2 bad input or HTTP 4xx, 3 wait timed out, 4 a result regressed
(submit --wait --fail-on-regression)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgefarm", description="Benchmark compressed models on a remote device farm.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgefarm {__version__}")
    add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (models, datasets, jobs, results, devices, tools, sweep, watch):
        module.register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    ctx = Context(args)
    try:
        return args.handler(ctx)
    except (CliError, FarmError) as exc:
        error = from_farm_error(exc) if isinstance(exc, FarmError) else exc
        print(f"edgefarm: error: {error.message}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        print("edgefarm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (`edgefarm results | head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
