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

Each mode is one registered :class:`RewardMode` (:data:`REWARDS`): its function and the formula
the report states, so adding a reward is one decorated function here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from compressor.registry import Registry

DEFAULT_ALPHA = -0.07
DEFAULT_BETA = -0.07
HARD_BETA = -20.0


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


RewardFunction = Callable[[float, Sequence[Term], float, float], float]


@dataclass(frozen=True)
class RewardMode:
    """A registered reward: ``function(accuracy, terms, alpha, beta)`` and ``formula(alpha,
    beta)``, the formula in symbols as the report states it."""

    function: RewardFunction
    formula: Callable[[float, float], str]
    uses_latency: bool = True


REWARDS: Registry[RewardMode] = Registry("reward")


def reward_mode(
    name: str, description: str, formula: Callable[[float, float], str], uses_latency: bool = True
) -> Callable[[RewardFunction], RewardFunction]:
    """Register ``function`` as the reward ``name``."""

    def wrap(function: RewardFunction) -> RewardFunction:
        REWARDS.register(name, description)(RewardMode(function, formula, uses_latency))
        return function

    return wrap


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
    """R for a variant with metric ``accuracy`` (in [0, 1]) and complexity ``terms``."""
    return REWARDS.get(mode).function(accuracy, terms, alpha, beta)


@reward_mode(
    "soft",
    "MnasNet: accuracy x (C/T)^w per term, a smooth trade of accuracy for speed",
    lambda alpha, beta: (
        f"R = accuracy × Π (C/T)^w, w = α = {alpha:g} if C ≤ T, β = {beta:g} if over "
        "(MnasNet soft reward)"
    ),
)
def soft_reward(accuracy: float, terms: Sequence[Term], alpha: float, beta: float) -> float:
    return accuracy * math.prod(soft_factor(term.ratio, alpha, beta) for term in terms)


@reward_mode(
    "hard",
    "budgets enforced: any variant over a budget ranks below every variant within",
    lambda alpha, beta: (
        f"R = accuracy × Π δ(C/T); budgets: δ = 1 if C ≤ T else (C/T)^{HARD_BETA:g}, and "
        f"R − 1 when over a budget; preferences: (C/T)^{DEFAULT_ALPHA:g}"
    ),
)
def hard_reward(accuracy: float, terms: Sequence[Term], alpha: float, beta: float) -> float:
    delta = math.prod(
        hard_factor(term.ratio) if term.budget else soft_factor(term.ratio) for term in terms
    )
    # accuracy * delta >= 0 for every variant, so the shift puts all over-budget ones lower.
    within = all(term.within for term in terms if term.budget)
    return accuracy * delta if within else accuracy * delta - 1.0


@reward_mode(
    "amc",
    "AMC: -error x log(FLOPs), no latency term (He et al., 2018)",
    lambda alpha, beta: "R = −(1 − accuracy) × ln(FLOPs) (AMC; no latency term)",
    uses_latency=False,
)
def amc_terms_reward(accuracy: float, terms: Sequence[Term], alpha: float, beta: float) -> float:
    """The FLOPs term's value is used as AMC's absolute FLOPs."""
    return amc_reward(accuracy, next(t.value for t in terms if t.name == "flops"))


def amc_reward(accuracy: float, flops: float) -> float:
    """AMC's resource-aware reward ``-error x log(FLOPs)`` (higher is better)."""
    return -(1.0 - accuracy) * math.log(flops)
