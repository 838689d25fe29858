"""edgefarm.shared.datasets.dataset: a dataset folder opened once (samples, classes,
decoded samples) and ``sample_inputs``, the tools' samples pre-processed as the agent
evaluates them."""

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgefarm.shared.datasets import DatasetError
from edgefarm.shared.datasets.dataset import open_dataset, sample_inputs, spread
from edgefarm.shared.datasets.preprocess import InputSpec, preprocess_image
from edgefarm.shared.datasets.readers import load_image

CLASSES = ["cat", "dog", "fox"]


def make_imagefolder(root: Path, per_class: int = 3) -> None:
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            shade = 40 * label + 10 * index
            Image.new("RGB", (6, 5), (shade, 255 - shade, index * 60)).save(root / name / f"{index}.png")


def test_open_dataset_walks_the_folder_once_and_decodes_on_demand(tmp_path, monkeypatch):
    make_imagefolder(tmp_path)
    walks = []
    real_walk = os.walk
    monkeypatch.setattr(os, "walk", lambda top, *a, **k: walks.append(top) or real_walk(top, *a, **k))
    dataset = open_dataset(tmp_path, "imagefolder")
    assert len(dataset) == 9 and dataset.classes == CLASSES and dataset.num_classes == 3
    first = list(dataset.decoded(2))
    assert [(s.id, s.label) for s in first] == [("cat/0.png", 0), ("cat/1.png", 0)]
    assert first[0].image.shape == (5, 6, 3) and first[0].image.dtype == np.uint8
    picked = list(dataset.decoded_at([8, 0]))
    assert [(s.id, s.label) for s in picked] == [("fox/2.png", 2), ("cat/0.png", 0)]
    assert len(list(dataset.decoded())) == 9
    assert len(walks) == 1


def test_open_dataset_refuses_what_list_samples_refuses(tmp_path):
    (tmp_path / "loose.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="imagefolder"):
        open_dataset(tmp_path, "imagefolder")


def test_sample_inputs_are_spread_and_preprocessed_as_the_evaluation_does(tmp_path):
    make_imagefolder(tmp_path)
    dataset = open_dataset(tmp_path, "imagefolder")
    spec = InputSpec((1, 4, 4, 3), "float32")
    found = sample_inputs(dataset, 3, spec)
    positions = spread(9, 3)
    assert positions == [0, 3, 6] and found.labels == [0, 1, 2]
    for tensor, position in zip(found.tensors, positions):
        expected = preprocess_image(load_image(dataset.samples[position].image), spec)
        np.testing.assert_array_equal(tensor, expected)
    assert len(sample_inputs(dataset, None, spec).tensors) == 9


def test_sample_inputs_read_the_records_of_gzipped_idx_files(tmp_path):
    images = np.arange(6 * 4 * 4, dtype=np.uint32).reshape(6, 4, 4).astype(np.uint8)
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as out:
        out.write(struct.pack(">IIII", 0x803, 6, 4, 4) + images.tobytes())
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as out:
        out.write(struct.pack(">II", 0x801, 6) + bytes([5, 4, 3, 2, 1, 0]))
    dataset = open_dataset(tmp_path, "mnist-idx")
    found = sample_inputs(dataset, 2, InputSpec((1, 4, 4, 1), "uint8"))
    assert found.labels == [5, 2]
    np.testing.assert_array_equal(found.tensors[1].reshape(4, 4), images[3])
