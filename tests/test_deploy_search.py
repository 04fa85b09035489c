"""End to end on the embedded default: the joint search writes a deployable model.onnx.

One short run shared by the tests: two trials, the uniform plan seeded with each allowed
quantization mode (static INT8 and dynamic INT8); each mode alone is covered in
test_quantize.py.
"""

from __future__ import annotations

import json

import onnx
import onnxruntime as ort
import pytest

from compressor.api import run_task
from compressor.config import CompressConfig
from compressor.tasks import get_task
from compressor.tasks.digits import load_splits

PARITY_MIN_TOP1 = 0.95  # INT8 artifact vs fp32 PyTorch model, predictions on real inputs


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    output = tmp_path_factory.mktemp("deploy") / "run"
    config = CompressConfig.from_dict(
        {
            "output": str(output),
            # The seeded modes are what is checked: no reference trials on top.
            "search": {"trials": 2, "seed": 0, "references": False},
            "deploy": {"quantization": ["static_ort", "dynamic"]},
            "recovery": {"epochs": 1},
            "measure": {"rounds": 3, "runs_per_round": 10},
        }
    )
    result = run_task(config, verbose=False)
    return result, output, json.loads((output / "result.json").read_text())


def test_every_trial_is_scored_as_an_artifact_with_its_mode(run):
    _, _, data = run
    trials = [t for t in data["trials"] if t["state"] == "COMPLETE"]
    assert [t["artifact"]["quantization"] for t in trials] == ["static_ort", "dynamic"]
    for trial in trials:
        assert trial["latency_ms"] > 0 and trial["latency_ratio"] > 0
        assert trial["artifact"]["parity"]["samples"] == 128
        assert trial["artifact"]["fusion"] is True
    by_mode = {t["artifact"]["quantization"]: t for t in trials}
    assert "ConvInteger" in by_mode["dynamic"]["artifact"]["int8_ops"]
    assert by_mode["static_ort"]["artifact"]["int8_ops"]["QuantizeLinear"] > 0
    assert by_mode["static_ort"]["plan"] == by_mode["dynamic"]["plan"]  # same seeded plan


def test_result_json_records_the_artifact(run):
    result, output, data = run
    best = data["best"]
    assert best["quantization"] in ("static_ort", "dynamic")
    assert isinstance(best["fusion"], bool)
    assert set(best["parity"]) == {"max_abs_diff", "cosine", "top1_agreement", "samples"}
    assert best["parity"]["top1_agreement"] >= PARITY_MIN_TOP1
    assert set(data["artifacts"]) == {"baseline_fp32.onnx", "pruned_fp32.onnx", "model.onnx"}
    for row in data["artifacts"].values():
        assert row["latency_ms"]["p50"] > 0 and row["latency_ms"]["p90"] >= row["latency_ms"]["p50"]
        assert row["size_bytes"] > 0
    assert data["artifacts"]["model.onnx"]["size_bytes"] == (output / "model.onnx").stat().st_size
    assert abs(best["accuracy"] - best["accuracy_fp32"]) <= 0.05
    assert "artifact model.onnx" in str(result)


def test_saved_onnx_reproduces_the_recorded_test_accuracy_in_a_fresh_session(run):
    _, output, data = run
    path = output / "model.onnx"
    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images, labels = load_splits()["test"]
    logits = session.run(None, {"input": images.numpy()})[0]
    accuracy = float((logits.argmax(1) == labels.numpy()).mean())
    assert accuracy == pytest.approx(data["best"]["accuracy"], abs=1e-9)


def test_the_pytorch_model_is_still_saved_beside_it(run):
    _, output, data = run
    from compressor import load_compressed

    model = load_compressed(output)
    task = get_task("digits", verbose=False)
    assert task.evaluate_test(model) == pytest.approx(data["best"]["accuracy_fp32"])


@pytest.mark.slow  # a second full run (~1.5 min on 2 cores)
def test_a_latency_target_alone_searches_the_flops_level(tmp_path):
    config = CompressConfig.from_dict(
        {
            "target_flops": None,
            "target_latency": 0.9,
            "output": str(tmp_path / "run"),
            "search": {"trials": 2, "seed": 0},
            "recovery": {"epochs": 0},
            "deploy": {"quantization": ["static_ort"], "fusion": [True]},
            "measure": {"rounds": 2, "runs_per_round": 5},
        }
    )
    result = run_task(config, verbose=False)
    data = json.loads((tmp_path / "run" / "result.json").read_text())
    assert data["target"]["latency"] == "0.9"
    assert data["target"]["flops_ratio"] == 1.0  # no FLOPs budget of the user's
    import optuna

    study = optuna.load_study(
        study_name="compress", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}"
    )
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2
    for trial in done:  # each plan was fitted to its own sampled FLOPs level
        assert trial.user_attrs["flops_ratio"] <= trial.params["prune.flops_level"] + 1e-9
    assert result.best.quantization == "static_ort"


def test_trials_carry_fidelity_and_latency_interval_and_the_top_are_retimed(run):
    _, _, data = run
    trials = [t for t in data["trials"] if t["state"] == "COMPLETE"]
    for trial in trials:
        assert trial["latency_ratio_low"] <= trial["latency_ratio"] <= trial["latency_ratio_high"]
        assert trial["latency_rounds"] >= 2  # fewer than asked only when the time cap hit
        assert trial["fidelity"] in (0, 1)
    # The first trial is the best so far by definition: promoted to the distilled score.
    assert trials[0]["fidelity"] == 1 and trials[0]["accuracy_cheap"] is not None
    best = data["best"]
    retimed = {r["trial"]: r for r in best["retimed"]}
    assert set(retimed) == {t["number"] for t in trials if t["feasible"]}
    assert all(r["feasible"] for r in retimed.values())  # no reference trials in this run
    assert best["trial"] == max(retimed.values(), key=lambda r: r["reward"])["trial"]
    assert best["reward"] == retimed[best["trial"]]["reward"]
    assert best["latency_ratio_low"] <= best["latency_ratio"] <= best["latency_ratio_high"]
