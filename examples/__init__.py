"""The example models shipped with EdgeFarm, found from the checkout and from an
installed wheel alike (``edgefarm.examples``; the files are package data).

``DEEPLAB_V3`` is the main job's segmentation model: DeepLabv3 with a MobileNetV2
backbone (depth multiplier 0.5) trained on PASCAL VOC 2012, float32 TFLite. Its
origin, licences, tensors and sha256 are in ``deeplabv3/README.md``.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
DEEPLAB_V3 = HERE / "deeplabv3" / "deeplabv3_mnv2_dm05_pascal_fp32.tflite"
DEEPLAB_V3_SHA256 = "504e35c9848e5f2f904cacbb7bd92e333071762f761211fa561c1855292bd0c3"
