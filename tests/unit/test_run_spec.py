"""What a run is given and how it is measured: ``RunSpec`` and ``ReferenceRun`` through
the child process's spec JSON, and the strategy a runtime's ``timing`` selects."""

import json

import pytest

from edgefarm.agent.execute import ReferenceRun, RunSpec
from edgefarm.agent.runtimes import Runtime, get_runtime_class
from edgefarm.agent.strategy import BatchStrategy, InvokeStrategy, strategy_for
from edgefarm.shared.contract.schemas import Preprocessing, RunSettings


def test_a_spec_with_a_reference_survives_the_spec_file():
    reference = ReferenceRun(runtime="tflite", model_path="/cache/ref.tflite", max_samples=7, model_id=3,
                             model_name="base", model_sha256="ab" * 32, options={"delegate": "x"})
    spec = RunSpec(model_path="/cache/model.tflite", settings=RunSettings(measured_runs=9),
                   task="classification", dataset_dir="/cache/data", dataset_layout="imagefolder",
                   preprocessing=Preprocessing(mean=[0.0, 0.0, 0.0]), reference=reference)
    again = RunSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec
    assert isinstance(again.reference, ReferenceRun) and again.reference.options == {"delegate": "x"}
    assert again.reference.describe() == {"runtime": "tflite", "accelerator": "cpu", "model_id": 3,
                                          "model_name": "base", "model_sha256": "ab" * 32}
    assert RunSpec.from_json(RunSpec(model_path="m").to_json()).reference is None


def test_only_a_run_with_a_dataset_and_an_accuracy_task_evaluates():
    assert RunSpec(model_path="m", task="segmentation", dataset_dir="d").evaluating
    assert not RunSpec(model_path="m", task="latency", dataset_dir="d").evaluating
    assert not RunSpec(model_path="m", task="classification").evaluating


def test_the_runtime_timing_declaration_picks_the_strategy():
    assert type(strategy_for(get_runtime_class("snpe")())) is BatchStrategy
    assert type(strategy_for(get_runtime_class("null")())) is InvokeStrategy

    class Odd(Runtime):
        name, timing = "odd", "sometimes"

    with pytest.raises(ValueError, match="runtime odd declares timing 'sometimes'; known: invoke, batch"):
        strategy_for(Odd())
