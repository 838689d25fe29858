"""The typed HTTP SDK of an EdgeFarm server (Python 3.9; httpx, pydantic and the
wire contract only).

* ``FarmClient`` (``farm``): users and admins: tokens, models, datasets, jobs (and
  ``wait_for_job``, the poll loop of ``waiting``), results, devices;
* ``AgentSession`` (``agent_session``): a device agent: enroll, heartbeat, lease,
  renew, release, report, and verified resumable downloads;
* ``errors``: the one place where problem+json is parsed and failures are sorted
  into ``FarmError`` subclasses, raised by every client;
* ``Backoff`` (``backoff``): exponential backoff with full jitter for retries;
* ``http``: the plumbing both clients share.
"""

from .agent_session import AgentSession
from .backoff import Backoff
from .errors import (
    AccessDenied,
    Conflict,
    DigestMismatch,
    FarmError,
    NetworkError,
    NotFound,
    ProtocolMismatch,
    Rejected,
    ServerUnavailable,
    TimedOut,
    TransientError,
    UnexpectedAnswer,
    parse_problem,
    problem_message,
)
from .farm import FarmClient
from .waiting import wait_for_job

__all__ = [
    "AccessDenied", "AgentSession", "Backoff", "Conflict", "DigestMismatch",
    "FarmClient", "FarmError", "NetworkError", "NotFound", "ProtocolMismatch", "Rejected",
    "ServerUnavailable", "TimedOut", "TransientError", "UnexpectedAnswer", "parse_problem",
    "problem_message", "wait_for_job",
]
