"""The demo's real model family: a small classifier of scikit-learn's bundled
digits (8x8 grayscale images, values 0..16; no download), trained with plain
numpy and written as TFLite variants for the farm to compare.

This module owns the fixed train/test split, the pixel transform, training
(``train_digits``), magnitude pruning (``prune``), the TFLite variants
(``write_variants``) and the test split as an ``imagefolder`` dataset
(``write_imagefolder``).

The transform is the agent's default pre-processing, so the farm's evaluation
reproduces the accuracy computed here: a digit value v becomes the 8-bit pixel
``round(v * 255 / 16)`` (what the PNGs of the dataset hold), and a pixel p
becomes the float input ``(p - 127.5) / 127.5`` (mean = std = 127.5, as in
``edgefarm.shared.datasets.preprocess.default_preprocessing``).

The model: input ``image`` [1, 8, 8, 1] float32, RESHAPE to [1, 64],
FULLY_CONNECTED 64 -> 32 with ReLU, FULLY_CONNECTED 32 -> 10, SOFTMAX. Pruned
variants zero the smallest |w| of each dense layer's weights (biases are kept),
then fine-tune briefly with the zeros held, as a pruning recipe does.
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edgefarm.shared.formats.tflite_builder import build_mlp

Layers = List[Tuple[np.ndarray, np.ndarray]]  # (weights [out][in], bias [out]) per dense layer

FAMILY = "digits-mlp"
LABELS = [str(digit) for digit in range(10)]
INPUT_NAME, INPUT_SHAPE = "image", (1, 8, 8, 1)
HIDDEN = 32
TEST_FRACTION, SPLIT_SEED = 0.2, 0
PRUNING_LEVELS = (0.5, 0.8)
TRAIN_EPOCHS, FINETUNE_EPOCHS = 40, 40
MEAN = STD = 127.5


def load_split() -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train pixels, train labels, test pixels, test labels); pixels are Nx8x8 uint8.

    The split is fixed (stratified, seed 0): 1437 training and 360 test images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = np.floor(digits.images * (255.0 / 16.0) + 0.5).astype(np.uint8)  # half up
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        pixels, labels, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels)
    return x_train, y_train, x_test, y_test


def to_input(pixels: np.ndarray) -> np.ndarray:
    """Nx8x8 uint8 pixels -> Nx8x8x1 float32 model inputs, computed as the agent does."""
    values = (pixels.astype(np.float32) - np.float32(MEAN)) / np.float32(STD)
    return values.reshape(-1, *INPUT_SHAPE[1:])


def predict(layers: Layers, inputs: np.ndarray) -> np.ndarray:
    """Class probabilities (float32), the same graph as the TFLite model."""
    hidden = inputs.reshape(len(inputs), -1).astype(np.float32)
    for i, (weights, bias) in enumerate(layers):
        hidden = hidden @ weights.T + bias
        if i < len(layers) - 1:
            hidden = np.maximum(hidden, 0)
    hidden = hidden - hidden.max(axis=1, keepdims=True)
    exp = np.exp(hidden)
    return exp / exp.sum(axis=1, keepdims=True)


def accuracy(layers: Layers, inputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(predict(layers, inputs), axis=1) == labels))


def _init(rng: np.random.Generator, sizes: List[int]) -> Layers:
    """He-normal weights, zero biases."""
    return [(rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_out, fan_in)).astype(np.float32),
             np.zeros(fan_out, np.float32)) for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]


def _gradients(layers: Layers, x: np.ndarray, y: np.ndarray) -> List[np.ndarray]:
    """Gradients of the mean cross-entropy, as [dW0, db0, dW1, db1, ...]."""
    (w1, b1), (w2, b2) = layers
    pre = x @ w1.T + b1
    hidden = np.maximum(pre, 0)
    logits = hidden @ w2.T + b2
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    probs[np.arange(len(y)), y] -= 1
    d_logits = probs / len(y)
    d_hidden = (d_logits @ w2) * (pre > 0)
    return [d_hidden.T @ x, d_hidden.sum(axis=0), d_logits.T @ hidden, d_logits.sum(axis=0)]


def _adam(layers: Layers, x: np.ndarray, y: np.ndarray, epochs: int, lr: float, seed: int,
          masks: Optional[List[np.ndarray]] = None) -> Layers:
    """Mini-batch Adam (batch 32); ``masks`` hold pruned weights at zero."""
    rng = np.random.default_rng(seed)
    params = [p.copy() for layer in layers for p in layer]
    moments = [np.zeros_like(p) for p in params]
    squares = [np.zeros_like(p) for p in params]
    beta1, beta2, eps, step = 0.9, 0.999, 1e-8, 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), 32):
            batch = order[start:start + 32]
            grads = _gradients([(params[0], params[1]), (params[2], params[3])], x[batch], y[batch])
            step += 1
            for i, grad in enumerate(grads):
                moments[i] = beta1 * moments[i] + (1 - beta1) * grad
                squares[i] = beta2 * squares[i] + (1 - beta2) * grad * grad
                m_hat = moments[i] / (1 - beta1 ** step)
                v_hat = squares[i] / (1 - beta2 ** step)
                params[i] = (params[i] - lr * m_hat / (np.sqrt(v_hat) + eps)).astype(np.float32)
            if masks is not None:
                params[0] *= masks[0]
                params[2] *= masks[1]
    return [(params[0], params[1]), (params[2], params[3])]


def train_digits(seed: int = 0, epochs: int = TRAIN_EPOCHS) -> Tuple[Layers, float]:
    """Train 64 -> 32 (ReLU) -> 10 (softmax) on the fixed split: (layers, test accuracy)."""
    x_train, y_train, x_test, y_test = load_split()
    rng = np.random.default_rng(seed)
    layers = _init(rng, [64, HIDDEN, 10])
    flat = to_input(x_train).reshape(len(x_train), -1)
    layers = _adam(layers, flat, y_train, epochs=epochs, lr=3e-3, seed=seed)
    return layers, accuracy(layers, to_input(x_test), y_test)


def prune(layers: Layers, sparsity: float) -> Layers:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights of each layer."""
    pruned = []
    for weights, bias in layers:
        count = int(round(sparsity * weights.size))
        kept = weights.copy()
        if count:
            smallest = np.argsort(np.abs(weights), axis=None, kind="stable")[:count]
            kept.flat[smallest] = 0.0
        pruned.append((kept, bias.copy()))
    return pruned


def prune_and_finetune(layers: Layers, sparsity: float, seed: int = 0,
                       epochs: int = FINETUNE_EPOCHS) -> Layers:
    """Magnitude pruning, then a short fine-tune that keeps the pruned weights at zero."""
    pruned = prune(layers, sparsity)
    masks = [(weights != 0).astype(np.float32) for weights, _ in pruned]
    x_train, y_train, _, _ = load_split()
    flat = to_input(x_train).reshape(len(x_train), -1)
    return _adam(pruned, flat, y_train, epochs=epochs, lr=3e-3, seed=seed + 1, masks=masks)


def weight_sparsity(layers: Layers) -> float:
    """Fraction of exact zeros among the dense weights (biases not counted)."""
    total = sum(weights.size for weights, _ in layers)
    return sum(int(np.count_nonzero(weights == 0)) for weights, _ in layers) / total


def _model_bytes(layers: Layers, label: str) -> bytes:
    return build_mlp(layers, input_name=INPUT_NAME, input_shape=INPUT_SHAPE,
                     description=f"EdgeFarm demo: {FAMILY} {label} (sklearn digits, 8x8 gray, "
                                 "pixels (p - 127.5) / 127.5)")


def write_variants(dest_dir: Any, seed: int = 0) -> List[Dict[str, Any]]:
    """Train, prune and write ``digits-mlp-<label>.tflite`` for fp32, pruned-0.5 and pruned-0.8.

    Returns one dict per variant, base first: ``path``, ``name``, ``variant`` (the
    server's metadata: quantization, sparsity, label), ``recipe`` and
    ``accuracy_in_process`` (top-1 on the test split, computed here with numpy). A
    ``variants.json`` beside the files records the same list.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    base, _ = train_digits(seed)
    _, _, x_test, y_test = load_split()
    inputs = to_input(x_test)
    candidates = [("fp32", base, {})]
    for level in PRUNING_LEVELS:
        recipe = {"method": "magnitude", "scope": "per-layer", "target_sparsity": level,
                  "finetune_epochs": FINETUNE_EPOCHS}
        candidates.append((f"pruned-{level:g}", prune_and_finetune(base, level, seed), recipe))
    variants = []
    for label, layers, recipe in candidates:
        name = f"{FAMILY}-{label}"
        path = dest / f"{name}.tflite"
        path.write_bytes(_model_bytes(layers, label))
        sparsity = weight_sparsity(layers)
        variants.append({
            "path": str(path), "name": name, "recipe": recipe,
            "variant": {"quantization": "none", "sparsity": sparsity if recipe else None,
                        "label": label},
            "accuracy_in_process": accuracy(layers, inputs, y_test),
        })
    (dest / "variants.json").write_text(json.dumps(variants, indent=2) + "\n")
    return variants


def write_imagefolder(dest_dir: Any) -> int:
    """The test split as ``<dest>/<digit>/<index>.png`` (8x8 8-bit gray); the sample count."""
    from PIL import Image

    dest = Path(dest_dir)
    _, _, x_test, y_test = load_split()
    for index, (pixels, label) in enumerate(zip(x_test, y_test)):
        folder = dest / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{index:04d}.png", optimize=False)
    return len(x_test)
