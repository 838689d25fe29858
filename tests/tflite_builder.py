"""The tests' TFLite writer lives in the package now (``tools.tflite_builder``);
this module re-exports it so tests keep importing ``tests.tflite_builder``."""

from tools.tflite_builder import *  # noqa: F401,F403
from tools.tflite_builder import broken_tflite, build_mlp, tiny_tflite

__all__ = ["broken_tflite", "build_mlp", "tiny_tflite"]
