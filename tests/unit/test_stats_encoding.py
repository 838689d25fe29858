"""Per-sample data kept with a result: the bytes numpy would write, and back."""

import random

import pytest

from edgefarm.shared.stats.encoding import (
    pack_counts,
    pack_flags,
    sample_order_sha256,
    unpack_counts,
    unpack_flags,
)

np = pytest.importorskip("numpy")


@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 1449])
def test_flags_are_numpys_big_endian_bits(count):
    rng = random.Random(count)
    flags = [rng.random() < 0.6 for _ in range(count)]
    text = pack_flags(flags)
    import base64
    assert base64.b64decode(text) == np.packbits(np.array(flags, dtype=bool), bitorder="big").tobytes()
    assert unpack_flags(text, count) == flags


def test_counts_round_trip_as_little_endian_uint32():
    table = [[0, 1, 2 ** 32 - 1], [7, 0, 65536]]
    text = pack_counts(table)
    import base64
    assert base64.b64decode(text) == np.array(table, dtype="<u4").tobytes()
    assert unpack_counts(text, 2, 3) == table


def test_bad_sizes_and_bad_text_are_value_errors():
    with pytest.raises(ValueError):
        unpack_flags(pack_flags([True] * 8), 20)
    with pytest.raises(ValueError):
        unpack_counts(pack_counts([[1, 2]]), 2, 2)
    with pytest.raises(ValueError):
        unpack_flags("not base64!", 3)
    with pytest.raises(ValueError):
        pack_counts([[-1]])


def test_sample_order_depends_on_order():
    assert sample_order_sha256(["a", "b"]) != sample_order_sha256(["b", "a"])
    assert sample_order_sha256(["a", "b"]) == sample_order_sha256(iter(["a", "b"]))
