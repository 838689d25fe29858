"""``edgefarm sweep``: one command from a base model to the family table.

It makes the compressed variants the input allows (``edgefarm.tools.sweep``), pushes
the base (family = its name) and every variant into that family with its
variant metadata and lineage (parent = the base's sha256), submits ONE job of
all of them on the chosen devices with the tflite runtime, waits with the
usual progress display, and prints, per device, each variant's accuracy or
mIoU, p50/p90 latency, size and peak memory with their change against the
base, Pareto-optimal variants marked (``GET /results/compare?family=``).

Exit codes as for ``submit --wait``: 0 when every run succeeded, 1 when the
job failed (the table still shows what was measured), 3 on timeout.
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from pydantic import ValidationError

from edgefarm.shared.contract.enums import DatasetLayout, JobState, Task
from edgefarm.shared.contract.rules import metric_name
from edgefarm.shared.contract.schemas import CompareCell, CompareOut, JobCreate, ModelOut
from edgefarm.shared.contract.selectors import SelectorError, parse_selector

from ..compare_tables import verdict_words
from ..errors import EXIT_FAILURE, EXIT_TIMEOUT, CliError, validation_summary
from ..output import emit_json, format_bytes, format_ms, print_table, say, warn
from ..transfer import upload_stream
from ..waiting import describe_progress, wait_for_job
from . import Context, add_command
from .models import float_list

#: The same list as ``edgefarm.tools.sweep.DEFAULT_VARIANTS`` (kept here so that building the
#: parser imports no tools).
DEFAULT_VARIANTS = ("fp32", "fp16", "dynamic", "int8", "pruned-0.5", "pruned-0.75", "pruned-0.9")
SETTINGS = (("threads", "threads"), ("runs", "measured_runs"), ("min_seconds", "min_seconds"),
            ("max_seconds", "max_seconds"), ("sample_limit", "sample_limit"))


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "sweep", run_sweep, "make compressed variants of a model, benchmark them "
                                                    "in one job and print the family table")
    p.add_argument("base", type=Path, metavar="BASE_MODEL", help=".tflite, .keras, .h5 or SavedModel")
    p.add_argument("--dataset", required=True, metavar="D", help="farm dataset (id or name) to evaluate on")
    p.add_argument("--devices", required=True, metavar="SELECTOR", help="all, platform=X, label=X, id=N")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), metavar="LIST",
                   help="comma-separated: fp32, fp16, dynamic, int8, weight-only-int8, pruned-S, ... "
                        "(default: %(default)s)")
    p.add_argument("--calibration", type=Path, metavar="PATH", help="local dataset for int8 calibration")
    p.add_argument("--layout", choices=[x.value for x in DatasetLayout], help="layout of --calibration")
    p.add_argument("--split", help="split of --calibration")
    p.add_argument("--samples", type=int, default=100, metavar="N", help="calibration samples (100)")
    p.add_argument("--mean", type=float_list, metavar="A,B,C", help="calibration pre-processing mean")
    p.add_argument("--std", type=float_list, metavar="A,B,C", help="calibration pre-processing std")
    p.add_argument("--name", help="base model name and family (default: the file name)")
    p.add_argument("--output-dir", type=Path, metavar="DIR", help="keep the variant files here")
    p.add_argument("--task", choices=[t.value for t in Task])
    p.add_argument("--threads", type=int, metavar="N")
    p.add_argument("--runs", type=int, metavar="N", help="measured runs")
    p.add_argument("--min-seconds", type=float, metavar="S")
    p.add_argument("--max-seconds", type=float, metavar="S")
    p.add_argument("--sample-limit", type=int, metavar="N")
    p.add_argument("--timeout", type=float, metavar="S", help="stop waiting after S seconds (exit 3)")


def run_sweep(ctx: Context) -> int:
    args = ctx.args
    labels, body = _checked_input(args)
    from edgefarm.tools.common import ToolError

    with ExitStack() as stack:
        workdir = args.output_dir or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="edgefarm-sweep-")))
        try:
            files = _make_files(args, labels, workdir, ctx.json)
        except ToolError as exc:
            raise CliError(str(exc))
        client = ctx.client
        base, variants = _push_family(client, args, files)
    body["models"] = [str(base.id)] + [str(model.id) for _, model in variants]
    body["name"] = f"sweep: {base.family}"
    job = client.submit_job(body)
    for warning in job.warnings:
        warn(warning)
    if not ctx.json:
        say(f"submitted job {job.id}: {len(body['models'])} models on devices {args.devices}")
    job, ended = wait_for_job(client, job.id, args.timeout)
    compared = client.compare(base.family, runtime="tflite")
    _show(ctx, compared, job, files.skipped)
    if not ended:
        say(f"edgefarm: gave up after {args.timeout:g} s; {describe_progress(job)}")
        return EXIT_TIMEOUT
    if job.state != JobState.succeeded:
        say(f"edgefarm: job {job.id} ended {job.state}")
        return EXIT_FAILURE
    return 0


def _checked_input(args: Any) -> Tuple[List[str], Dict[str, Any]]:
    """Variant labels and the job body (without models), checked before any work."""
    from edgefarm.tools.common import ToolError
    from edgefarm.tools.sweep import parse_variants

    if not args.base.exists():
        raise CliError(f"no such model: {args.base}")
    try:
        labels = parse_variants(args.variants)
        parse_selector(args.devices)
    except (ToolError, SelectorError) as exc:
        raise CliError(str(exc))
    if args.calibration is not None and not args.layout:
        raise CliError("--calibration needs --layout")
    settings: Dict[str, Any] = {"runtime": "tflite"}
    for dest, field in SETTINGS:
        if getattr(args, dest) is not None:
            settings[field] = getattr(args, dest)
    body: Dict[str, Any] = {"models": ["0"], "dataset": args.dataset, "devices": args.devices.strip(),
                            "settings": settings}
    if args.task:
        body["task"] = args.task
    try:
        JobCreate.model_validate(body)
    except ValidationError as exc:
        raise CliError(f"invalid job: {validation_summary(exc)}")
    return labels, body


def _make_files(args: Any, labels: List[str], workdir: Path, quiet: bool) -> Any:
    from edgefarm.tools.quantize import Calibration
    from edgefarm.tools.sweep import produce_variants

    calibration = None
    if args.calibration is not None:
        from .tools import _preprocessing

        calibration = Calibration(args.calibration, args.layout, args.split, args.samples,
                                  _preprocessing(args))
    files = produce_variants(args.base, labels, workdir, calibration, log=(lambda m: None) if quiet else say)
    for label, reason in files.skipped:
        warn(f"variant {label} skipped: {reason}")
    return files


def _push(client: Any, path: Path, meta: Dict[str, Any]) -> ModelOut:
    with upload_stream(path, f"uploading {path.name}") as stream:
        model, _ = client.push_model(stream, path.name, meta)
    return model


def _push_family(client: Any, args: Any, files: Any) -> Tuple[ModelOut, List[Tuple[str, ModelOut]]]:
    """The base (family = its name, unless the server already files it elsewhere)
    and each variant, with variant metadata and lineage, in that family."""
    name = args.name or args.base.name.rsplit(".", 1)[0]
    base = _push(client, files.base, {"name": name, "family": name,
                                      "variant": {"quantization": "none", "label": "fp32"}})
    if base.family != name:
        warn(f"the server already had this base model in family {base.family!r}; the sweep joins it")
    pushed = []
    for variant in files.variants:
        meta = {"name": f"{base.name}-{variant.label}", "family": base.family, **variant.meta}
        meta["lineage"] = {**meta["lineage"], "parent_sha256": base.sha256}
        pushed.append((variant.label, _push(client, variant.path, meta)))
    return base, pushed


# ---------------------------------------------------------------- the family table


def family_rows(compared: CompareOut, device_id: int) -> List[Dict[str, Any]]:
    """One row per model of the family measured on the device, base first,
    with changes against the base on that device."""
    cells = {c.model_id: c for c in compared.cells if c.device_id == device_id}
    base = cells.get(compared.base_model_id) if compared.base_model_id is not None else None
    models = sorted(compared.models, key=lambda m: (m.id != compared.base_model_id, m.id))
    return [_row(model, cells[model.id], base, model.id == compared.base_model_id)
            for model in models if model.id in cells]


def _row(model: ModelOut, cell: CompareCell, base: Optional[CompareCell], is_base: bool) -> Dict[str, Any]:
    def change(value: Optional[float], reference: Optional[float]) -> Optional[float]:
        if is_base or value is None or not reference:
            return None
        return value / reference - 1.0

    return {
        "model_id": model.id, "model": model.name,
        "label": model.variant.label or str(model.variant.quantization),
        "quantization": str(model.variant.quantization), "sparsity": model.variant.sparsity,
        "base": is_base, "pareto": cell.pareto, "metric": cell.accuracy_metric, "accuracy": cell.accuracy,
        "accuracy_delta_points": None if is_base or cell.delta_accuracy is None
        else cell.delta_accuracy * 100,
        "p50_ms": cell.p50_ms, "p50_change": change(cell.p50_ms, base.p50_ms if base else None),
        "p90_ms": cell.p90_ms, "p90_change": change(cell.p90_ms, base.p90_ms if base else None),
        "size_bytes": cell.model_size_bytes,
        "size_change": change(cell.model_size_bytes, base.model_size_bytes if base else None),
        "peak_rss_bytes": cell.peak_rss_bytes,
        "peak_rss_change": change(cell.peak_rss_bytes, base.peak_rss_bytes if base else None),
        "accuracy_verdict": verdict_words(cell.accuracy_shift, "accuracy"),
        "latency_verdict": verdict_words(cell.latency_shift, "latency"),
        "result_id": cell.result_id,
    }


def _show(ctx: Context, compared: CompareOut, job: Any, skipped: List[Tuple[str, str]]) -> None:
    tables = [{"device_id": d.id, "device": d.name, "platform": d.platform,
               "rows": family_rows(compared, d.id)} for d in compared.devices]
    if ctx.json:
        emit_json({"family": compared.family, "base_model_id": compared.base_model_id,
                   "job": job.model_dump(mode="json"), "skipped": [list(s) for s in skipped],
                   "devices": tables})
        return
    for table in tables:
        metric = next((r["metric"] for r in table["rows"] if r["metric"]), None)
        columns = ("", "variant", "model", metric_name(metric) if metric else "accuracy", "p50 ms",
                   "p90 ms", "size", "peak RSS")
        title = (f"family {compared.family} on {table['device']} ({table['platform']}, "
                 f"id {table['device_id']})")
        print_table(columns, [_cells(row) for row in table["rows"]], title=title,
                    right=("p50 ms", "p90 ms", "size", "peak RSS"))
    say("* on the device's Pareto front (accuracy vs p50 latency, by significance); changes against "
        "the base (fp32): accuracy in points, the others in percent, with the verdict of each test "
        "(better/faster or worse/slower only when its 95% interval excludes zero)")


def _cells(row: Dict[str, Any]) -> List[str]:
    accuracy = "-" if row["accuracy"] is None else f"{row['accuracy']:.4f}"
    return ["*" if row["pareto"] else "", row["label"] + (" [base]" if row["base"] else ""), row["model"],
            accuracy + _delta(row["accuracy_delta_points"], "pt") + _verdict(row["accuracy_verdict"]),
            _ms(row["p50_ms"]) + _delta(_percent(row["p50_change"]), "%") + _verdict(row["latency_verdict"]),
            _ms(row["p90_ms"]) + _delta(_percent(row["p90_change"]), "%"),
            (format_bytes(row["size_bytes"]) or "-") + _delta(_percent(row["size_change"]), "%"),
            (format_bytes(row["peak_rss_bytes"]) or "-") + _delta(_percent(row["peak_rss_change"]), "%")]


def _verdict(words: Optional[str]) -> str:
    return f" {words}" if words else ""


def _ms(value: Optional[float]) -> str:
    """Milliseconds with three significant digits below 1 ms (small models run in microseconds)."""
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 1 else (format_ms(value) or "-")


def _percent(change: Optional[float]) -> Optional[float]:
    return None if change is None else change * 100


def _delta(value: Optional[float], unit: str) -> str:
    if value is None:
        return ""
    return f" ({value:+.2f} {unit})" if unit == "pt" else f" ({value:+.0f}%)"
