"""The two Optuna internals the study-wide budget relies on (search/storage.py).

Optuna has no public way to reach a study's relational storage or to ask whether a trial
has ever written a heartbeat; ``fail_dead_trials`` needs both to fail trials whose process
died before its first beat. If an Optuna release moves either, these tests fail with a
message that says what changed, instead of the shared budget silently holding dead trials.
"""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from compressor.search.storage import (
    fail_dead_trials,
    open_study,
    rdb_storage,
    trials_with_heartbeat,
)


@pytest.fixture
def study(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return open_study(f"sqlite:///{tmp_path / 'study.db'}", "s", optuna.samplers.RandomSampler())


def test_a_studys_relational_storage_is_reachable(study):
    assert hasattr(study, "_storage"), (
        f"optuna {optuna.__version__}: Study._storage is gone; "
        "compressor.search.storage.rdb_storage must find the storage another way"
    )
    assert isinstance(rdb_storage(study), optuna.storages.RDBStorage), (
        f"optuna {optuna.__version__}: the study's storage is no longer an RDBStorage or a "
        "_CachedStorage wrapping one (its `_backend`); update rdb_storage"
    )


def test_the_heartbeat_table_is_readable(study):
    try:
        from optuna.storages._rdb.models import TrialHeartbeatModel
    except ImportError as exc:  # pragma: no cover - only on an Optuna that moved it
        pytest.fail(
            f"optuna {optuna.__version__}: optuna.storages._rdb.models.TrialHeartbeatModel "
            f"is gone ({exc}); compressor.search.storage.trials_with_heartbeat reads it"
        )
    assert hasattr(TrialHeartbeatModel, "trial_id"), "TrialHeartbeatModel.trial_id is gone"
    trial = study.ask()
    storage = rdb_storage(study)
    assert trials_with_heartbeat(storage) == set()
    storage.record_heartbeat(trial._trial_id)
    assert trials_with_heartbeat(storage) == {trial._trial_id}


def test_a_trial_without_heartbeat_is_failed(study, monkeypatch):
    """The path fail_dead_trials takes, end to end on this Optuna (the grace period is
    set below zero so the fresh trial counts as old)."""
    from compressor.search import storage

    study.ask()
    monkeypatch.setattr(storage, "GRACE_SECONDS", -5)
    fail_dead_trials(study)
    assert study.get_trials(deepcopy=False)[0].state == TrialState.FAIL
