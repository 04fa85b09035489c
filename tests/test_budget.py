"""The shared trial budget: which trials hold it, and when one more may start."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
import pytest
from optuna.trial import TrialState

from compressor.search.budget import DISCARDED, claiming_before, may_start, spent

C, F, R, W = TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING


def _trials(*kinds: str) -> list[optuna.trial.FrozenTrial]:
    """Trials numbered 0.. from codes: C done, E failed with a reason, D died (stale),
    X discarded, R running, W queued."""
    states = {"C": C, "E": F, "D": F, "X": F, "R": R, "W": W}
    trials = []
    for number, kind in enumerate(kinds):
        attrs = {"E": {"error": "ValueError: boom"}, "X": {DISCARDED: "late"}}.get(kind, {})
        trial = optuna.trial.create_trial(
            state=states[kind], value=0.5 if kind == "C" else None, user_attrs=attrs
        )
        trial.number = number
        trials.append(trial)
    return trials


@dataclass
class Case:
    trials: str
    budget: int
    spent: int
    may_start: bool


@pytest.mark.parametrize(
    "case",
    [
        Case("", 3, 0, True),
        Case("CC", 3, 2, True),
        Case("CCC", 3, 3, False),
        Case("CER", 3, 2, False),  # the last share is running elsewhere: wait
        Case("CED", 3, 2, True),  # its process died: the share is free again
        Case("CEDX", 3, 2, True),  # a discarded trial holds nothing either
        Case("CCDW", 3, 2, True),  # the retry of the dead trial is queued within the budget
        Case("CCCWW", 3, 3, False),  # queued seeds beyond the budget are never started
        Case("CRWW", 3, 1, True),  # the first queued one is within it
        Case("CRRW", 3, 1, False),
    ],
    ids=lambda case: f"{case.trials or 'none'}/{case.budget}",
)
def test_spent_and_may_start(case):
    trials = _trials(*case.trials)
    assert spent(trials) == case.spent
    assert may_start(trials, case.budget) is case.may_start


def test_of_two_trials_created_for_the_last_share_only_the_first_keeps_it():
    # Two workers both saw "CC" with a budget of 3 and asked at once: trials 2 and 3 exist.
    trials = _trials("C", "C", "R", "R")
    assert claiming_before(trials, 2) == 2  # < 3: trial 2 is scored
    assert claiming_before(trials, 3) == 3  # trial 3 is discarded
    assert claiming_before(_trials("C", "D", "R", "R"), 3) == 2  # a dead trial frees a share
