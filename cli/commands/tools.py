"""``edgefarm tools inspect|quantize|prune|convert``: the compression tools,
run locally on model files (no server involved).

The work is done by the ``tools`` package, imported only when a command runs
so that the rest of the CLI needs neither numpy nor the quantizer; its
``ToolError`` becomes a ``CliError`` (exit 2). Each command that writes a
model also writes ``OUT.lineage.json``, which ``edgefarm models push
--lineage`` sends with the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List

from edgefarm.shared.contract.enums import DatasetLayout

from ..errors import CliError
from ..output import emit_json, format_bytes, format_shape, print_fields, print_table, say, warn
from . import Context, add_json_option
from .models import float_list

LAYOUTS = [layout.value for layout in DatasetLayout]


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("tools", help="inspect, quantize, prune and convert model files",
                                  description="Compression tools that work on local model files.")
    sub = group.add_subparsers(dest="tools_command", metavar="COMMAND", required=True)
    inspect = _command(sub, "inspect", run_inspect, "operators, tensors, parameters, sparsity, quantization")
    inspect.add_argument("model", type=Path, metavar="MODEL", help="a .tflite file")
    inspect.add_argument("--tensors", action="store_true", help="list every tensor too")
    _register_quantize(sub)
    _register_prune(sub)
    convert = _command(sub, "convert", run_convert, "Keras (.keras, .h5) or SavedModel to float32 TFLite "
                                                    "(needs edgefarm[tools-tf]); .tflite/.onnx to an SNPE "
                                                    "DLC with --to dlc (needs the SNPE SDK)")
    convert.add_argument("source", type=Path, metavar="SOURCE",
                         help="a Keras file or SavedModel folder; a .tflite or .onnx file with --to dlc")
    convert.add_argument("-o", "--output", type=Path, metavar="OUT", help="default: SOURCE.tflite / .dlc")
    convert.add_argument("--to", choices=["tflite", "dlc"], default="tflite")
    convert.add_argument("--calibration-dataset", type=Path, metavar="DIR",
                         help="with --to dlc: quantize the DLC (snpe-dlc-quantize) with samples of this "
                              "extracted dataset, pre-processed as the agent does")
    convert.add_argument("--layout", default="imagefolder", help="the calibration dataset's layout")
    convert.add_argument("--samples", type=int, default=100, help="calibration samples (default 100)")


def _command(sub: Any, name: str, handler: Callable[[Context], int], help: str) -> Any:
    parser = sub.add_parser(name, help=help, description=help)
    add_json_option(parser)
    parser.set_defaults(handler=_tool(handler))
    return parser


def _tool(handler: Callable[[Context], int]) -> Callable[[Context], int]:
    """The handler, with the tools' errors turned into CLI errors."""
    def run(ctx: Context) -> int:
        from edgefarm.shared.formats import ModelFormatError
        from edgefarm.tools.common import ToolError

        try:
            return handler(ctx)
        except (ToolError, ModelFormatError) as exc:
            raise CliError(str(exc))
        except ImportError as exc:
            raise CliError(f"a library the tools need is missing: pip install 'edgefarm[tools]' ({exc})")
    return run


def _register_quantize(sub: Any) -> None:
    from_modes = "dynamic, dynamic-all, fp16, int8, int16x8, weight-only-int8, weight-only-int4, dynamic-int4"
    p = _command(sub, "quantize", run_quantize, "post-training quantization with ai-edge-quantizer")
    p.add_argument("model", type=Path, metavar="MODEL", help="a float32 .tflite file")
    p.add_argument("--mode", required=True, metavar="MODE", help=f"one of: {from_modes}")
    p.add_argument("--dataset", type=Path, metavar="PATH", help="calibration data: dataset folder or archive")
    p.add_argument("--layout", choices=LAYOUTS, help="layout of the calibration dataset")
    p.add_argument("--split", help="split of the calibration dataset (voc-seg)")
    p.add_argument("--samples", type=int, default=100, metavar="N", help="calibration samples (100)")
    p.add_argument("--mean", type=float_list, metavar="A,B,C", help="pre-processing mean (127.5)")
    p.add_argument("--std", type=float_list, metavar="A,B,C", help="pre-processing std (127.5)")
    p.add_argument("-o", "--output", type=Path, metavar="OUT", help="default: MODEL-MODE.tflite")


def _register_prune(sub: Any) -> None:
    p = _command(sub, "prune", run_prune, "magnitude pruning: of a .tflite file (post-training), or of a "
                                          "Keras model with fine-tuning (needs edgefarm[tools-tf])")
    p.add_argument("model", type=Path, metavar="MODEL", help=".tflite, .keras, .h5 or SavedModel folder")
    p.add_argument("--sparsity", type=float, required=True, metavar="S", help="target, e.g. 0.9")
    p.add_argument("-o", "--output", type=Path, metavar="OUT", help="default: MODEL-pruned-S.tflite")
    p.add_argument("--min-elements", type=int, default=0, metavar="N",
                   help=".tflite: leave layers with fewer weights alone")
    p.add_argument("--dataset", type=Path, metavar="PATH", help="Keras: labelled data to fine-tune on")
    p.add_argument("--layout", choices=LAYOUTS, help="layout of --dataset")
    p.add_argument("--split", help="split of --dataset")
    p.add_argument("--epochs", type=int, default=10, metavar="N", help="Keras: fine-tuning epochs (10)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N")
    p.add_argument("--learning-rate", type=float, default=1e-3, metavar="LR")
    p.add_argument("--parent", type=Path, metavar="FILE",
                   help="Keras: the .tflite model in the farm this one derives from (for its lineage)")
    p.add_argument("--eval-dataset", type=Path, metavar="PATH",
                   help="measure accuracy before and after on this dataset (folder or archive)")
    p.add_argument("--eval-layout", choices=LAYOUTS, help="layout of --eval-dataset")
    p.add_argument("--eval-split", help="split of --eval-dataset")


# ---------------------------------------------------------------- inspect


def run_inspect(ctx: Context) -> int:
    from edgefarm.tools.inspect import inspect_model

    path = _model_file(ctx.args.model)
    facts = inspect_model(path)
    if ctx.json:
        emit_json(facts)
        return 0
    weights = facts["weights"]
    print_fields([
        ("file", facts["file"]),
        ("size", f"{format_bytes(facts['size_bytes'])} ({facts['size_bytes']} bytes)"),
        ("sha256", facts["sha256"]), ("quantization", facts["quantization"]),
        ("parameters", f"{facts['parameter_count']:,}"),
        ("tensors", f"{facts['tensor_count']} ({_counts(facts['tensor_dtypes'])})"),
        ("operators", f"{facts['operator_count']} ({len(facts['operators'])} kinds)"),
        ("weights", f"{weights['tensors']} tensors, {weights['elements']:,} values, "
                    f"{format_bytes(weights['bytes'])}"),
        ("sparsity", f"{weights['sparsity']:.2%} zeros over all weights"),
    ] + [("input", _tensor_text(t)) for t in facts["inputs"]]
      + [("output", _tensor_text(t)) for t in facts["outputs"]])
    print_table(("operator", "count"), list(facts["operators"].items()), right=("count",))
    rows = [(layer["name"], layer["dtype"], format_shape(layer["shape"]), layer["elements"],
             f"{layer['sparsity']:.2%}", _scheme(layer["quantization"]), layer["encoding"])
            for layer in facts["layers"]]
    print_table(("weight", "dtype", "shape", "values", "sparsity", "quantization", "storage"), rows,
                right=("values", "sparsity"))
    if ctx.args.tensors:
        rows = [(t["subgraph"], t["index"], t["name"], format_shape(t["shape"]), t["dtype"],
                 _scheme(t["quantization"]), format_bytes(t["bytes"]) if t["constant"] else "-")
                for t in facts["tensors"]]
        print_table(("graph", "index", "tensor", "shape", "dtype", "quantization", "constant"), rows,
                    right=("graph", "index", "constant"))
    return 0


def _model_file(path: Path) -> Path:
    if not path.is_file():
        raise CliError(f"no such model file: {path}")
    return path


def _counts(counts: Dict[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in sorted(counts.items(), key=lambda kv: -kv[1]))


def _tensor_text(tensor: Dict[str, Any]) -> str:
    quant = tensor.get("quantization")
    suffix = f" scale {quant['scale'][0]:.6g} zero point {quant['zero_point'][0]}" if quant else ""
    return f"{tensor['name']} {format_shape(tensor['shape'])} {tensor['dtype']}{suffix}"


def _scheme(quantization: Dict[str, Any]) -> str:
    if quantization["scheme"] == "none":
        return "none"
    if quantization["scheme"] == "per-channel":
        return f"per-channel ({quantization['scales']} scales)"
    return f"per-tensor (scale {quantization['scale']:.4g}, zero point {quantization['zero_point']})"


# ---------------------------------------------------------------- quantize, convert


def run_quantize(ctx: Context) -> int:
    from edgefarm.tools.quantize import MODES, Calibration, quantize_model

    args = ctx.args
    path = _model_file(args.model)
    if args.mode not in MODES:
        raise CliError(f"unknown --mode {args.mode!r}; choose from {', '.join(MODES)}")
    calibration = None
    if args.dataset is not None:
        if not args.layout:
            raise CliError("--dataset needs --layout")
        if args.samples < 1:
            raise CliError("--samples must be at least 1")
        calibration = Calibration(args.dataset, args.layout, args.split, args.samples, _preprocessing(args))
    output = args.output or path.with_name(f"{path.stem}-{args.mode}.tflite")
    report = quantize_model(path, output, args.mode, calibration)
    if ctx.json:
        emit_json(report)
        return 0
    print_fields([
        ("model", report["model"]), ("mode", f"{report['mode']} ({MODES[args.mode].about})"),
        ("size", f"{format_bytes(report['size_bytes'])}, {report['size_ratio']:.1%} of the parent "
                 f"({format_bytes(report['parent_size_bytes'])})"),
        ("calibration", f"{report['calibration_samples']} samples" if report["calibration_samples"] else "-"),
        ("lineage", report["lineage_file"]),
    ])
    return 0


def _preprocessing(args: Any) -> Any:
    if args.mean is None and args.std is None:
        return None
    from edgefarm.shared.contract.schemas import Preprocessing

    values = {key: value for key, value in (("mean", args.mean), ("std", args.std)) if value is not None}
    return Preprocessing(**values)


def run_convert(ctx: Context) -> int:
    if ctx.args.to == "dlc":
        return run_convert_dlc(ctx)
    from edgefarm.tools.convert import convert_model

    source = ctx.args.source
    output = ctx.args.output or source.with_name(f"{source.name.rsplit('.', 1)[0]}.tflite")
    report = convert_model(source, output)
    if ctx.json:
        emit_json(report)
    else:
        print_fields([("model", report["model"]), ("from", f"{report['from']} {report['source']}"),
                      ("size", format_bytes(report["size_bytes"])), ("lineage", report["lineage_file"])])
    return 0


def run_convert_dlc(ctx: Context) -> int:
    """SNPE's converters (snpe-tflite-to-dlc / snpe-onnx-to-dlc, snpe-dlc-quantize)."""
    from edgefarm.tools.dlc import SDKMissing, calibration_from_dataset, convert_to_dlc

    args = ctx.args
    if not args.source.is_file():
        raise CliError(f"model {args.source} does not exist")
    output = args.output or args.source.with_suffix(".dlc")
    calibration = None
    if args.calibration_dataset:
        calibration = calibration_from_dataset(args.source, args.calibration_dataset, args.layout,
                                               limit=args.samples)
    try:
        written = convert_to_dlc(args.source, output, calibration)
    except SDKMissing as exc:
        raise CliError(str(exc))
    report = {"model": str(written), "from": str(args.source), "size_bytes": written.stat().st_size,
              "quantized": calibration is not None}
    if ctx.json:
        emit_json(report)
    else:
        print_fields([("model", report["model"]), ("from", report["from"]),
                      ("size", format_bytes(report["size_bytes"])),
                      ("quantized", "yes" if report["quantized"] else "no")])
    return 0


# ---------------------------------------------------------------- prune


def run_prune(ctx: Context) -> int:
    from edgefarm.shared.formats import ModelFormatError, detect_format
    from edgefarm.tools import prune

    args = ctx.args
    if not args.model.exists():
        raise CliError(f"no such model: {args.model}")
    try:
        is_tflite = args.model.is_file() and detect_format(args.model) == "tflite"
    except ModelFormatError:
        is_tflite = False
    output = args.output or args.model.with_name(
        f"{args.model.name.rsplit('.', 1)[0]}-pruned-{args.sparsity:g}.tflite")
    if is_tflite:
        if args.dataset is not None:
            raise CliError("--dataset is for fine-tuning Keras models; a .tflite file is pruned without it")
        report = prune.prune_tflite(args.model, output, args.sparsity, args.min_elements)
    else:
        if args.dataset is None or not args.layout:
            raise CliError("pruning a Keras model fine-tunes it: give --dataset PATH and --layout")
        report = prune.prune_keras(args.model, output, args.sparsity, args.dataset, args.layout, args.split,
                                   args.epochs, args.batch_size, args.learning_rate, args.parent)
    if args.eval_dataset is not None:
        report["accuracy"] = _measured(args, prune, args.model if is_tflite else args.parent, output)
    _print_prune(ctx, report)
    return 0


def _measured(args: Any, prune: Any, base: Any, output: Path) -> Dict[str, Any]:
    if not args.eval_layout:
        raise CliError("--eval-dataset needs --eval-layout")
    if base is None:
        measured = prune.measure_accuracy(output, args.eval_dataset, args.eval_layout, args.eval_split)
        return {"metric": measured["metric"], "base": None, "pruned": measured["value"],
                "drop_points": None, "samples": measured["samples"]}
    return prune.accuracy_drop(base, output, args.eval_dataset, args.eval_layout, args.eval_split)


def _print_prune(ctx: Context, report: Dict[str, Any]) -> None:
    if ctx.json:
        emit_json(report)
    else:
        rows = [(layer["name"], format_shape(layer["shape"]), layer["elements"], f"{layer['sparsity']:.2%}",
                 layer["encoding"]) for layer in report["layers"]]
        print_table(("weight", "shape", "values", "sparsity", "storage"), rows, right=("values", "sparsity"))
        print_fields(_prune_fields(report))
    if report.get("warning"):
        warn(report["warning"])
    accuracy = report.get("accuracy")
    if accuracy and accuracy.get("drop_points") is not None:
        say(f"measured {accuracy['metric']}: {accuracy['base']:.4f} before, {accuracy['pruned']:.4f} after "
            f"pruning ({accuracy['drop_points']:.2f} points lost) on {accuracy['samples']} samples")
    elif accuracy and accuracy.get("pruned") is not None:
        say(f"measured {accuracy['metric']} after pruning: {accuracy['pruned']:.4f} on "
            f"{accuracy['samples']} samples (give --parent to compare with the base)")


def _prune_fields(report: Dict[str, Any]) -> List[Any]:
    return [("model", report["model"]), ("sparsity", f"{report['sparsity']:.2%} of all weights "
                                                     f"({report['pruned_layers']} layers pruned)"),
            ("size", f"{format_bytes(report['size_bytes'])} "
                     f"(source {format_bytes(report['parent_size_bytes']) or '-'})"),
            ("lineage", report["lineage_file"])]
