"""Multi-fidelity scoring: every candidate gets the cheap score, the promising few a better one.

The cheap score (fidelity 0) is the artifact's metric after adaptive BatchNorm; it ranks
plans only loosely against their accuracy after recovery (benchmarks/results/proxy-*). A
short distillation from the unpruned model (fidelity 1, ``search.promote_steps`` steps)
ranks them better but costs far more, so only a trial whose cheap reward is among the top
``search.promote_fraction`` of the study's cheap rewards so far (itself included) is
promoted, as in successive halving. The decision reads only the study's finished trials,
so a resumed study or a second worker takes the same decision for the same history.

Each fidelity's reward is reported to Optuna as the trial's intermediate value at that step
(``trial.report``: the dashboard plots them); the trial's value is the reward at the
highest fidelity it reached, and its ``fidelity`` attribute says which.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from optuna.trial import FrozenTrial, TrialState

CHEAP, DISTILLED = 0, 1
FIDELITY = "fidelity"  # user attribute: the highest fidelity a trial reached
CHEAP_REWARD = "reward_cheap"  # user attribute: its fidelity-0 reward


def cheap_rewards(trials: Iterable[FrozenTrial], number: int) -> list[float]:
    """Fidelity-0 rewards of the study's finished trials other than trial ``number``."""
    return [
        t.user_attrs[CHEAP_REWARD]
        for t in trials
        if t.state == TrialState.COMPLETE and t.number != number and CHEAP_REWARD in t.user_attrs
    ]


def promoted(cheap: float, others: list[float], fraction: float) -> bool:
    """Whether ``cheap`` is among the top ``fraction`` of ``others + [cheap]``.

    With n rewards the top ``ceil(fraction x n)`` places are promoted, so the best trial so
    far always is (the first trial too) and about ``fraction`` of a long study is. Ties
    count in the candidate's favour.
    """
    if fraction <= 0:
        return False
    places = math.ceil(fraction * (len(others) + 1))
    better = sum(other > cheap for other in others)
    return better < places


def score_with_fidelity(trial, metrics: dict, rescore: Callable[[], dict], fraction: float) -> dict:
    """``metrics`` (the cheap score) raised to the distilled fidelity when promoted.

    ``rescore()`` returns the distilled score's metrics (at least ``accuracy`` and
    ``reward``); they replace the cheap ones, which stay as ``accuracy_cheap`` /
    ``reward_cheap``. Only plans within the FLOPs budget are promoted: the others can never
    be chosen. Returns the trial's metrics with ``fidelity`` set.
    """
    trial.report(metrics["reward"], CHEAP)
    metrics = {
        **metrics,
        FIDELITY: CHEAP,
        CHEAP_REWARD: metrics["reward"],
        "accuracy_cheap": metrics["accuracy"],
    }
    others = cheap_rewards(trial.study.get_trials(deepcopy=False), trial.number)
    if not metrics.get("feasible", True) or not promoted(metrics["reward"], others, fraction):
        return metrics
    better = rescore()
    trial.report(better["reward"], DISTILLED)
    return {**metrics, **better, FIDELITY: DISTILLED}
