"""A trial whose parameters repeat a finished trial's reuses its result instead of scoring again.

Both studies' spaces are discrete (categorical choices, stepped preferences), so a sampler can
propose a plan twice: TPE did in a causal-lm run (trials 6 and 7 were one plan, an export and
a timing of ~1 min wasted), and the pruning study's seeded width plan is the uniform one when
no group's pruning costs proxy accuracy. Scoring the same plan again would only re-draw the
latency noise, so the repeat returns the earlier trial's values and copies its measurements,
marked ``duplicate_of``.

A duplicate is a finished trial: it counts against the trial budget (so the loop ends) and
TPE sees it like any other. The choice, the re-timing and the promotion ranks read
:func:`distinct` trials, so a plan is never re-timed or ranked twice; its original stands
for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from compressor.search.samplers import SEEDED_ATTR
from compressor.search.seeds import REFERENCE_ATTR

DUPLICATE_ATTR = "duplicate_of"  # user attribute: the number of the trial it repeats
# How the original was queued and who ran it, not what its plan measured: a duplicate keeps
# its own (a sampled repeat of a seed is no seed: startup_trials counts the seeds).
NOT_COPIED = frozenset({SEEDED_ATTR, REFERENCE_ATTR, "worker", "seconds"})


def is_duplicate(trial: FrozenTrial) -> bool:
    return DUPLICATE_ATTR in trial.user_attrs


def distinct(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """``trials`` less the duplicates: each plan once, as the trial that scored it."""
    return [t for t in trials if not is_duplicate(t)]


def plan_number(trial: FrozenTrial) -> int:
    """The number of the trial that scored ``trial``'s plan (its own unless a duplicate)."""
    return trial.user_attrs.get(DUPLICATE_ATTR, trial.number)


def same_params(a: Mapping[str, object], b: Mapping[str, object]) -> bool:
    """Equal parameters; floats within 1e-9 (a queued 0.35 and a sampled 0.35000000000000003
    are one grid point, and the searched steps are >= 0.01 apart)."""
    return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=0.0, abs_tol=1e-9)
    return a == b


def original_of(trial: optuna.Trial) -> FrozenTrial | None:
    """The first finished trial with ``trial``'s parameters, if any (never a duplicate)."""
    finished = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    params = trial.params
    return next((t for t in distinct(finished) if same_params(t.params, params)), None)


def reuse_duplicate(trial: optuna.Trial) -> float | Sequence[float] | None:
    """When a finished trial had ``trial``'s parameters: its value(s), for the objective to
    return, with its measurements and constraints copied onto ``trial``; None when the plan
    is new (score it). Call it once every parameter is suggested."""
    original = original_of(trial)
    if original is None:
        return None
    for key, value in original.user_attrs.items():
        if key not in NOT_COPIED:
            trial.set_user_attr(key, value)
    trial.set_user_attr("seconds", 0.0)  # nothing was built or measured
    trial.set_user_attr(DUPLICATE_ATTR, original.number)
    for key, value in original.constraints.items():  # TPE reads them to tell feasible apart
        trial.set_constraint(key, value)
    values = original.values
    return values[0] if len(values) == 1 else values
