"""The trial budget of a study, shared by every process that runs its trials.

``--trials N`` belongs to the study, not to a process. A trial *claims* a share of the budget
while it is queued or running and keeps it once it is finished or failed with a reason; a
trial whose process died (failed by its stale heartbeat, with no reason) or that was
discarded claims nothing, so its share is spent again. The budget is held by the first N
claiming trials in trial-number order.

A process starts a trial only while the budget has room, or a queued trial within it waits.
Two processes that both saw room for one more trial can still both create one; each trial
therefore counts, once created, the claiming trials numbered before it, and a trial that
finds N of them is discarded before it samples anything. Optuna numbers new trials while
holding a lock on the study's row, so numbers follow creation order and exactly one of the
two keeps the last share: the budget is never exceeded.
"""

from __future__ import annotations

from collections.abc import Iterable

from optuna.trial import FrozenTrial, TrialState

DISCARDED = "discarded"  # user attribute of a trial created beyond the budget (never scored)


def is_discarded(trial: FrozenTrial) -> bool:
    return DISCARDED in trial.user_attrs


def is_spent(trial: FrozenTrial) -> bool:
    """Finished, or failed with a reason (a failure of the plan, not of its process)."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "error" in trial.user_attrs


def is_claiming(trial: FrozenTrial) -> bool:
    """Spent, running or queued: holds a share of the budget."""
    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        return not is_discarded(trial)
    return is_spent(trial)


def spent(trials: Iterable[FrozenTrial]) -> int:
    """How many trials count against the budget for good."""
    return sum(is_spent(t) for t in trials)


def claiming_before(trials: Iterable[FrozenTrial], number: int) -> int:
    """Claiming trials numbered below ``number``."""
    return sum(t.number < number and is_claiming(t) for t in trials)


def reported_trials(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The trials a result or report lists: all but queued ones and those discarded over
    the budget (never scored; they would read as failures without a reason)."""
    return [t for t in trials if t.state != TrialState.WAITING and not is_discarded(t)]


def may_start(trials: Iterable[FrozenTrial], budget: int) -> bool:
    """Whether asking the study for a trial now can stay within ``budget``.

    True when fewer than ``budget`` trials claim it (a new trial fits) or a queued trial is
    among the first ``budget`` claiming ones (Optuna hands out the lowest-numbered queued
    trial first).
    """
    holders = sorted((t for t in trials if is_claiming(t)), key=lambda t: t.number)[:budget]
    return len(holders) < budget or any(t.state == TrialState.WAITING for t in holders)
