"""``edgefarm models push|list|show|delete``: model files and their metadata.

``push`` sends the file and a ``ModelMeta`` JSON document as one multipart
request (``file`` and ``meta`` fields). The server recognises the format from
the content and reads the tensors of TFLite models; the CLI only checks what
it can check without the server (the file exists, the metadata is valid).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from pydantic import ValidationError

from edgefarm.shared.contract.enums import ColorOrder, Layout, Quantization, Task
from edgefarm.shared.contract.schemas import ModelMeta, ModelOut, Variant

from ..errors import CliError, validation_summary
from ..output import (
    emit_json,
    format_bytes,
    print_fields,
    print_table,
    say,
    short_sha,
    tensor_lines,
)
from ..transfer import existing_file, upload_stream
from . import Context, add_command

SHA256 = re.compile(r"^[0-9a-f]{64}$")
META_OPTIONS = ("name", "family", "task", "quantization", "sparsity", "variant_label", "parent",
                "labels", "mean", "std", "color", "layout", "lineage")


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("models", help="upload, list, show and delete models",
                                  description="Upload, list, show and delete models.")
    sub = group.add_subparsers(dest="models_command", metavar="COMMAND", required=True)
    _register_push(sub)
    listing = add_command(sub, "list", run_list, "list the stored models")
    listing.add_argument("--family", help="only this model family")
    show = add_command(sub, "show", run_show, "show one model by id, name or sha256 (or a prefix)")
    show.add_argument("ref", metavar="REF")
    delete = add_command(sub, "delete", run_delete, "delete a model (by id, name or sha256)")
    delete.add_argument("ref", metavar="ID")


def _register_push(sub: Any) -> None:
    push = add_command(sub, "push", run_push, "upload a model file (TFLite, ONNX or SNPE DLC)")
    push.add_argument("file", type=Path, metavar="FILE")
    push.add_argument("--name", help="model name (default: the file name without extension)")
    push.add_argument("--family", help="model family that groups variants (default: the name)")
    push.add_argument("--task", choices=[t.value for t in Task], help="what the model does")
    push.add_argument("--quantization", choices=[q.value for q in Quantization],
                      help="quantization of this variant (default: none)")
    push.add_argument("--sparsity", type=float, help="fraction of zero weights, 0..1")
    push.add_argument("--variant-label", help="free text naming the variant, e.g. pruned-0.9")
    push.add_argument("--parent", metavar="SHA256", help="sha256 of the model this one derives from")
    push.add_argument("--labels", type=Path, metavar="FILE", help="class labels, one per line")
    push.add_argument("--mean", type=float_list, metavar="A,B,C", help="per-channel mean")
    push.add_argument("--std", type=float_list, metavar="A,B,C", help="per-channel std")
    push.add_argument("--color", choices=[c.value for c in ColorOrder], help="channel order")
    push.add_argument("--layout", choices=[x.value for x in Layout], help="input layout")
    push.add_argument("--lineage", type=Path, metavar="FILE",
                      help="a lineage file written by 'edgefarm tools' (FILE.lineage.json): its parent, "
                           "recipe and variant are sent with the model; options given here win")


def float_list(text: str) -> List[float]:
    """``"127.5,127.5,127.5"`` -> ``[127.5, 127.5, 127.5]`` (argparse type)."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")
    return values


def read_labels(path: Path) -> List[str]:
    """One label per line; trailing blank lines are dropped, inner ones kept
    (a label's index is its line number)."""
    existing_file(path, "labels file")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read the labels file {path}: {exc}")
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise CliError(f"the labels file {path} is empty")
    return lines


def build_meta(args: argparse.Namespace) -> Dict[str, Any]:
    """The ``meta`` field from the push options, validated as ``ModelMeta``."""
    if args.parent is not None and not SHA256.match(args.parent.strip().lower()):
        raise CliError(f"--parent must be a full sha256 (64 hex digits), got {args.parent!r}")
    raw: Dict[str, Any] = {"name": args.name, "family": args.family, "task": args.task}
    variant = {"quantization": args.quantization, "sparsity": args.sparsity, "label": args.variant_label}
    raw["variant"] = {key: value for key, value in variant.items() if value is not None}
    if args.parent:
        raw["lineage"] = {"parent_sha256": args.parent.strip().lower()}
    if args.labels is not None:
        raw["labels"] = read_labels(args.labels)
    pre = {"mean": args.mean, "std": args.std, "color": args.color, "layout": args.layout}
    if any(value is not None for value in pre.values()):
        raw["preprocessing"] = {key: value for key, value in pre.items() if value is not None}
    try:
        meta = ModelMeta.model_validate({key: value for key, value in raw.items() if value is not None})
    except ValidationError as exc:
        raise CliError(f"invalid model metadata: {validation_summary(exc)}")
    return meta.model_dump(mode="json", exclude_none=True)


def apply_lineage(meta: Dict[str, Any], args: argparse.Namespace, path: Path) -> Dict[str, Any]:
    """``meta`` with the variant and lineage of the ``--lineage`` file, which must
    describe this very file; options given on the command line win."""
    if getattr(args, "lineage", None) is None:
        return meta
    from edgefarm.tools.common import ToolError
    from edgefarm.tools.lineage import read_sidecar

    existing_file(args.lineage, "lineage file")
    try:
        sidecar = read_sidecar(args.lineage, path)
    except ToolError as exc:
        raise CliError(str(exc))
    given = {"quantization": args.quantization, "sparsity": args.sparsity, "label": args.variant_label}
    merged = dict(meta)
    merged["variant"] = {**sidecar["variant"], **{k: v for k, v in given.items() if v is not None}}
    merged["lineage"] = {**sidecar["lineage"], **(meta.get("lineage") or {})}
    return ModelMeta.model_validate(merged).model_dump(mode="json", exclude_none=True)


def run_push(ctx: Context) -> int:
    args = ctx.args
    path = existing_file(args.file, "model file")
    meta = apply_lineage(build_meta(args), args, path)
    client = ctx.client
    with upload_stream(path, f"uploading {path.name}") as stream:
        model, created = client.push_model(stream, path.name, meta)
    if ctx.json:
        emit_json(model.model_dump(mode="json"))
        return 0
    if not created and any(getattr(args, key) is not None for key in META_OPTIONS):
        say("note: the server already had this file; the metadata given now was not applied")
    print_fields([("status", "stored" if created else "already stored")] + model_fields(model))
    return 0


def model_fields(model: ModelOut, detailed: bool = False) -> List[Tuple[str, Any]]:
    """The human description of a model, tensors last."""
    fields: List[Tuple[str, Any]] = [
        ("name", model.name), ("id", model.id), ("family", model.family),
        ("task", model.task), ("format", model.format),
        ("size", f"{format_bytes(model.size_bytes)} ({model.size_bytes} bytes)"),
        ("sha256", model.sha256),
    ]
    if detailed:
        fields += _detail_fields(model)
    return fields + tensor_lines(model.inputs, model.outputs)


def _detail_fields(model: ModelOut) -> List[Tuple[str, Any]]:
    """Keys of at most 7 letters keep the tensor lines in their usual form."""
    fields: List[Tuple[str, Any]] = [
        ("variant", variant_text(model.variant)), ("parent", model.parent_id),
        ("labels", _labels_summary(model.labels)),
    ]
    pre = model.preprocessing
    if pre is not None:
        fields.append(("preproc", f"mean={pre.mean} std={pre.std} scale={pre.scale} "
                                  f"color={pre.color} layout={pre.layout or 'auto'}"))
    if model.description:
        fields.append(("about", model.description))
    return fields + [("created", model.created_at), ("url", model.download_url)]


def variant_text(variant: Variant) -> str:
    """``int8, sparsity 0.5, pruned-0.5``."""
    parts = [str(variant.quantization)]
    if variant.sparsity:
        parts.append(f"sparsity {variant.sparsity:g}")
    if variant.label:
        parts.append(variant.label)
    return ", ".join(parts)


def _labels_summary(labels: Optional[List[str]]) -> Optional[str]:
    if not labels:
        return None
    head = ", ".join(labels[:5])
    return f"{len(labels)} ({head}{', ...' if len(labels) > 5 else ''})"


def run_list(ctx: Context) -> int:
    models = ctx.client.list_models(ctx.args.family)
    if ctx.json:
        emit_json([m.model_dump(mode="json") for m in models])
        return 0
    if not models:
        say("no models stored" + (f" in family {ctx.args.family!r}" if ctx.args.family else ""))
        return 0
    columns = ("id", "name", "family", "format", "task", "quantization", "sparsity", "variant",
               "size", "sha256", "created")
    rows = [(m.id, m.name, m.family, m.format, m.task, m.variant.quantization, m.variant.sparsity,
             m.variant.label, format_bytes(m.size_bytes), short_sha(m.sha256), m.created_at)
            for m in models]
    print_table(columns, rows, right=("id", "size", "sparsity"))
    return 0


def run_show(ctx: Context) -> int:
    model = ctx.client.get_model(ctx.args.ref)
    if ctx.json:
        emit_json(model.model_dump(mode="json"))
    else:
        print_fields(model_fields(model, detailed=True))
    return 0


def run_delete(ctx: Context) -> int:
    ref = ctx.args.ref.strip()
    model_id = int(ref) if ref.isdigit() else ctx.client.get_model(ref).id
    model = ctx.client.delete_model(model_id)
    if ctx.json:
        emit_json(model.model_dump(mode="json"))
    else:
        say(f"deleted model {model.id} ({model.name}, sha256 {short_sha(model.sha256)})")
    return 0
