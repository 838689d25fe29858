"""The one exception the CLI raises on purpose, and its exit codes.

Every handler and helper signals failure with ``CliError(message, code)``;
``edgefarm.cli.main`` prints ``edgefarm: error: <message>`` on stderr and exits with
``code``. The codes are part of the interface that scripts rely on:

* ``EXIT_USAGE`` (2): bad input, missing configuration, any HTTP 4xx answer;
* ``EXIT_FAILURE`` (1): the server failed (5xx) or could not be reached, or a
  waited-for job ended failed or cancelled;
* ``EXIT_TIMEOUT`` (3): ``jobs wait`` gave up before the job ended;
* ``EXIT_REGRESSION`` (4): ``submit --wait --fail-on-regression``: a result of the
  job regressed against its series' baseline (the CI gate).

``from_farm_error`` is the one place where a failed request (the SDK's sorted
``FarmError``) becomes such a message and code. ``validation_summary`` turns a
pydantic validation error (the CLI validates request bodies locally before
sending them) into such a one-line message.
"""

from typing import Any

from edgefarm.shared.client import FarmError, NetworkError, TimedOut

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_REGRESSION = 4


class CliError(Exception):
    """A failure with a message meant for a person and the exit code to use."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


def from_farm_error(error: FarmError) -> CliError:
    """Any 4xx answer: exit 2 with the server's ``title: detail``; 5xx, network
    failures, timeouts and unreadable answers: exit 1 with the server's URL."""
    url, status = error.server_url, error.status
    if isinstance(error, TimedOut):
        return CliError(f"the EdgeFarm server at {url} did not answer in time ({error.summary})",
                        EXIT_FAILURE)
    if isinstance(error, NetworkError):
        return CliError(f"cannot reach the EdgeFarm server at {url}: {error.summary}", EXIT_FAILURE)
    if status is not None and 400 <= status < 500:
        return CliError(error.summary, EXIT_USAGE)
    if status is not None and status >= 500:
        return CliError(f"server error at {url}: {error.summary}", EXIT_FAILURE)
    return CliError(error.message, EXIT_FAILURE)


def validation_summary(exc: Any) -> str:
    """A pydantic ``ValidationError`` as one line: ``field: message; ...``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts)
