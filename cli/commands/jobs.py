"""``edgefarm submit`` and ``edgefarm jobs list|show|cancel|wait``.

A job is models x matching devices; the server fans it out into runs, ``--repeat``
of them per model and device, or (``--on any``) per model for whichever
matching device is free. The
device selector is checked here first with the same parser the server uses,
so a typo is reported before anything is sent. Only the run settings given on
the command line are sent; the server's defaults apply to the rest.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import redirect_stdout
from typing import Any, Dict, List, Tuple

from pydantic import ValidationError

from edgefarm.shared.contract.enums import JobState, Placement, Runtime, Task
from edgefarm.shared.contract.schemas import JobCreate, JobOut
from edgefarm.shared.contract.selectors import SelectorError, parse_selector

from ..errors import EXIT_FAILURE, EXIT_REGRESSION, EXIT_TIMEOUT, CliError, validation_summary
from ..output import emit_json, print_fields, print_table, say, warn
from ..waiting import counts_text, describe_progress, run_counts, wait_for_job
from . import Context, add_command
from .watch import print_regressions

#: option dest -> RunSettings field
SETTINGS_OPTIONS = (
    ("runtime", "runtime"), ("accelerator", "accelerator"), ("threads", "threads"),
    ("warmup_runs", "warmup_runs"), ("runs", "measured_runs"), ("min_seconds", "min_seconds"),
    ("max_seconds", "max_seconds"), ("sample_limit", "sample_limit"), ("target_ci", "target_ci"),
)
#: flag dest -> RunSettings field, set to true when the flag is given
SETTINGS_FLAGS = (("rerun_throttled", "rerun_throttled"), ("profile", "profile"))


def register(subparsers: Any) -> None:
    _register_submit(subparsers)
    group = subparsers.add_parser("jobs", help="list, show, cancel and wait for jobs",
                                  description="List, show, cancel and wait for jobs.")
    sub = group.add_subparsers(dest="jobs_command", metavar="COMMAND", required=True)
    listing = add_command(sub, "list", run_list, "list jobs, newest first")
    listing.add_argument("--state", choices=[s.value for s in JobState], help="only jobs in this state")
    listing.add_argument("--limit", type=int, default=50, metavar="N",
                         help="the N newest jobs (default 50; 0: every job)")
    show = add_command(sub, "show", run_show, "show a job and its runs")
    show.add_argument("job_id", type=int, metavar="ID")
    cancel = add_command(sub, "cancel", run_cancel, "cancel a job (running runs are told to stop)")
    cancel.add_argument("job_id", type=int, metavar="ID")
    cancel.add_argument("--reason", help="why, recorded on the job and its runs")
    wait = add_command(sub, "wait", run_wait, "wait for a job to end (exit 0 succeeded, 1 failed "
                                              "or cancelled, 3 timeout)")
    wait.add_argument("job_id", type=int, metavar="ID")
    wait.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds (exit 3)")


def _register_submit(subparsers: Any) -> None:
    p = add_command(subparsers, "submit", run_submit, "submit a benchmark job")
    p.add_argument("--model", dest="models", action="append", required=True, metavar="M",
                   help="model id, name or sha256; repeat for several models")
    p.add_argument("--dataset", metavar="D", help="dataset id or name (default: latency only)")
    p.add_argument("--devices", required=True, metavar="SELECTOR",
                   help="all, platform=X, label=X or id=N, joined by commas")
    p.add_argument("--on", dest="placement", choices=[p.value for p in Placement],
                   help="each: run on every matching device (default); any: on one free matching device")
    p.add_argument("--repeat", type=int, metavar="N",
                   help="N runs per model (with --on each: per model and device; with --on any: "
                        "spread over the matching devices)")
    p.add_argument("--runtime", choices=[r.value for r in Runtime], help="default: tflite")
    p.add_argument("--accelerator", help="cpu, gpu, dsp, npu, ... (default: cpu)")
    p.add_argument("--threads", type=int, metavar="N")
    p.add_argument("--warmup-runs", type=int, metavar="N")
    p.add_argument("--runs", type=int, metavar="N", help="measured runs")
    p.add_argument("--min-seconds", type=float, metavar="S", help="measure at least this long")
    p.add_argument("--max-seconds", type=float, metavar="S", help="measure at most this long")
    p.add_argument("--sample-limit", type=int, metavar="N", help="evaluate at most N samples")
    p.add_argument("--target-ci", type=float, metavar="F",
                   help="measure until the 95%% interval of p50 is within +-F of it (0.01 = 1%%) or "
                        "--max-seconds has passed; the result says whether it was met")
    p.add_argument("--rerun-throttled", action="store_true",
                   help="re-run a throttled measurement once after a cool-down (both are kept)")
    p.add_argument("--profile", action="store_true",
                   help="also measure load stages, per-layer time and per-layer drift")
    p.add_argument("--option", dest="options", action="append", metavar="KEY=VALUE",
                   help="a runtime option (VALUE read as JSON when it parses, e.g. xnnpack=false); "
                        "repeat for several")
    p.add_argument("--task", choices=[t.value for t in Task])
    p.add_argument("--priority", type=int, metavar="P", help="-100..100, higher first")
    p.add_argument("--timeout", type=int, metavar="S", help="seconds a run may take")
    p.add_argument("--max-attempts", type=int, metavar="N")
    p.add_argument("--require-device", action="store_true",
                   help="refuse the job when no device matches now (instead of waiting)")
    p.add_argument("--name", help="a name for the job")
    p.add_argument("--wait", action="store_true", help="then wait for the job like 'jobs wait'")
    p.add_argument("--wait-timeout", type=float, metavar="S", help="with --wait: give up after S s")
    p.add_argument("--fail-on-regression", action="store_true",
                   help=f"with --wait: exit {EXIT_REGRESSION} and print them when any result of the job "
                        "regressed against its series' baseline")


def build_job(args: argparse.Namespace) -> Dict[str, Any]:
    """The JobCreate body from the submit options; CliError (exit 2) when invalid."""
    try:
        parse_selector(args.devices)
    except SelectorError as exc:
        raise CliError(f"bad device selector {args.devices!r}: {exc}")
    settings = {field: getattr(args, dest) for dest, field in SETTINGS_OPTIONS
                if getattr(args, dest) is not None}
    settings.update({field: True for dest, field in SETTINGS_FLAGS if getattr(args, dest, False)})
    if getattr(args, "options", None):
        settings["options"] = runtime_options(args.options)
    body: Dict[str, Any] = {"models": args.models, "devices": args.devices.strip(), "settings": settings}
    optional = {"dataset": args.dataset, "task": args.task, "priority": args.priority,
                "timeout_seconds": args.timeout, "max_attempts": args.max_attempts, "name": args.name,
                "placement": args.placement, "repeat": args.repeat}
    body.update({key: value for key, value in optional.items() if value is not None})
    if args.require_device:
        body["require_device"] = True
    try:
        JobCreate.model_validate(body)
    except ValidationError as exc:
        raise CliError(f"invalid job: {validation_summary(exc)}")
    return body


def runtime_options(pairs: List[str]) -> Dict[str, Any]:
    """``KEY=VALUE`` pairs as a dict; a VALUE that parses as JSON is taken as such."""
    options: Dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"bad --option {pair!r}: expected KEY=VALUE")
        try:
            options[key.strip()] = json.loads(text)
        except ValueError:
            options[key.strip()] = text
    return options


def run_submit(ctx: Context) -> int:
    args = ctx.args
    if args.fail_on_regression and not args.wait:
        raise CliError("--fail-on-regression needs --wait")
    body = build_job(args)
    job = ctx.client.submit_job(body)
    for warning in job.warnings:
        warn(warning)
    if args.wait:
        if not ctx.json:
            say(f"submitted job {job.id} ({job.state}); waiting for it to end")
        code = _wait(ctx, job.id, args.wait_timeout)
        if args.fail_on_regression and code != EXIT_TIMEOUT:
            return _regression_gate(ctx, job.id, code)
        return code
    if ctx.json:
        emit_json(job.model_dump(mode="json"))
    else:
        print_fields(job_fields(job))
    return 0


def _regression_gate(ctx: Context, job_id: int, code: int) -> int:
    """The CI gate after the job ended: ``EXIT_REGRESSION`` when any of its results
    regressed (printed on stderr), else the job's own exit code."""
    found = ctx.client.list_regressions(job=job_id)
    if not found:
        say(f"edgefarm: no result of job {job_id} regressed")
        return code
    with redirect_stdout(sys.stderr):
        print_regressions(found)
    say(f"edgefarm: {len(found)} regression(s) in job {job_id}")
    return EXIT_REGRESSION


def job_fields(job: JobOut) -> List[Tuple[str, Any]]:
    done, total = run_counts(job)
    settings = job.settings
    return [
        ("job", job.id), ("name", job.name), ("state", job.state), ("task", job.task),
        ("models", job.models), ("dataset", job.dataset_id), ("devices", job.devices),
        ("placement", f"{job.placement}" + (f", repeat {job.repeat}" if job.repeat > 1 else "")
                      + (f", pool {job.pool}" if job.pool else "")),
        ("runtime", f"{settings.runtime} on {settings.accelerator}"
                    + (f", {settings.threads} threads" if settings.threads else "")),
        ("runs", f"{done}/{total} done" + (f" ({counts_text(job.counts)})" if job.counts else "")),
        ("priority", job.priority), ("created", job.created_at), ("finished", job.finished_at),
    ] + ([("cancelled", job.cancel_reason)] if job.cancel_reason else [])


def run_list(ctx: Context) -> int:
    if ctx.args.limit < 0:
        raise CliError("--limit must not be negative")
    jobs = ctx.client.list_jobs(ctx.args.state, limit=ctx.args.limit or None)
    if ctx.json:
        emit_json([j.model_dump(mode="json") for j in jobs])
        return 0
    if not jobs:
        say("no jobs" + (f" in state {ctx.args.state}" if ctx.args.state else ""))
        return 0
    columns = ("id", "name", "state", "task", "models", "devices", "runs done", "priority", "created",
               "finished")
    rows = [(j.id, j.name, j.state, j.task, j.models, j.devices, "{}/{}".format(*run_counts(j)),
             j.priority, j.created_at, j.finished_at) for j in jobs]
    print_table(columns, rows, right=("id", "priority"))
    return 0


def print_job(job: JobOut) -> None:
    print_fields(job_fields(job))
    if not job.runs:
        return
    print()
    columns = ("run", "model", "device", "state", "attempt", "started", "finished", "result", "error")
    rows = [(r.id, r.model_id, "unassigned" if r.device_id is None else r.device_id, r.state,
             f"{r.attempt}/{r.max_attempts}", r.started_at, r.finished_at, r.result_id, r.error)
            for r in job.runs]
    print_table(columns, rows, right=("run", "model", "device", "result"))


def run_show(ctx: Context) -> int:
    job = ctx.client.get_job(ctx.args.job_id)
    if ctx.json:
        emit_json(job.model_dump(mode="json"))
    else:
        print_job(job)
    return 0


def run_cancel(ctx: Context) -> int:
    job = ctx.client.cancel_job(ctx.args.job_id, ctx.args.reason)
    if ctx.json:
        emit_json(job.model_dump(mode="json"))
    else:
        say(f"cancelled job {job.id}: {job.cancel_reason or 'no reason given'}")
        print_fields(job_fields(job))
    return 0


def run_wait(ctx: Context) -> int:
    return _wait(ctx, ctx.args.job_id, ctx.args.timeout)


def _wait(ctx: Context, job_id: int, timeout: Any) -> int:
    if timeout is not None and timeout < 0:
        raise CliError("--timeout must not be negative")
    job, ended = wait_for_job(ctx.client, job_id, timeout)
    if ctx.json:
        emit_json(job.model_dump(mode="json"))
    else:
        print_job(job)
    if not ended:
        say(f"edgefarm: gave up after {timeout:g} s; {describe_progress(job)}")
        return EXIT_TIMEOUT
    if job.state != JobState.succeeded:
        reason = f": {job.cancel_reason}" if job.cancel_reason else ""
        say(f"edgefarm: job {job.id} ended {job.state}{reason}")
        return EXIT_FAILURE
    return 0
