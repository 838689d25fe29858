"""``edgefarm history``, ``edgefarm baseline set|list``, ``edgefarm regressions``
and ``edgefarm webhooks add|list|deliveries``: the regression watch.

A series is named by ``--family``, ``--variant``, ``--device`` (id or name) and
``--runtime``, or by one of its results (``--result ID``). ``submit --wait
--fail-on-regression`` (``jobs``) uses ``regressions_of_job`` and
``print_regressions`` from here.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from edgefarm.shared.client import FarmClient
from edgefarm.shared.contract.watch import Event, RegressionOut

from ..errors import CliError
from ..output import emit_json, format_ms, print_fields, print_table, say
from . import Context, add_command


def register(subparsers: Any) -> None:
    history = add_command(subparsers, "history", run_history,
                          "a series' results over time (family x variant x device x runtime)")
    _series_options(history)
    history.add_argument("--limit", type=int, metavar="N", help="the N newest points (default 200)")

    baseline = subparsers.add_parser("baseline", help="hold a series to a result",
                                     description="Hold a series to a result, list baselines.")
    sub = baseline.add_subparsers(dest="baseline_command", metavar="COMMAND", required=True)
    set_ = add_command(sub, "set", run_baseline_set,
                       "hold the result's series to RESULT_ID (or a series to its newest result)")
    set_.add_argument("result_id", type=int, nargs="?", metavar="RESULT_ID")
    _series_options(set_, with_result=False)
    listing = add_command(sub, "list", run_baseline_list, "list baselines")
    listing.add_argument("--family", metavar="F")

    found = add_command(subparsers, "regressions", run_regressions, "list regressions, newest first")
    found.add_argument("--job", type=int, metavar="ID")
    found.add_argument("--family", metavar="F")

    hooks = subparsers.add_parser("webhooks", help="webhooks (admin)", description="Webhooks (admin).")
    sub = hooks.add_subparsers(dest="webhooks_command", metavar="COMMAND", required=True)
    add = add_command(sub, "add", run_webhook_add, "register a URL for events (its secret is shown once)")
    add.add_argument("hook_url", metavar="URL", help="where deliveries are POSTed")
    add.add_argument("--event", dest="events", action="append", required=True,
                     choices=[e.value for e in Event], help="repeat for several events")
    add.add_argument("--description", metavar="TEXT")
    add_command(sub, "list", run_webhook_list, "list webhooks")
    deliveries = add_command(sub, "deliveries", run_deliveries, "a webhook's deliveries and their status")
    deliveries.add_argument("webhook_id", type=int, metavar="ID")


def _series_options(parser: argparse.ArgumentParser, with_result: bool = True) -> None:
    if with_result:
        parser.add_argument("--result", type=int, metavar="ID", help="the series of this result")
    parser.add_argument("--family", metavar="F")
    parser.add_argument("--variant", metavar="V", help="variant label or quantization")
    parser.add_argument("--device", metavar="D", help="device id or name")
    parser.add_argument("--runtime", metavar="R")


def _device_id(client: FarmClient, ref: str) -> int:
    if ref.isdigit():
        return int(ref)
    matches = [d.id for d in client.list_devices() if d.name == ref]
    if not matches:
        raise CliError(f"no device named {ref!r}")
    return matches[0]


def series_of(ctx: Context) -> Dict[str, Any]:
    """The series the options name: ``--result``, or all four of its fields."""
    args = ctx.args
    if getattr(args, "result", None) is not None:
        result = ctx.client.get_result(args.result)
        variant = result.variant.label or str(result.variant.quantization)
        return {"family": result.family, "variant": variant, "device_id": result.device_id,
                "runtime": result.runtime.name}
    missing = [f"--{name}" for name in ("family", "variant", "device", "runtime") if not getattr(args, name)]
    if missing:
        raise CliError("name the series with --result ID, or with --family, --variant, --device and "
                       f"--runtime (missing: {', '.join(missing)})")
    return {"family": args.family, "variant": args.variant, "device_id": _device_id(ctx.client, args.device),
            "runtime": args.runtime}


def run_history(ctx: Context) -> int:
    if ctx.args.limit is not None and ctx.args.limit < 1:
        raise CliError("--limit must be at least 1")
    series = series_of(ctx)
    found = ctx.client.history(series["family"], series["variant"], series["device_id"], series["runtime"],
                               ctx.args.limit)
    if ctx.json:
        emit_json(found.model_dump(mode="json"))
        return 0
    say(f"{found.series.family} / {found.series.variant} on {found.device_name} ({found.series.runtime}): "
        f"{found.total} results; thresholds latency +{found.thresholds.latency_pct:g}%, "
        f"accuracy -{found.thresholds.accuracy_pp:g} pp, PSNR -{found.thresholds.psnr_db:g} dB")
    rows = []
    for p in found.points:
        interval = f"{format_ms(p.p50_low)} .. {format_ms(p.p50_high)}" if p.p50_low is not None else None
        accuracy = f"{p.accuracy * 100:.2f}% {p.accuracy_metric}" if p.accuracy is not None else None
        mark = "baseline" if p.baseline else ("REGRESSED " + ",".join(p.regressions) if p.regressions else "")
        rows.append((p.result_id, p.created_at.strftime("%Y-%m-%d %H:%M"), p.model_name, format_ms(p.p50_ms),
                     interval, accuracy, p.runtime_version, "; ".join(p.changes), mark))
    print_table(("result", "when", "model", "p50", "p50 95% CI", "accuracy", "runtime", "changed", ""),
                rows, right=("result",))
    return 0


def run_baseline_set(ctx: Context) -> int:
    args = ctx.args
    if args.result_id is not None:
        if any((args.family, args.variant, args.device, args.runtime)):
            raise CliError("give RESULT_ID or the series options, not both")
        baseline = ctx.client.set_baseline(result_id=args.result_id)
    else:
        baseline = ctx.client.set_baseline(series=series_of(ctx))
    if ctx.json:
        emit_json(baseline.model_dump(mode="json"))
        return 0
    s = baseline.series
    say(f"baseline of {s.family} / {s.variant} on {baseline.device_name} ({s.runtime}): result "
        f"{baseline.result_id} (p50 {format_ms(baseline.p50_ms)})")
    return 0


def run_baseline_list(ctx: Context) -> int:
    listed = ctx.client.list_baselines(ctx.args.family)
    if ctx.json:
        emit_json([b.model_dump(mode="json") for b in listed])
        return 0
    rows = [(b.id, b.series.family, b.series.variant, b.device_name, b.series.runtime, b.result_id,
             format_ms(b.p50_ms), b.created_at.strftime("%Y-%m-%d %H:%M")) for b in listed]
    print_table(("id", "family", "variant", "device", "runtime", "result", "p50", "set"), rows,
                right=("id", "result"))
    return 0


def print_regressions(found: List[RegressionOut]) -> None:
    rows = [(r.result_id, r.series.family, r.series.variant, r.device_name, r.series.runtime, r.metric,
             r.rule, r.detail) for r in found]
    print_table(("result", "family", "variant", "device", "runtime", "metric", "rule", "detail"), rows,
                right=("result",), title="regressions")


def run_regressions(ctx: Context) -> int:
    found = ctx.client.list_regressions(job=ctx.args.job, family=ctx.args.family)
    if ctx.json:
        emit_json([r.model_dump(mode="json") for r in found])
    elif not found:
        say("no regressions")
    else:
        print_regressions(found)
    return 0


def run_webhook_add(ctx: Context) -> int:
    hook = ctx.client.create_webhook(ctx.args.hook_url, ctx.args.events, ctx.args.description)
    if ctx.json:
        emit_json(hook.model_dump(mode="json"))
    else:
        print_fields([("webhook", hook.id), ("url", hook.url), ("events", ", ".join(hook.events)),
                      ("secret", hook.secret)])
        say("keep the secret: it is shown only now; receivers check X-EdgeFarm-Signature with it")
    return 0


def run_webhook_list(ctx: Context) -> int:
    listed = ctx.client.list_webhooks()
    if ctx.json:
        emit_json([h.model_dump(mode="json") for h in listed])
        return 0
    print_table(("id", "url", "events", "created"),
                [(h.id, h.url, ", ".join(h.events), h.created_at.strftime("%Y-%m-%d %H:%M")) for h in listed],
                right=("id",))
    return 0


def run_deliveries(ctx: Context) -> int:
    listed = ctx.client.list_deliveries(ctx.args.webhook_id)
    if ctx.json:
        emit_json([d.model_dump(mode="json") for d in listed])
        return 0
    print_table(("id", "event", "state", "attempts", "code", "last error", "created"),
                [(d.id, d.event, d.state, d.attempts, d.response_code, d.last_error,
                  d.created_at.strftime("%Y-%m-%d %H:%M:%S")) for d in listed], right=("id", "attempts"))
    return 0
