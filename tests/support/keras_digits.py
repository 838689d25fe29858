"""``python -m tests.support.keras_digits DIR``: a small Keras (tf-keras) MLP trained on
scikit-learn's digits, saved as ``DIR/digits.keras`` and ``DIR/digits.h5``, with
its test accuracy printed as JSON. Run as its own process so that the tests'
interpreter never imports TensorFlow.

The model takes the agent's default pre-processing of the 8x8 gray PNGs
(``(p - 127.5) / 127.5``, as ``edgefarm.tools.digits.to_input``), so the farm and the
tools evaluate it exactly as it was trained.
"""

import json
import os
import sys
import warnings
from pathlib import Path

HIDDEN, EPOCHS = 256, 30


def main(out_dir: str) -> int:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.simplefilter("ignore")
    import tf_keras as keras

    from edgefarm.tools.digits import load_split, to_input

    x_train, y_train, x_test, y_test = load_split()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((8, 8, 1), name="image"), keras.layers.Flatten(),
        keras.layers.Dense(HIDDEN, activation="relu"), keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(to_input(x_train), y_train, epochs=EPOCHS, batch_size=32, verbose=0)
    accuracy = float(model.evaluate(to_input(x_test), y_test, verbose=0)[1])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "digits.keras")
    model.save(out / "digits.h5")
    print(json.dumps({"accuracy": accuracy}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
