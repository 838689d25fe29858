"""Helpers for the compression-tool tests: the digits model and its data as
files, the ``edgefarm`` CLI as a subprocess, and a farm (server and one real
agent, SQLite) for the sweeps."""

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

from tests.support.servers import PROJECT, Farm, ServerProcess


def write_digits_model(path: Path, seed: int = 0) -> float:
    """The demo's digits MLP (numpy-trained) as a float32 .tflite; its test accuracy."""
    from edgefarm.shared.formats.tflite_builder import build_mlp
    from edgefarm.tools.digits import INPUT_NAME, INPUT_SHAPE, train_digits

    layers, accuracy = train_digits(seed)
    path.write_bytes(build_mlp(layers, input_name=INPUT_NAME, input_shape=INPUT_SHAPE))
    return accuracy


def write_digits_folder(dest: Path, split: str) -> int:
    """The ``train`` or ``test`` split as an imagefolder (``<digit>/<n>.png``)."""
    from PIL import Image

    from edgefarm.tools.digits import load_split

    x_train, y_train, x_test, y_test = load_split()
    pixels, labels = (x_train, y_train) if split == "train" else (x_test, y_test)
    for index, (image, label) in enumerate(zip(pixels, labels)):
        folder = dest / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:04d}.png")
    return len(labels)


def cli_env(farm: Optional[Farm] = None, token: Optional[str] = None, **extra: str) -> Dict[str, str]:
    """The environment of a CLI process: no configuration file; the farm's URL and ``token``
    (default: the farm's user token) when a farm is given."""
    env = dict(os.environ, XDG_CONFIG_HOME=str(PROJECT / ".no-config"), **extra)
    if farm is not None:
        env.update(EDGEFARM_URL=farm.url, EDGEFARM_TOKEN=token or farm.user_token)
    return env


def edgefarm(*args: str, farm: Optional[Farm] = None, token: Optional[str] = None, timeout: float = 600,
             env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """``python -m edgefarm.cli.main ARGS`` in the project, output captured as text; tables
    240 columns wide."""
    return subprocess.run([sys.executable, "-m", "edgefarm.cli.main", *map(str, args)], cwd=PROJECT,
                          env=env or cli_env(farm, token, COLUMNS="240"), capture_output=True, text=True,
                          timeout=timeout)


def edgefarm_json(*args: str, **kwargs) -> Tuple[dict, subprocess.CompletedProcess]:
    result = edgefarm(*args, "--json", **kwargs)
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return json.loads(result.stdout), result


@contextmanager
def sqlite_farm_with_agent(tmp_path: Path) -> Iterator[Tuple[Farm, object]]:
    """A server on SQLite and one real agent process, both stopped afterwards."""
    from tests.support.agents import AgentProcess

    data = tmp_path / "farm"
    server = ServerProcess(data, f"sqlite:///{data}/edgefarm.db", sweep_interval_seconds=0.2).start()
    farm = Farm(server)
    agent = None
    try:
        agent = AgentProcess(farm, tmp_path / "agent", name="pc-agent").start()
        yield farm, agent
    finally:
        if agent is not None:
            agent.stop()
        farm.close()
        server.stop()


def void_boundaries(mask, radius: int = 2):
    """The mask with every pixel within ``radius`` of another class set to 255, as
    PASCAL VOC's annotations leave a 5-pixel void band along object boundaries."""
    import numpy as np

    height, width = mask.shape
    padded = np.pad(mask, radius, mode="edge")
    edge = np.zeros(mask.shape, dtype=bool)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            edge |= padded[radius + dy:radius + dy + height, radius + dx:radius + dx + width] != mask
    out = mask.copy()
    out[edge] = 255
    return out


def build_voc_with_void_boundaries(root: Path, model_path: Path) -> None:
    """``tests.support.voc``'s dataset (same photos, reference masks, perturbations) with
    VOC's void band along class boundaries: a quantized model that moves a border
    by a pixel is not charged for it, as on the real VOC validation set."""
    import numpy as np
    from PIL import Image

    from tests.support.voc import perturb, reference_prediction, source_images, voc_palette

    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    names = []
    for index, (name, image) in enumerate(source_images().items()):
        image.save(root / "JPEGImages" / f"{name}.jpg", quality=95)
        decoded = np.asarray(Image.open(root / "JPEGImages" / f"{name}.jpg").convert("RGB"))
        mask = perturb(void_boundaries(reference_prediction(model_path, decoded)), index)
        png = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
        png.putpalette(voc_palette())
        png.save(root / "SegmentationClass" / f"{name}.png")
        names.append(name)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(names) + "\n")


def write_calibration_crops(dest: Path) -> None:
    """Twenty views of the DeepLab fixture photo (corners and centre at three
    scales, then the first five mirrored) as a one-class imagefolder: calibration
    images that are not the evaluation images."""
    from PIL import Image

    from tests.support.voc import PHOTO

    folder = dest / "photo"
    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.open(PHOTO).convert("RGB")
    w, h = photo.size
    views = []
    for scale in (1.0, 0.75, 0.5):
        cw, ch = int(w * scale), int(h * scale)
        for x, y in ((0, 0), (w - cw, 0), (0, h - ch), (w - cw, h - ch), ((w - cw) // 2, (h - ch) // 2)):
            views.append(photo.crop((x, y, x + cw, y + ch)))
    views += [view.transpose(Image.FLIP_LEFT_RIGHT) for view in views[:5]]
    for index, view in enumerate(views):
        view.save(folder / f"{index:02d}.jpg", quality=95)
