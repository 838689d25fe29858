"""``edgefarm tools prune``: magnitude pruning, two ways.

* ``prune_tflite``: post-training, no retraining. The float weights of every
  CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and TRANSPOSE_CONV of a
  ``.tflite`` file are rewritten in place (flatbuffers object API): in each
  layer the smallest |w| become exact zeros until the layer reaches the target
  sparsity. Nothing compensates for the removed weights, so accuracy usually
  drops, often sharply: the report says so, and ``measure_accuracy`` measures
  it with the agent's own benchmark on a dataset.
* ``prune_keras``: pruning while fine-tuning a Keras model on a labelled
  dataset (TensorFlow Model Optimization's ``prune_low_magnitude`` with a
  polynomial schedule up to the target), then ``strip_pruning`` and export to
  TFLite with ``Optimize.EXPERIMENTAL_SPARSITY``, which stores the pruned
  weights in TFLite's sparse encoding that XNNPACK's sparse kernels read.

Both write the pruned model, its lineage sidecar, and report the sparsity of
each layer as ``edgefarm.tools.inspect`` reads it back from the written file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from edgefarm.shared.formats.tflite_objects import model_object_bytes, write_atomically

from .common import ToolError, read_model_object
from .inspect import inspect_model
from .lineage import dataset_sha256, write_sidecar

#: Operator -> position of its weights among the operator's inputs.
PRUNABLE = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1}
FLOAT_TYPES = {0: np.float32, 1: np.float16}  # TensorType FLOAT32, FLOAT16
WARNING = ("post-training pruning removes weights without retraining: measure the accuracy of the "
           "pruned model before using it (for example with --eval-dataset, or on the farm)")


def magnitude_prune(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """A copy with the ``sparsity`` fraction (rounded up) of smallest-magnitude entries
    set to zero, so that the result reaches the target."""
    count = min(weights.size, int(np.ceil(sparsity * weights.size - 1e-9)))
    pruned = weights.copy()
    if count:
        smallest = np.argsort(np.abs(weights), axis=None, kind="stable")[:count]
        pruned.flat[smallest] = 0
    return pruned


def _operator_names(schema: Any, model: Any) -> List[str]:
    names = {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}
    return [names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
            for code in model.operatorCodes]


def prunable_weights(schema: Any, model: Any) -> List[Dict[str, Any]]:
    """Each float weight tensor a prunable operator reads (each buffer once)."""
    names, seen, found = _operator_names(schema, model), set(), []
    for graph in model.subgraphs:
        for op in graph.operators:
            kind = names[op.opcodeIndex]
            position = PRUNABLE.get(kind)
            if position is None or len(op.inputs) <= position or op.inputs[position] < 0:
                continue
            tensor = graph.tensors[op.inputs[position]]
            buffer = model.buffers[tensor.buffer]
            usable = (tensor.type in FLOAT_TYPES and tensor.sparsity is None
                      and buffer.data is not None and len(buffer.data) > 0)
            if usable and tensor.buffer not in seen:
                seen.add(tensor.buffer)
                found.append({"tensor": tensor, "buffer": buffer, "op": kind})
    return found


def prune_tflite(source: Any, dest: Any, sparsity: float, min_elements: int = 0) -> Dict[str, Any]:
    """Write the post-training pruned model and its sidecar; returns the report."""
    if not 0.0 < sparsity < 1.0:
        raise ToolError(f"the target sparsity must lie strictly between 0 and 1, not {sparsity}")
    source, dest = Path(source), Path(dest)
    schema, model = read_model_object(source)
    weights = prunable_weights(schema, model)
    if not weights:
        raise ToolError(f"{source} has no float weights to prune (quantized models: prune before "
                        "quantizing)")
    pruned_layers = 0
    for entry in weights:
        values = np.frombuffer(bytes(entry["buffer"].data), dtype=FLOAT_TYPES[entry["tensor"].type])
        if values.size < min_elements:
            continue
        entry["buffer"].data = np.frombuffer(magnitude_prune(values, sparsity).tobytes(), dtype=np.uint8)
        pruned_layers += 1
    write_atomically(dest, model_object_bytes(model))
    recipe = {"method": "magnitude", "scope": "per-layer", "target_sparsity": sparsity,
              "retraining": "none", "min_elements": min_elements, "ops": sorted(PRUNABLE)}
    return pruning_report(source, dest, recipe, pruned_layers, ("ai-edge-litert",), parent=source)


def pruning_report(source: Path, dest: Path, recipe: Dict[str, Any], pruned_layers: Optional[int],
                   packages: Any, parent: Optional[Path]) -> Dict[str, Any]:
    """Read the written model back; write its sidecar (``parent``: the model in
    the farm it derives from, if any); the report."""
    facts = inspect_model(dest)
    sparsity = facts["weights"]["sparsity"]
    if pruned_layers is None:
        pruned_layers = sum(1 for layer in facts["layers"] if layer["zeros"])
    label = f"pruned-{recipe['target_sparsity']:g}"
    sidecar = write_sidecar(dest, parent, recipe,
                            {"quantization": facts["quantization"], "sparsity": round(sparsity, 6),
                             "label": label}, packages)
    layers = [{key: layer[key] for key in ("name", "dtype", "shape", "elements", "zeros", "sparsity",
                                           "encoding")} for layer in facts["layers"]]
    return {"model": str(dest), "source": str(source), "parent": str(parent) if parent else None,
            "label": label, "recipe": recipe,
            "pruned_layers": pruned_layers, "sparsity": sparsity, "layers": layers,
            "size_bytes": facts["size_bytes"],
            "parent_size_bytes": source.stat().st_size if source.is_file() else None,
            "lineage_file": str(sidecar), "warning": WARNING if recipe.get("retraining") == "none" else None}


def measure_accuracy(model: Any, dataset: Any, layout: str, split: Optional[str] = None,
                     limit: Optional[int] = None) -> Dict[str, Any]:
    """Top-1 (classification) or mIoU (voc-seg) of a ``.tflite`` model on a local
    dataset, measured by the agent's benchmark (``edgefarm.agent.execute.run_benchmark``)."""
    from edgefarm.agent.execute import RunFailed, RunSpec, run_benchmark
    from edgefarm.shared.contract.schemas import RunSettings

    from .common import dataset_folder

    task = "segmentation" if layout == "voc-seg" else "classification"
    settings = RunSettings(threads=2, warmup_runs=0, warmup_seconds=0, measured_runs=1, min_seconds=0,
                           sample_limit=limit)
    with dataset_folder(dataset, layout) as root:
        spec = RunSpec(model_path=str(model), settings=settings, task=task, dataset_dir=str(root),
                       dataset_layout=layout, dataset_split=split)
        try:
            result = run_benchmark(spec)
        except RunFailed as exc:
            raise ToolError(f"cannot evaluate {model}: {exc}")
    metrics = result.metrics.model_dump() if result.metrics else {}
    metric = "miou" if task == "segmentation" else "top1"
    return {"metric": metric, "value": metrics.get(metric), "samples": metrics.get("sample_count")}


def accuracy_drop(base: Any, pruned: Any, dataset: Any, layout: str,
                  split: Optional[str] = None) -> Dict[str, Any]:
    """The metric of both models on the dataset and the drop in points."""
    before = measure_accuracy(base, dataset, layout, split)
    after = measure_accuracy(pruned, dataset, layout, split)
    drop = None
    if before["value"] is not None and after["value"] is not None:
        drop = (before["value"] - after["value"]) * 100
    return {"metric": before["metric"], "base": before["value"], "pruned": after["value"],
            "drop_points": drop, "samples": after["samples"]}


# ---------------------------------------------------------------- Keras, with fine-tuning


def _training_data(model: Any, dataset: Any, layout: str, split: Optional[str]) -> Any:
    """``(inputs, labels)`` of the whole dataset as the model's input tensors."""
    from edgefarm.shared.datasets.preprocess import InputSpec

    from .common import dataset_folder, dataset_inputs

    spec = InputSpec(tuple([1] + [int(d) for d in model.input_shape[1:]]), "float32", "nhwc")
    with dataset_folder(dataset, layout) as root:
        inputs, labels = dataset_inputs(root, layout, split, None, spec)
    if any(label is None for label in labels):
        raise ToolError(f"fine-tuning needs a labelled classification dataset; {layout} has no labels")
    return np.concatenate(inputs), np.asarray(labels, dtype=np.int64)


def _loss(model: Any, keras: Any) -> Any:
    """Cross-entropy on class indices, on logits unless the model ends in softmax."""
    activation = getattr(model.layers[-1], "activation", None)
    softmax = activation is keras.activations.softmax
    return keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax)


def _fine_tune(model: Any, x: Any, y: Any, sparsity: float, epochs: int, batch: int,
               learning_rate: float) -> Any:
    """Prune while training: sparsity ramps from 0 to the target over the first
    half of the steps and holds there for the second half; returns the stripped model."""
    from .convert import require_tensorflow

    _, keras = require_tensorflow()
    import tensorflow_model_optimization as tfmot

    steps = int(np.ceil(len(x) / batch)) * epochs
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
        end_step=max(1, steps // 2), frequency=max(1, steps // 50))
    try:
        pruning = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    except ValueError as exc:
        raise ToolError(f"this Keras model cannot be pruned by tensorflow-model-optimization: {exc}")
    pruning.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=_loss(model, keras),
                    metrics=["accuracy"])
    keras.utils.set_random_seed(0)
    pruning.fit(x, y, epochs=epochs, batch_size=batch, verbose=0, shuffle=True,
                callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruning)
    _top_up(stripped, sparsity)
    return stripped


def _top_up(model: Any, sparsity: float) -> None:
    """The schedule rounds each layer's count of zeros; zero the few smallest
    weights still missing so that every pruned kernel reaches the target."""
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        values = kernel.numpy()
        if np.mean(values == 0) > sparsity / 2:  # a kernel the schedule pruned
            kernel.assign(magnitude_prune(values, sparsity))


def prune_keras(source: Any, dest: Any, sparsity: float, dataset: Any, layout: str,
                split: Optional[str] = None, epochs: int = 10, batch: int = 32,
                learning_rate: float = 1e-3, parent: Optional[Any] = None) -> Dict[str, Any]:
    """Fine-tune-prune a Keras model (or Keras SavedModel) and write it as TFLite."""
    from .convert import load_keras, source_kind, to_tflite

    if not 0.0 < sparsity < 1.0:
        raise ToolError(f"the target sparsity must lie strictly between 0 and 1, not {sparsity}")
    source, dest = Path(source), Path(dest)
    source_kind(source)
    model = load_keras(source)
    x, y = _training_data(model, dataset, layout, split)
    stripped = _fine_tune(model, x, y, sparsity, epochs, batch, learning_rate)
    write_atomically(dest, to_tflite(stripped, ["EXPERIMENTAL_SPARSITY"]))
    recipe = {"method": "magnitude", "scope": "per-layer", "target_sparsity": sparsity,
              "retraining": "fine-tuning", "schedule": "polynomial decay over the first half",
              "epochs": epochs, "batch_size": batch, "learning_rate": learning_rate,
              "training_samples": int(len(x)), "source": source.name}
    packages = ("tensorflow", "tf-keras", "tensorflow-model-optimization")
    recipe["training_dataset_sha256"] = dataset_sha256(dataset)
    return pruning_report(source, dest, recipe, None, packages, Path(parent) if parent else None)
