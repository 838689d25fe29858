"""The per-sample record's bytes: numpy's packing equals the pure-Python reference the
server decodes, and the counts are left out, with a note, above the size limit."""

import random

import numpy as np

from edgefarm.agent.evaluation import per_sample
from edgefarm.agent.evaluation.per_sample import (
    classification_record,
    pack_counts_np,
    pack_flags_np,
    segmentation_record,
)
from edgefarm.shared.contract.schemas import PerSample
from edgefarm.shared.stats.encoding import pack_counts, pack_flags, unpack_counts, unpack_flags


def test_numpy_packing_equals_the_pure_python_reference():
    rng = random.Random(7)
    for count in (0, 1, 7, 8, 9, 1449):
        flags = [rng.random() < 0.6 for _ in range(count)]
        assert pack_flags_np(flags) == pack_flags(flags)
    table = [[rng.randrange(0, 2 ** 32) for _ in range(21)] for _ in range(5)]
    assert pack_counts_np(np.asarray(table, dtype=np.int64)) == pack_counts(table)


def test_classification_record_round_trips_through_the_contract():
    ranks = [0, 3, 1, 7, 0, 4, 5]
    record = PerSample.model_validate(classification_record([f"s{i}" for i in range(7)], ranks))
    assert unpack_flags(record.top1_correct, 7) == [r < 1 for r in ranks]
    assert unpack_flags(record.top5_correct, 7) == [r < 5 for r in ranks]


def test_counts_above_the_limit_are_left_out_with_a_note(monkeypatch):
    inter = [np.array([1, 2, 0]), np.array([0, 5, 6])]
    union = [np.array([3, 2, 1]), np.array([0, 9, 6])]
    record = segmentation_record(["a", "b"], inter, union, 3)
    assert unpack_counts(record["iou"]["union"], 2, 3) == [[3, 2, 1], [0, 9, 6]]
    monkeypatch.setattr(per_sample, "MAX_COUNTS_CHARS", 16)
    small = segmentation_record(["a", "b"], inter, union, 3)
    assert "iou" not in small and "2 images x 3 classes" in small["note"]
    assert PerSample.model_validate(small).count == 2
