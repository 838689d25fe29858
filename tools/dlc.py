"""Converting a ``.tflite`` or ``.onnx`` model to an SNPE DLC with the SNPE / QAIRT
SDK's own converters, optionally quantized with calibration data.

This module owns ``convert_to_dlc`` (the converters ``snpe-tflite-to-dlc`` /
``snpe-onnx-to-dlc`` with ``--input_network`` and ``--output_path``, then
``snpe-dlc-quantize`` (or its SNPE 2.x successor ``snpe-dlc-quant``) with
``--input_dlc``, ``--input_list`` and ``--output_dlc``), the calibration input
list (one raw float32 file per sample, in the DLC's NHWC input layout) and
``calibration_from_dataset``, which takes those samples spread over a dataset
through the agent's own decoding and pre-processing
(``edgefarm.tools.common.dataset_inputs``), so calibration sees exactly what the
farm's evaluation feeds the model. The SDK is found as the agent finds it
(``$SNPE_ROOT/bin/<arch>`` or ``$PATH``), and an absent tool raises the agent's own
``SDKMissing`` (both from ``edgefarm.agent.runtimes.snpe_sdk``); it is never installed
from PyPI. ``main`` is ``python -m edgefarm.tools.dlc``.
"""

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional

import numpy as np

from edgefarm.agent.runtimes.snpe_sdk import SDKMissing, find_tool, require_tool, run_tool
from edgefarm.shared.formats import detect_format

from .common import ToolError, dataset_inputs

CONVERTERS = {"tflite": "snpe-tflite-to-dlc", "onnx": "snpe-onnx-to-dlc"}
QUANTIZERS = ("snpe-dlc-quantize", "snpe-dlc-quant")


def write_input_list(arrays: Iterable[np.ndarray], folder: Path) -> Path:
    """One raw float32 file per sample and the input list naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    lines: List[str] = []
    for index, array in enumerate(arrays):
        path = folder / f"calibration_{index:05d}.raw"
        np.ascontiguousarray(array, dtype=np.float32).tofile(path)
        lines.append(str(path))
    if not lines:
        raise ValueError("calibration needs at least one input")
    listing = folder / "input_list.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def _quantize(float_dlc: Path, dest: Path, listing: Path) -> None:
    tool = next((name for name in QUANTIZERS if find_tool(name) is not None), None)
    if tool is None:
        raise SDKMissing(QUANTIZERS[0])
    run_tool(tool, ["--input_dlc", str(float_dlc), "--input_list", str(listing),
                    "--output_dlc", str(dest)], timeout=None)


def convert_to_dlc(model_path, dest, calibration_inputs: Optional[Iterable[np.ndarray]] = None) -> Path:
    """Write ``dest`` (a DLC) from the ``.tflite`` / ``.onnx`` model at ``model_path``;
    with ``calibration_inputs`` (pre-processed input arrays, one per sample) the DLC
    is quantized with them. Raises SDKMissing when the SDK's tools are absent."""
    model_path, dest = Path(model_path), Path(dest)
    fmt = detect_format(model_path)
    if fmt not in CONVERTERS:
        raise ValueError(f"{model_path} is already a {fmt} file; DLCs are converted from .tflite or .onnx")
    converter = CONVERTERS[fmt]
    require_tool(converter)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if calibration_inputs is None:
        run_tool(converter, ["--input_network", str(model_path), "--output_path", str(dest)], timeout=None)
        return dest
    with tempfile.TemporaryDirectory(prefix="edgefarm-dlc-") as tmp:
        float_dlc = Path(tmp) / "float.dlc"
        run_tool(converter, ["--input_network", str(model_path), "--output_path", str(float_dlc)],
                 timeout=None)
        _quantize(float_dlc, dest, write_input_list(calibration_inputs, Path(tmp) / "calibration"))
    return dest


def _model_input(model_path: Path) -> dict:
    if detect_format(model_path) == "onnx":
        from edgefarm.shared.formats.onnx import read_onnx_info

        record = read_onnx_info(model_path)["inputs"][0]
        shape = [d if d > 0 else 1 for d in record["shape"]]
        if len(shape) == 4 and shape[1] in (1, 3):  # the DLC takes it channels-last
            shape = [shape[0], shape[2], shape[3], shape[1]]
        return {"shape": shape}
    from edgefarm.shared.formats import read_tflite_info

    return {"shape": read_tflite_info(model_path)["inputs"][0]["shape"]}


def calibration_from_dataset(model_path, dataset_dir, layout: str, split: Optional[str] = None,
                             limit: int = 100, preprocessing=None) -> List[np.ndarray]:
    """Up to ``limit`` samples spread over the dataset, decoded and pre-processed by the
    agent's code into the model's (NHWC, float32) input: the calibration inputs."""
    from edgefarm.shared.datasets.preprocess import InputSpec

    spec = InputSpec(tuple(_model_input(Path(model_path))["shape"]), "float32", "nhwc")
    return dataset_inputs(Path(dataset_dir), layout, split, limit, spec, preprocessing).tensors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgefarm.tools.dlc",
                                     description="Convert a .tflite or .onnx model to an SNPE DLC.")
    parser.add_argument("model")
    parser.add_argument("dest")
    parser.add_argument("--calibration-dataset", help="an extracted dataset folder: quantize with it")
    parser.add_argument("--layout", default="imagefolder", help="the dataset's layout")
    parser.add_argument("--split")
    parser.add_argument("--limit", type=int, default=100, help="calibration samples (default 100)")
    args = parser.parse_args(argv)
    try:
        calibration = None
        if args.calibration_dataset:
            calibration = calibration_from_dataset(args.model, args.calibration_dataset, args.layout,
                                                   args.split, args.limit)
        print(convert_to_dlc(args.model, args.dest, calibration))
    except (SDKMissing, ToolError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
