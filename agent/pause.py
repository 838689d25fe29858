"""A test hook, off by default: ``EDGEFARM_AGENT_PAUSE_AT=<step>`` makes the
process that reaches that step of a run stop itself (SIGSTOP), so a fault test
can kill the agent exactly there. Steps: ``download`` (the agent, before a
download starts), ``load``, ``warmup``, ``measure`` (the run's child process, as
it enters each), ``report`` (the agent, after the report is spooled and before
it is posted). A stopped process continues on SIGCONT."""

import os
import signal

PAUSE_VARIABLE = "EDGEFARM_AGENT_PAUSE_AT"
STEPS = ("download", "load", "warmup", "measure", "report")


def pause_at(step: str) -> None:
    if os.environ.get(PAUSE_VARIABLE) == step:
        os.kill(os.getpid(), signal.SIGSTOP)
