"""Scale-out: `compress` and `compress worker` processes share one study on a real PostgreSQL.

The server is a throwaway cluster on loopback (tests/pg_server.py), or the one .ci/run
started (COMPRESSOR_TEST_POSTGRES); each test gets a database of its own (the ``database``
fixture of conftest.py). The processes are those of tests/scale_out_helpers.py.
"""

from __future__ import annotations

import json
import signal
import time

import optuna
import pytest
from optuna.trial import TrialState
from scale_out_helpers import STUDY, finish, process_name, start_compress, start_worker

from compressor.search.choose import RETIMED


def _study(storage):
    return optuna.load_study(study_name=STUDY, storage=storage)


def test_two_processes_spend_one_budget_and_the_best_materialises(database, tmp_path):
    budget = 8
    worker = start_worker(tmp_path, database)  # first: it waits for the study to be started
    compress = start_compress(tmp_path, database, budget)
    finish(compress, tmp_path / "compress.log")
    finish(worker, tmp_path / "worker.log")

    trials = _study(database).trials
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == budget
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    plans = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(plans)) == budget  # no plan was scored twice
    by_worker = {name: 0 for name in (process_name(compress), process_name(worker))}
    for trial in finished:
        by_worker[trial.user_attrs["worker"]] += 1  # KeyError: a trial without its worker
    assert set(by_worker) == {process_name(compress), process_name(worker)}
    assert all(count >= 1 for count in by_worker.values()), by_worker

    # The process that started the study re-timed the top stored plans together, whoever
    # scored them, and rebuilt the best of them (search/choose.py).
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    feasible = sorted(
        (t for t in finished if t.user_attrs["feasible"]), key=lambda t: t.value, reverse=True
    )
    assert len(feasible) >= 2  # so there is a choice to re-time
    retimed = {r["trial"]: r for r in result["best"]["retimed"]}
    assert set(retimed) == {t.number for t in feasible[:RETIMED]}
    assert result["best"]["trial"] == max(retimed.values(), key=lambda r: r["reward"])["trial"]
    best = next(t for t in feasible if t.number == result["best"]["trial"])
    assert result["best"]["plan"]["ratios"] == best.user_attrs["ratios"]
    assert result["best"]["flops"] <= 0.5 * result["baseline"]["flops"]
    assert (tmp_path / "run" / "model.onnx").stat().st_size > 0
    assert {name: info["trials"] for name, info in result["workers"].items()} == by_worker
    assert {t["worker"] for t in result["trials"]} == set(by_worker)
    assert all(info["baseline_latency_ms"] > 0 for info in result["workers"].values())
    assert not (tmp_path / "run" / "study.db").exists()  # the study lives in PostgreSQL
    # The report says which worker scored (and timed) which trials, against which baseline.
    report = (tmp_path / "run" / "report.html").read_text()
    for name, count in by_worker.items():
        assert f"worker {name}" in report and f"{count} trial" in report
    assert "on its machine" in report


def _running_trial_of(storage, name):
    """The sampled, running trial of worker ``name`` in the study, if any."""
    try:
        trials = _study(storage).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    except KeyError:  # not created yet
        return None
    for trial in trials:
        if trial.user_attrs.get("worker") == name and "deploy.fusion" in trial.params:
            return trial
    return None


# A whole run (or several): in `make test-slow`, to keep the default suite under ~8 min.
@pytest.mark.slow
def test_a_killed_workers_trial_fails_and_is_run_again(database, tmp_path):
    budget = 8
    worker = start_worker(tmp_path, database)
    compress = start_compress(tmp_path, database, budget)
    deadline = time.time() + 600
    victim = None
    while victim is None:
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        assert time.time() < deadline, "the worker never ran a trial"
        victim = _running_trial_of(database, process_name(worker))
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)  # mid-trial: no chance to tell the study
    assert worker.wait(timeout=60) == -signal.SIGKILL
    finish(compress, tmp_path / "compress.log")

    trials = _study(database).trials
    killed = next(t for t in trials if t.number == victim.number)
    assert killed.state == TrialState.FAIL and "error" not in killed.user_attrs
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert retry.user_attrs["worker"] == process_name(compress)
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == budget  # the killed trial's share was spent again, no more
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    listed = {t["number"]: t for t in result["trials"]}
    assert listed[killed.number]["state"] == "FAIL"
    assert listed[killed.number]["worker"] == process_name(worker)
    assert listed[retry.number]["retry_of"] == killed.number
