"""``edgefarm results``: the results table, its CSV export, the family
comparison (``--compare FAMILY``, with the verdict of each delta; ``--csv``,
``--format markdown`` and ``--json`` export it with its intervals), two results
against each other (``--versus BASE ID``) and one result's layer table (``--layers ID``:
load stages come with the result, per-layer time and drift from the server's
``/results/{id}/layers``).

The table has the shape of a study table: one row per result with platform,
device, runtime, model and variant, the headline accuracy (mIoU for
segmentation, top-1 for classification), latency percentiles, model size and
peak memory. Metrics arrive as fractions and are shown as percentages; an
accuracy delta is in percentage points. ``--csv`` writes the server's own CSV
export unchanged; ``--format markdown`` writes the study's tables, one per task
(``edgefarm.cli.study_tables``), with the same filters.
"""

from __future__ import annotations

from typing import Any, List, Optional

from edgefarm.shared.contract.rules import headline_metric, metric_name
from edgefarm.shared.contract.schemas import CompareCell, CompareOut, ModelOut, ResultOut

from ..compare_tables import compare_csv, compare_markdown, verdict_words
from ..errors import CliError
from ..output import (
    emit_json,
    emit_text,
    format_bytes,
    format_ms,
    format_percent,
    format_points,
    format_ratio,
    print_table,
    say,
)
from ..study_tables import markdown_of
from . import Context, add_command, add_json_option
from .models import variant_text

FILTERS = ("model", "family", "variant", "device", "platform", "runtime", "task", "job")


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "results", run_results, "list, export and compare results", json=False)
    p.add_argument("--model", metavar="M", help="model id, name or sha256")
    p.add_argument("--family", metavar="F")
    p.add_argument("--variant", metavar="V", help="quantization (none, fp16, int8, ...) or variant label")
    p.add_argument("--device", metavar="D", help="device id or name")
    p.add_argument("--platform", metavar="P")
    p.add_argument("--runtime", metavar="R")
    p.add_argument("--task", metavar="T")
    p.add_argument("--job", type=int, metavar="ID")
    p.add_argument("--compare", metavar="FAMILY",
                   help="variants of FAMILY x devices, with deltas against the base model")
    p.add_argument("--layers", type=int, metavar="ID",
                   help="the layer table of result ID: per-layer time and drift (with --json or --csv: "
                        "the server's export)")
    p.add_argument("--versus", nargs=2, type=int, metavar=("BASE_ID", "ID"),
                   help="is result ID faster/slower, more/less accurate than BASE_ID beyond noise "
                        "(any two results: one model on two devices, two runtimes)")
    formats = p.add_mutually_exclusive_group()
    add_json_option(formats)
    formats.add_argument("--csv", action="store_true", help="write the server's CSV export to stdout")
    formats.add_argument("--format", choices=("markdown",), dest="output_format",
                         help="markdown: the study's tables (one per task, one row per result) "
                              "as Markdown on stdout; same filters as --csv; with --compare, "
                              "the comparison with intervals and verdicts")


def run_results(ctx: Context) -> int:
    args = ctx.args
    if args.layers is not None:
        return run_layers(ctx)
    if args.compare:
        return run_compare(ctx)
    if args.versus:
        return run_versus(ctx)
    filters = {name: getattr(args, name) for name in FILTERS}
    if args.csv:
        emit_text(ctx.client.results_csv(filters))
        return 0
    results = ctx.client.list_results(filters)
    if args.output_format == "markdown":
        if not results:
            say("no results match")
            return 0
        emit_text(markdown_of(results))
        return 0
    if ctx.json:
        emit_json([r.model_dump(mode="json") for r in results])
        return 0
    if not results:
        say("no results match")
        return 0
    print_table(RESULT_COLUMNS, [result_row(r) for r in results],
                right=("id", "sparsity", "accuracy/mIoU", "p50 ms", "p90 ms", "size", "peak RSS"))
    return 0


RESULT_COLUMNS = ("id", "platform", "device", "runtime", "model", "quantization", "sparsity",
                  "accuracy/mIoU", "p50 ms", "p90 ms", "size", "peak RSS", "agreement")


def format_accuracy(value: Optional[float], metric: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    return f"{format_percent(value)} {metric_name(metric)}".strip()


def result_row(result: ResultOut) -> List[Any]:
    latency = result.latency_ms
    runtime = result.runtime.name + (f" {result.runtime.version}" if result.runtime.version else "")
    if result.runtime.accelerator and result.runtime.accelerator != "cpu":
        runtime += f" ({result.runtime.accelerator})"
    return [
        result.id, result.platform, result.device_name, runtime, result.model_name,
        result.variant.quantization, result.variant.sparsity,
        format_accuracy(*headline_metric(result.metrics)),
        format_ms(latency.p50 if latency else None), format_ms(latency.p90 if latency else None),
        format_bytes(result.model_size_bytes), format_bytes(result.peak_rss_bytes),
        format_agreement(result.agreement),
    ]


def format_agreement(agreement: Any) -> Optional[str]:
    """Output agreement with the reference: lowest PSNR over outputs, and top-1 agreement."""
    if agreement is None:
        return None
    if agreement.error:
        return "n/a"
    identical = agreement.outputs and all(o.identical for o in agreement.outputs.values())
    parts = ["identical" if identical else
             (f"{agreement.psnr_db:.1f} dB" if agreement.psnr_db is not None else None)]
    if agreement.top1_agreement is not None:
        parts.append(f"top-1 {format_percent(agreement.top1_agreement)}")
    return ", ".join(p for p in parts if p) or None


# ---------------------------------------------------------------- compare


def run_compare(ctx: Context) -> int:
    args = ctx.args
    other = [f"--{name}" for name in ("model", "family", "variant", "device", "task", "job")
             if getattr(args, name) is not None]
    if other:
        raise CliError(f"--compare takes only --platform and --runtime as filters, not {', '.join(other)}")
    compared = ctx.client.compare(args.compare, args.platform, args.runtime)
    if args.csv:
        emit_text(compare_csv(compared))
        return 0
    if args.output_format == "markdown":
        emit_text(compare_markdown(compared))
        return 0
    if ctx.json:
        emit_json(compared.model_dump(mode="json"))
        return 0
    if not compared.cells:
        say(f"no results yet for family {compared.family!r}")
        return 0
    print_compare(compared)
    return 0


def run_versus(ctx: Context) -> int:
    base_id, result_id = ctx.args.versus
    if ctx.args.csv or ctx.args.output_format:
        raise CliError("--versus prints its verdicts as text or --json, not --csv or --format")
    if base_id < 1 or result_id < 1:
        raise CliError("--versus takes two result ids (positive integers)")
    compared = ctx.client.versus(base_id, result_id)
    if ctx.json:
        emit_json(compared.model_dump(mode="json"))
        return 0
    for kind, shift in (("latency", compared.latency), ("accuracy", compared.accuracy)):
        say(f"{kind}: {versus_line(shift, kind)}")
    return 0


def versus_line(shift: Any, kind: str) -> str:
    """'slower: +0.52 ms (95% CI +0.48 to +0.57 ms; Hodges-Lehmann ...)' or 'not testable: why'."""
    words = verdict_words(shift, kind)
    if shift.estimate is None:
        return f"{words}: {shift.reason or ''}".rstrip(": ")
    show = (lambda v: f"{v:+.4g} ms") if kind == "latency" else (lambda v: f"{v * 100:+.2f} pt")
    span = (f"95% CI {show(shift.low)} to {show(shift.high)}" if shift.low is not None
            and shift.high is not None else "no interval: too few samples")
    p_value = f", p = {shift.p_value:.3g}" if shift.p_value is not None else ""
    return f"{words}: {show(shift.estimate)} ({span}{p_value}; {shift.method})"


def model_label(model: ModelOut, base_id: Optional[int]) -> str:
    base = " [base]" if model.id == base_id else ""
    return f"{model.name} (id {model.id}){base}\n{variant_text(model.variant)}"


def cell_text(cell: Optional[CompareCell], is_base: bool) -> str:
    """Accuracy, p50 and size, each with its delta or ratio against the base;
    a leading ``*`` marks a cell on its device's Pareto front."""
    if cell is None:
        return "-"
    accuracy = format_accuracy(cell.accuracy, cell.accuracy_metric) or "accuracy -"
    latency = f"p50 {format_ms(cell.p50_ms) or '-'} ms"
    size = f"size {format_bytes(cell.model_size_bytes) or '-'}"
    if not is_base:
        accuracy += _suffix(_joined(format_points(cell.delta_accuracy),
                                    verdict_words(cell.accuracy_shift, "accuracy")))
        latency += _suffix(_joined(format_ratio(cell.latency_ratio),
                                   verdict_words(cell.latency_shift, "latency")))
        size += _suffix(format_ratio(cell.size_ratio))
    mark = "* " if cell.pareto else "  "
    return f"{mark}{accuracy}\n  {latency}\n  {size}"


def _joined(*parts: Optional[str]) -> Optional[str]:
    return ", ".join(p for p in parts if p) or None


def _suffix(text: Optional[str]) -> str:
    return f" ({text})" if text else ""


def print_compare(compared: CompareOut) -> None:
    cells = {(c.model_id, c.device_id): c for c in compared.cells}
    columns = ["model / variant"] + [f"{d.name}\n{d.platform} (id {d.id})" for d in compared.devices]
    rows = []
    for model in compared.models:
        is_base = model.id == compared.base_model_id
        rows.append([model_label(model, compared.base_model_id)]
                    + [cell_text(cells.get((model.id, d.id)), is_base) for d in compared.devices])
    print_table(columns, rows, title=f"family {compared.family}: variants x devices", show_lines=True)
    say("* on the device's Pareto front (accuracy vs p50 latency, by significance); accuracy "
        "deltas in percentage points, latency and size as ratios to the base model; a delta is "
        "better/faster or worse/slower only when its 95% interval excludes zero (--csv, "
        "--format markdown and --json give the intervals)")


# ---------------------------------------------------------------- layers


LAYER_COLUMNS = ("", "layer", "op", "time ms", "share", "PSNR dB", "max |err|")


def run_layers(ctx: Context) -> int:
    args = ctx.args
    if args.compare or args.output_format:
        raise CliError("--layers cannot be combined with --compare or --format (use --json or --csv)")
    other = [f"--{name}" for name in FILTERS if getattr(args, name) is not None]
    if other:
        raise CliError(f"--layers takes a result id and no filters, not {', '.join(other)}")
    if args.layers < 1:
        raise CliError(f"--layers takes a result id (a positive number), not {args.layers}")
    if args.csv:
        emit_text(ctx.client.result_layers_csv(args.layers))
        return 0
    table = ctx.client.result_layers(args.layers)
    if ctx.json:
        emit_json(table.model_dump(mode="json"))
        return 0
    print_stages(ctx.client.get_result(args.layers))
    if table.layers_not_available:
        say(f"per-layer time: {table.layers_not_available}")
    else:
        say(f"per-layer time: {table.source}, mean of {table.runs} runs; layers sum to "
            f"{format_ms(table.total_ms)} ms, the runs took {format_ms(table.run_ms)} ms"
            + (f"; unprofiled end to end {format_ms(table.e2e_ms)} ms" if table.e2e_ms is not None else ""))
    say(f"drift: {table.drift_not_available}" if table.drift_not_available else
        f"drift against {table.drift_reference.get('model_name') or 'the reference'} on "
        f"{table.drift_sample_count} inputs; matched {table.drift_matching}")
    if table.rows:
        print_table(LAYER_COLUMNS, [layer_row(r) for r in table.rows],
                    title=f"result {table.result_id}: {len(table.rows)} layers ({table.runtime})",
                    right=("time ms", "share", "PSNR dB", "max |err|"))
        say("S: one of the five slowest layers; D: one of the five most drifted tensors")
    return 0


def layer_row(row: Any) -> List[Any]:
    marks = ("S" if row.slowest else "") + ("D" if row.most_drifted else "")
    psnr = "identical" if row.identical else (f"{row.psnr_db:.2f}" if row.psnr_db is not None else None)
    return [marks, row.name, row.op_type, f"{row.ms:.3f}" if row.ms is not None else None,
            format_percent(row.share) if row.share is not None else None, psnr,
            f"{row.max_abs_error:.3g}" if row.max_abs_error is not None else None]


def print_stages(result: ResultOut) -> None:
    stages = result.stages
    if stages is None:
        say("load stages: not measured for this result")
        return
    if stages.not_available:
        say(f"load stages: {stages.not_available}")
        return
    rows = [[s.name.replace("_", " "), format_ms(s.ms), format_bytes(s.rss_increase_bytes),
             format_bytes(s.rss_peak_increase_bytes)] for s in stages.stages]
    print_table(("stage", "ms", "RSS increase", "RSS peak increase"), rows, title="load stages",
                right=("ms", "RSS increase", "RSS peak increase"))
    say(f"RSS sampled every {stages.sample_interval_ms:g} ms; {stages.cache_note}")
