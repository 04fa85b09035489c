"""Interrupted runs resume, failing trials are isolated, output folders are never clobbered."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from compressor import CompressConfig, CompressorError, compress
from compressor.cli import main
from compressor.config import DeployConfig, PruneConfig, RecoveryConfig, SearchConfig
from compressor.tasks.digits import TRAIN_SEED, TensorBatches


def _config(trials, **search):
    # Widths only, no reference trials, no promotion (a promoted trial calls the metric
    # again): these tests count trials and metric calls.
    return CompressConfig(
        prune=PruneConfig(depth=False),
        search=SearchConfig(trials=trials, references=False, promote_fraction=0.0, **search),
        recovery=RecoveryConfig(epochs=1),
        deploy=DeployConfig(quantization=("static_ort",)),
    )


PLAIN = ("--no-depth", "--no-references")  # CLI runs whose trials are counted


def _completed(db_path):
    storage = f"sqlite:///{db_path}"
    try:
        study = optuna.load_study(study_name="compress", storage=storage)
    except Exception:  # not created yet
        return []
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def test_killed_run_resumes_without_losing_trials(tmp_path):
    output = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "compressor.cli",
        "--trials",
        "7",
        "--epochs",
        "1",
        "--seed",
        "3",
        "--output",
        str(output),
        "--quiet",
        "--no-depth",
        "--no-references",
        # One quantization mode: NNCF's trials cost more and resuming does not depend on it.
        "--quantization",
        "static_ort",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    while len(_completed(output / "study.db")) < 3:
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = {t.number: (t.params, t.value) for t in _completed(output / "study.db")}
    assert not (output / "result.json").exists()
    # The stopped run has a report: its finished trials, the best so far, nothing recovered.
    assert main(["report", str(output)]) == 0
    report = (output / "report.html").read_text()
    assert "not finished" in report and "best so far (trial #" in report
    assert f"Accuracy vs FLOPs: {len(before)} finished trials" in report

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    result = json.loads((output / "result.json").read_text())
    after = {t.number: (t.params, t.value) for t in _completed(output / "study.db")}
    for number, (params, value) in before.items():
        assert after[number] == (params, value)  # kept, not re-run
    spent = [t for t in result["trials"] if t["state"] == "COMPLETE" or "error" in t]
    assert len(spent) == 7  # an interrupted trial's budget is spent again
    assert all(t["state"] != "RUNNING" for t in result["trials"])
    # Promotion stays on in this run (the first trial, best so far, is always distilled), and
    # the kept trials' values above are their promoted ones.
    assert any(t.get("fidelity") == 1 for t in result["trials"] if t["state"] == "COMPLETE")
    assert (output / "model.safetensors").stat().st_size > 0
    assert result["best"]["flops"] <= 0.5 * result["baseline"]["flops"]


def test_a_trial_killed_before_its_first_heartbeat_is_failed(tmp_path, monkeypatch):
    # SIGKILL between study.ask() and the heartbeat thread's first beat leaves a RUNNING trial
    # with no heartbeat, which Optuna's fail_stale_trials never fails (seen on a fast CI).
    from compressor.search import storage

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = storage.open_study(url, "compress", optuna.samplers.RandomSampler(seed=0))
    never_beat = study.ask()
    beating = study.ask()
    study._storage.record_heartbeat(beating._trial_id)
    storage.fail_dead_trials(study)  # both younger than the grace period: both alive
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING] * 2

    monkeypatch.setattr(storage, "GRACE_SECONDS", 0)
    time.sleep(0.05)
    storage.fail_dead_trials(study)
    states = {t.number: t.state for t in study.trials}
    assert states[never_beat.number] == optuna.trial.TrialState.FAIL
    # Its heartbeat is fresh (the storage's own grace period): a live trial is left alone.
    assert states[beating.number] == optuna.trial.TrialState.RUNNING


class FlakyMetric:
    """The real metric, except that chosen calls raise or return NaN."""

    def __init__(self, metric, raise_on, nan_on):
        self.metric, self.raise_on, self.nan_on, self.calls = metric, raise_on, nan_on, 0

    def __call__(self, model):
        self.calls += 1
        if self.calls in self.raise_on:
            raise RuntimeError("metric backend unavailable")
        if self.calls in self.nan_on:
            return math.nan
        return self.metric(model)


def fresh_batches(batches: TensorBatches) -> TensorBatches:
    """The same training batches, shuffled from the start of their seeded order."""
    return TensorBatches(batches.inputs, batches.labels, batches.batch_size, seed=TRAIN_SEED)


def test_failing_and_nan_trials_are_isolated(digits_task, tmp_path):
    # call 1: baseline; 2-10: sensitivity of the 9 groups; 11 on: trial 0, 1, 2, ...
    metric = FlakyMetric(digits_task.evaluate, raise_on={13, 17}, nan_on={15})
    result = compress(
        digits_task.model,
        digits_task.example_inputs,
        metric,
        # Its own batches: the session's train_data shuffles with one generator that earlier
        # runs have advanced, and one recovery epoch depends on the order it sees.
        train_data=fresh_batches(digits_task.train_data),
        test_evaluate=digits_task.evaluate_test,
        output_dir=tmp_path / "run",
        config=_config(8),
        verbose=False,
    )
    failed = [t for t in result.trials if t.state == "FAIL"]
    assert [t.number for t in failed] == [2, 4, 6]
    assert "metric backend unavailable" in failed[0].error
    assert "not a finite number" in failed[1].error
    assert sum(t.finished for t in result.trials) == 5
    assert result.best.trial not in {2, 4, 6}
    assert result.best.accuracy >= 0.8  # 5 finished trials, 1 recovery epoch
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert [t["error"] for t in saved["trials"] if t["state"] == "FAIL"] == [
        t.error for t in failed
    ]


def test_too_many_failures_in_a_row_stop_with_a_summary(digits_task, tmp_path):
    metric = FlakyMetric(digits_task.evaluate, raise_on=set(range(2, 100)), nan_on=set())
    with pytest.raises(CompressorError, match="3 failed trials in a row.*metric backend"):
        compress(
            digits_task.model,
            digits_task.example_inputs,
            metric,
            train_data=digits_task.train_data,
            test_evaluate=digits_task.evaluate_test,
            output_dir=tmp_path / "run",
            config=_config(6, max_consecutive_failures=3),
            verbose=False,
        )


def test_trial_time_limit_fails_the_trial_with_its_reason(digits_task, tmp_path, capsys):
    config = _config(6, trial_timeout=0.001, max_consecutive_failures=2)
    with pytest.raises(CompressorError, match="time limit of 0.001 s"):
        compress(
            digits_task.model,
            digits_task.example_inputs,
            digits_task.evaluate,
            train_data=digits_task.train_data,
            output_dir=tmp_path / "run",
            config=config,
            verbose=False,
        )


# A whole run (or several): in `make test-slow`, to keep the default suite under ~8 min.
@pytest.mark.slow
def test_different_config_on_an_existing_run_is_refused_unless_told(tmp_path, capsys, digits_task):
    output = tmp_path / "run"
    assert main(["--trials", "2", "--epochs", "0", "--output", str(output), "--quiet", *PLAIN]) == 0
    stamp = (output / "result.json").stat().st_mtime_ns
    assert main(["--trials", "3", "--epochs", "0", "--output", str(output), "--quiet", *PLAIN]) == 2
    err = capsys.readouterr().err
    assert "different config (search.trials: 2 -> 3)" in err and "--resume" in err
    assert (output / "result.json").stat().st_mtime_ns == stamp  # untouched
    assert (
        main(
            [
                "--trials",
                "3",
                "--epochs",
                "0",
                "--output",
                str(output),
                "--quiet",
                *PLAIN,
                "--resume",
            ]
        )
        == 0
    )
    result = json.loads((output / "result.json").read_text())
    assert len(result["trials"]) == 3  # the 2 earlier trials kept, 1 more run
    assert (
        main(
            [
                "--trials",
                "2",
                "--epochs",
                "0",
                "--output",
                str(output),
                "--quiet",
                *PLAIN,
                "--overwrite",
            ]
        )
        == 0
    )
    assert len(json.loads((output / "result.json").read_text())["trials"]) == 2


def test_a_metric_that_fails_on_the_original_model_is_a_user_error(digits_task, tmp_path):
    from compressor import UserInputError

    def broken(model):
        raise KeyError("labels")

    with pytest.raises(UserInputError, match="failed on the unmodified model: KeyError"):
        compress(
            digits_task.model,
            digits_task.example_inputs,
            broken,
            train_data=digits_task.train_data,
            output_dir=tmp_path / "run",
            config=_config(2),
            verbose=False,
        )
    assert not (tmp_path / "run").exists()


def test_resume_and_overwrite_are_exclusive(capsys):
    assert main(["--resume", "--overwrite"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def _trial_params(result):
    return [(t.number, t.params) for t in result.trials if t.finished]


# A whole run (or several): in `make test-slow`, to keep the default suite under ~8 min.
@pytest.mark.slow
def test_a_resumed_search_draws_the_same_trials_as_an_uninterrupted_one(digits_task, tmp_path):
    # The AMC reward has no latency term, so every trial's value is reproducible and the
    # sampler sees the same history in both runs; with a latency term the measured latency
    # (noisy) feeds back into later trials' parameters.
    def config(trials):
        return CompressConfig(
            # No promotion: its short distillation draws batches from the torch RNG, whose
            # state differs between a fresh and a continued process.
            search=SearchConfig(trials=trials, seed=5, reward="amc", promote_fraction=0.0),
            recovery=RecoveryConfig(epochs=0),
            deploy=DeployConfig(export=False),
        )

    def run(trials, output, existing="auto"):
        return compress(
            digits_task.model,
            digits_task.example_inputs,
            digits_task.evaluate,
            train_data=digits_task.train_data,
            # Fixed BatchNorm calibration batches: the shuffled train_data would hand each
            # call in this process other batches (a new process starts from the same ones).
            calibration_data=digits_task.calibration_data,
            output_dir=output,
            config=config(trials),
            verbose=False,
            existing=existing,
        )

    # Trials 0-1 are the seeded plans, 2 a random start-up draw, 3-5 TPE's.
    straight = run(6, tmp_path / "straight")
    run(3, tmp_path / "resumed")  # the "interrupted" run: a new process would do the same
    resumed = run(6, tmp_path / "resumed", existing="resume")
    assert len(_trial_params(straight)) == 6
    assert _trial_params(resumed) == _trial_params(straight)
    assert resumed.best.trial == straight.best.trial
