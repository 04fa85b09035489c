"""The reward R = accuracy x delta(complexity). Pure functions, no I/O.

Complexity is a list of :class:`Term` s, each a measured value (FLOPs, latency) against a
target. ``delta`` is the product of one factor per term:

* ``soft`` (MnasNet): ``(C/T)^w`` with ``w = alpha`` when ``C <= T`` and ``beta`` otherwise
  (defaults ``alpha = beta = -0.07``): a gentle, smooth trade of accuracy for speed.
* ``hard``: ``alpha = 0`` and a steep ``beta`` for the user's budgets, and every variant
  over a budget ranks below every variant within it (its reward is shifted below zero).
* ``amc``: AMC's ``R = -error x log(FLOPs)`` (He et al., 2018); no latency term.

Terms that are not budgets (the measured latency when no latency target is given, taken
against the baseline's latency) are preferences: they are always soft.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_ALPHA = -0.07
DEFAULT_BETA = -0.07
HARD_BETA = -20.0
REWARD_MODES = ("soft", "hard", "amc")


@dataclass(frozen=True)
class Term:
    """One complexity measure against its target.

    Attributes:
        name: "flops" or "latency" (for reports).
        value: the variant's measured complexity.
        target: what it is judged against, in the same unit.
        budget: True for a user's budget (``hard`` enforces it), False for a preference.
    """

    name: str
    value: float
    target: float
    budget: bool = True

    @property
    def ratio(self) -> float:
        return self.value / self.target

    @property
    def within(self) -> bool:
        return self.value <= self.target


def soft_factor(ratio: float, alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA) -> float:
    """MnasNet's ``(C/T)^w``: ``w = alpha`` within the target, ``beta`` over it."""
    return ratio ** (alpha if ratio <= 1.0 else beta)


def hard_factor(ratio: float, beta: float = HARD_BETA) -> float:
    """1 within the target, ``(C/T)^beta`` (steep) over it."""
    return 1.0 if ratio <= 1.0 else ratio**beta


def reward(
    accuracy: float,
    terms: Sequence[Term],
    mode: str = "soft",
    alpha: float = DEFAULT_ALPHA,
    beta: float = DEFAULT_BETA,
) -> float:
    """R for a variant with metric ``accuracy`` (in [0, 1]) and complexity ``terms``.

    For ``amc`` the FLOPs term's value is used as AMC's absolute FLOPs.
    """
    if mode == "amc":
        flops = next(t.value for t in terms if t.name == "flops")
        return amc_reward(accuracy, flops)
    if mode not in REWARD_MODES:
        raise ValueError(f"unknown reward mode {mode!r}; choose one of {', '.join(REWARD_MODES)}")
    delta, feasible = 1.0, True
    for term in terms:
        if mode == "hard" and term.budget:
            delta *= hard_factor(term.ratio)
            feasible = feasible and term.within
        elif mode == "hard":
            delta *= soft_factor(term.ratio)
        else:
            delta *= soft_factor(term.ratio, alpha, beta)
    value = accuracy * delta
    # accuracy * delta >= 0 for every variant, so the shift puts all over-budget ones lower.
    return value if feasible else value - 1.0


def amc_reward(accuracy: float, flops: float) -> float:
    """AMC's resource-aware reward ``-error x log(FLOPs)`` (higher is better)."""
    return -(1.0 - accuracy) * math.log(flops)
