"""Pure logic of the compression tools and the sweep: variant names, magnitude
pruning, sample spreading, quantization read-back, lineage sidecars, the
family table rows, and the ``--lineage`` option of ``models push``."""

import argparse
import json
from datetime import datetime, timezone

import pytest

np = pytest.importorskip("numpy")

from edgefarm.cli.commands import sweep as sweep_command  # noqa: E402
from edgefarm.cli.commands.models import apply_lineage, build_meta  # noqa: E402
from edgefarm.cli.errors import CliError  # noqa: E402
from edgefarm.shared.contract.schemas import CompareCell, CompareOut, ModelOut  # noqa: E402
from edgefarm.shared.datasets.dataset import spread  # noqa: E402
from edgefarm.tools.common import ToolError  # noqa: E402
from edgefarm.tools.inspect import model_quantization, quantization_scheme, weight_layer  # noqa: E402
from edgefarm.tools.lineage import read_sidecar, sidecar_path, write_sidecar  # noqa: E402
from edgefarm.tools.prune import magnitude_prune  # noqa: E402
from edgefarm.tools.sweep import DEFAULT_VARIANTS, parse_variants, pruning_level  # noqa: E402


def test_variant_names_are_checked():
    assert parse_variants("fp32, int8,pruned-0.9,int8") == ["fp32", "int8", "pruned-0.9"]
    assert pruning_level("pruned-0.75") == 0.75
    assert pruning_level("pruned-1.5") is None and pruning_level("int8") is None
    with pytest.raises(ToolError, match="unknown variant 'int3'"):
        parse_variants("fp32,int3")
    with pytest.raises(ToolError):
        parse_variants(" , ")
    assert tuple(sweep_command.DEFAULT_VARIANTS) == DEFAULT_VARIANTS
    assert len(parse_variants(",".join(DEFAULT_VARIANTS))) == 7


def test_magnitude_pruning_zeroes_the_smallest_weights_per_layer():
    weights = np.array([[0.5, -0.1, 0.05], [-2.0, 0.2, 0.01]], dtype=np.float32)
    pruned = magnitude_prune(weights, 0.5)
    assert (pruned != 0).tolist() == [[True, False, False], [True, True, False]]
    assert pruned[1, 1] == weights[1, 1]
    assert weights[0, 1] == np.float32(-0.1)  # the input is left alone
    assert np.count_nonzero(magnitude_prune(np.ones(10, np.float32), 0.9)) == 1


def test_spread_picks_positions_over_the_whole_dataset():
    assert spread(3, 100) == [0, 1, 2]
    assert spread(10, 5) == [0, 2, 4, 6, 8]
    assert len(spread(1437, 100)) == 100 and spread(1437, 100)[-1] > 1400


def test_weight_sparsity_counts_zero_points_and_sparse_storage():
    dense = weight_layer("w", "float32", [2, 4], np.array([0, 1, 0, 2, 3, 0, 0, 4], np.float32).tobytes(),
                         None)
    assert dense["zeros"] == 4 and dense["sparsity"] == 0.5 and dense["encoding"] == "dense"
    quantized = weight_layer("q", "int8", [2, 2], np.array([3, 3, 7, -1], np.int8).tobytes(),
                             {"scale": [0.1], "zero_point": [3]})
    assert quantized["zeros"] == 2 and quantized["quantization"]["scheme"] == "per-tensor"
    sparse = weight_layer("s", "float32", [4, 5], np.array([1, 2], np.float32).tobytes(), None)
    assert sparse["encoding"] == "sparse" and sparse["sparsity"] == 0.9
    assert quantization_scheme({"scale": [1, 2, 3], "zero_point": [0, 0, 0]})["scheme"] == "per-channel"


def test_model_quantization_is_read_from_the_tensors():
    float_in = [{"dtype": "float32"}]
    assert model_quantization(float_in, {}, [{"dtype": "float32"}]) == "none"
    assert model_quantization(float_in, {"DEQUANTIZE": 3}, [{"dtype": "float16"}]) == "fp16"
    assert model_quantization(float_in, {}, [{"dtype": "int8"}]) == "dynamic"
    assert model_quantization(float_in, {"DEQUANTIZE": 1}, [{"dtype": "int8"}]) == "weight_only"
    assert model_quantization([{"dtype": "int8"}], {}, [{"dtype": "int8"}]) == "int8"


def test_lineage_sidecar_round_trip_and_sha_check(tmp_path):
    parent, model = tmp_path / "base.tflite", tmp_path / "base-int8.tflite"
    parent.write_bytes(b"parent bytes")
    model.write_bytes(b"model bytes")
    data = tmp_path / "calib"
    (data / "cls").mkdir(parents=True)
    (data / "cls" / "a.png").write_bytes(b"not really a png")
    path = write_sidecar(model, parent, {"mode": "int8"}, {"quantization": "int8", "label": "int8"},
                         ("numpy",), data)
    assert path == sidecar_path(model) and path.name == "base-int8.tflite.lineage.json"
    read = read_sidecar(path, model)
    lineage = read["lineage"]
    assert len(lineage["parent_sha256"]) == 64 and lineage["recipe"] == {"mode": "int8"}
    assert len(lineage["calibration_dataset_sha256"]) == 64
    assert lineage["tool"].startswith("edgefarm ") and "numpy" in lineage["tool"]
    assert read["variant"] == {"quantization": "int8", "label": "int8"}
    with pytest.raises(ToolError, match="another file"):
        read_sidecar(path, parent)
    (tmp_path / "junk.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ToolError, match="not an EdgeFarm lineage file"):
        read_sidecar(tmp_path / "junk.json")


def _push_args(**overrides):
    values = dict(name=None, family=None, task=None, quantization=None, sparsity=None, variant_label=None,
                  parent=None, labels=None, mean=None, std=None, color=None, layout=None, lineage=None)
    values.update(overrides)
    return argparse.Namespace(**values)


def test_models_push_takes_variant_and_lineage_from_the_sidecar(tmp_path):
    parent, model = tmp_path / "base.tflite", tmp_path / "v.tflite"
    parent.write_bytes(b"p")
    model.write_bytes(b"m")
    sidecar = write_sidecar(model, parent, {"mode": "fp16"}, {"quantization": "fp16", "label": "fp16"})
    args = _push_args(lineage=sidecar, variant_label="mine")
    meta = apply_lineage(build_meta(args), args, model)
    assert meta["variant"] == {"quantization": "fp16", "label": "mine"}
    assert meta["lineage"]["recipe"] == {"mode": "fp16"} and len(meta["lineage"]["parent_sha256"]) == 64
    with pytest.raises(CliError, match="another file"):
        apply_lineage(build_meta(args), args, parent)


def _model(model_id, label, quantization="none", sparsity=None):
    now = datetime.now(timezone.utc)
    return ModelOut(id=model_id, name=f"m-{label}", family="fam", format="tflite", sha256="0" * 64,
                    size_bytes=100, variant={"quantization": quantization, "sparsity": sparsity,
                                             "label": label}, created_at=now, download_url="/x")


def test_family_rows_show_changes_against_the_base_per_device():
    cells = [
        CompareCell(result_id=1, model_id=1, device_id=7, accuracy=0.9, accuracy_metric="top1", p50_ms=10.0,
                    p90_ms=12.0, model_size_bytes=1000, peak_rss_bytes=100, pareto=True),
        CompareCell(result_id=2, model_id=2, device_id=7, accuracy=0.88, accuracy_metric="top1", p50_ms=5.0,
                    p90_ms=9.0, model_size_bytes=250, peak_rss_bytes=80, delta_accuracy=-0.02, pareto=True),
    ]
    compared = CompareOut(family="fam", base_model_id=1, models=[_model(2, "int8", "int8"), _model(1, "fp32")],
                          devices=[], cells=cells)
    rows = sweep_command.family_rows(compared, 7)
    assert [row["label"] for row in rows] == ["fp32", "int8"]
    base, int8 = rows
    assert base["base"] and base["p50_change"] is None and base["accuracy_delta_points"] is None
    assert int8["accuracy_delta_points"] == pytest.approx(-2.0)
    assert int8["p50_change"] == pytest.approx(-0.5) and int8["p90_change"] == pytest.approx(-0.25)
    assert int8["size_change"] == pytest.approx(-0.75) and int8["peak_rss_change"] == pytest.approx(-0.2)
    cells_text = sweep_command._cells(int8)
    assert cells_text[0] == "*" and "(-2.00 pt)" in cells_text[3] and "(-75%)" in cells_text[6]
    assert sweep_command.family_rows(compared, 8) == []
