"""``edgefarm datasets push|register|list``: evaluation datasets.

``push`` uploads an archive (zip or tar, sent as is) or a folder, which is
first packed into a deterministic uncompressed tar so that the same folder
always gives the same sha256. The server validates the archive against the
named layout and answers with what it found (sample count, classes).
``register`` records a dataset that is already present on the devices.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, List, Tuple

from edgefarm.shared.contract.enums import DatasetLayout
from edgefarm.shared.contract.schemas import DatasetOut

from ..errors import CliError
from ..output import emit_json, format_bytes, print_fields, print_table, say, short_sha
from ..transfer import dataset_archive, upload_stream
from . import Context, add_command

LAYOUTS = [layout.value for layout in DatasetLayout]
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("datasets", help="upload, register and list datasets",
                                  description="Upload, register and list datasets.")
    sub = group.add_subparsers(dest="datasets_command", metavar="COMMAND", required=True)
    push = add_command(sub, "push", run_push, "upload a dataset archive or folder")
    push.add_argument("path", type=Path, metavar="PATH", help="a zip or tar archive, or a folder")
    push.add_argument("--layout", required=True, choices=LAYOUTS, help="how the files are laid out")
    push.add_argument("--name", required=True, help="dataset name (unique)")
    push.add_argument("--split", help="split to use, e.g. val (default: the layout's default)")
    reg = add_command(sub, "register", run_register, "record a dataset already present on the devices")
    reg.add_argument("--name", required=True, help="dataset name (unique)")
    reg.add_argument("--layout", required=True, choices=LAYOUTS, help="how the files are laid out")
    reg.add_argument("--path", required=True, help="where the dataset lies on every device")
    reg.add_argument("--sha256", required=True, help="sha256 the agents verify the dataset against")
    reg.add_argument("--samples", type=int, help="number of samples")
    reg.add_argument("--split", help="split name")
    add_command(sub, "list", run_list, "list the datasets")


def run_push(ctx: Context) -> int:
    args = ctx.args
    if not args.name.strip():
        raise CliError("--name must not be blank")
    with dataset_archive(args.path) as (archive, filename):
        client = ctx.client
        fields = {"name": args.name.strip(), "layout": args.layout}
        if args.split:
            fields["split"] = args.split
        with upload_stream(archive, f"uploading {filename}") as stream:
            dataset = client.push_dataset(stream, filename, fields)
    return _show(ctx, dataset)


def run_register(ctx: Context) -> int:
    args = ctx.args
    sha256 = args.sha256.strip().lower()
    if not SHA256.match(sha256):
        raise CliError(f"--sha256 must be 64 hex digits, got {args.sha256!r}")
    if args.samples is not None and args.samples < 1:
        raise CliError("--samples must be at least 1")
    body = {"name": args.name.strip(), "layout": args.layout, "path": args.path, "sha256": sha256}
    if args.samples is not None:
        body["sample_count"] = args.samples
    if args.split:
        body["split"] = args.split
    return _show(ctx, ctx.client.register_dataset(body))


def _show(ctx: Context, dataset: DatasetOut) -> int:
    if ctx.json:
        emit_json(dataset.model_dump(mode="json"))
    else:
        print_fields(dataset_fields(dataset))
    return 0


def dataset_fields(dataset: DatasetOut) -> List[Tuple[str, Any]]:
    fields: List[Tuple[str, Any]] = [
        ("name", dataset.name), ("id", dataset.id), ("layout", dataset.layout),
        ("source", dataset.source), ("samples", dataset.sample_count), ("split", dataset.split),
        ("classes", dataset.num_classes if dataset.num_classes is not None else _count(dataset.classes)),
    ]
    if dataset.size_bytes is not None:
        fields.append(("size", f"{format_bytes(dataset.size_bytes)} ({dataset.size_bytes} bytes)"))
    if dataset.path:
        fields.append(("path", dataset.path))
    return fields + [("sha256", dataset.sha256)]


def _count(items: Any) -> Any:
    return len(items) if items else None


def run_list(ctx: Context) -> int:
    datasets = ctx.client.list_datasets()
    if ctx.json:
        emit_json([d.model_dump(mode="json") for d in datasets])
        return 0
    if not datasets:
        say("no datasets stored")
        return 0
    columns = ("id", "name", "layout", "source", "samples", "split", "classes", "size", "sha256",
               "created")
    rows = [(d.id, d.name, d.layout, d.source, d.sample_count, d.split,
             d.num_classes if d.num_classes is not None else _count(d.classes),
             format_bytes(d.size_bytes), short_sha(d.sha256), d.created_at) for d in datasets]
    print_table(columns, rows, right=("id", "samples", "classes", "size"))
    return 0
