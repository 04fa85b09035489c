"""`compress worker` and `--storage`: bad input and foreign studies give one line and exit 2."""

from __future__ import annotations

import threading

import optuna
import pytest

from compressor import CompressConfig, UserInputError
from compressor.cli import main
from compressor.records import Baseline
from compressor.search.storage import (
    make_manifest,
    model_fingerprint,
    open_storage,
    open_study,
    publish_manifest,
    read_manifest,
)
from compressor.worker import run_worker


@pytest.mark.parametrize(
    "argv, message",
    [
        (["worker"], "required: --storage"),
        (["worker", "--storage", "sqlite:///x.db", "--threads", "0"], "--threads must be"),
        (["--storage", "study.db"], "search.storage must be a database URL"),
        (["--study", " "], "search.study must be a non-empty name"),
        # Refused before the task is built: nothing listens on port 1.
        (["--storage", "postgresql://nobody@127.0.0.1:1/x"], "cannot be opened"),
    ],
)
def test_bad_storage_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert main([*argv, "--output", str(tmp_path / "run")] if argv[0] != "worker" else argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def _open_together(url: str, count: int) -> list[Exception]:
    start = threading.Barrier(count)
    errors = []

    def opener():
        start.wait()
        try:
            open_storage(url)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_four_openers_of_a_fresh_database_at_once_all_get_it(tmp_path):
    # Optuna's create-tables-if-missing is not atomic: without a retry, all but one of four
    # openers starting together fail with "table already exists" (seen when a test polled
    # a run's study.db while the run created it, and so for workers started at once).
    for attempt in range(3):
        url = f"sqlite:///{tmp_path / f'study{attempt}.db'}"
        assert _open_together(url, 4) == []
        assert open_study(url, "s", optuna.samplers.RandomSampler()).trials == []


def test_a_worker_waits_for_the_study_and_gives_up_with_the_reason(tmp_path, capsys):
    database = tmp_path / "study.db"
    code = main(["worker", "--storage", f"sqlite:///{database}", "--wait", "0.5", "--quiet"])
    assert code == 2
    assert "was not ready within 0.5 s (it does not exist yet)" in capsys.readouterr().err
    assert not database.exists()  # the folder belongs to `compress`: nothing created there


def _study_with_manifest(tmp_path, digits_task, task_name="digits", fingerprint=None):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = open_study(url, "compress", optuna.samplers.RandomSampler(seed=0))
    baseline = Baseline(accuracy=1.0, val_accuracy=1.0, flops=1, params=1)
    manifest = make_manifest(task_name, CompressConfig(), baseline, digits_task.model)
    if fingerprint:
        manifest["model_fingerprint"] = fingerprint
    publish_manifest(study, manifest)
    return url, study


def test_the_manifest_names_the_task_config_and_weights(tmp_path, digits_task):
    _, study = _study_with_manifest(tmp_path, digits_task)
    manifest = read_manifest(study)
    assert manifest["task"] == "digits"
    assert manifest["config"]["search"]["storage"] is None  # a URL may hold a password
    assert CompressConfig.from_dict(manifest["config"]).to_dict() == manifest["config"]
    assert manifest["model_fingerprint"] == model_fingerprint(digits_task.model)
    changed = {k: v.clone() for k, v in digits_task.model.state_dict().items()}
    changed["fc.bias"][0] += 1e-6
    other = type(digits_task.model)()
    other.load_state_dict(changed)
    assert model_fingerprint(other) != manifest["model_fingerprint"]


def test_a_worker_refuses_a_study_of_another_model(tmp_path, digits_task):
    url, _ = _study_with_manifest(tmp_path, digits_task, fingerprint="0123456789abcdef")
    with pytest.raises(UserInputError, match="not the study's .*fingerprint"):
        run_worker(url, "compress", wait=1, verbose=False)


def test_a_worker_cannot_rebuild_a_task_made_in_python(tmp_path, digits_task):
    url, _ = _study_with_manifest(tmp_path, digits_task, task_name="custom")
    with pytest.raises(UserInputError, match="task of its own .*run_worker"):
        run_worker(url, "compress", wait=1, verbose=False)
