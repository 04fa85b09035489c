"""How sure a measured latency ratio is, and when to stop timing.

Each round times the candidate and the baseline back to back, so a per-round ratio cancels
most of the load both saw; what is left varies from round to round multiplicatively (a ratio
of two positive times), so the statistics are done on its logarithm. A Student t-interval
on the mean log ratio (``scipy.stats.t`` gives the quantile) is the confidence interval of
the geometric-mean ratio; rounds continue until that interval is within a relative
half-width (e.g. +-5 %) or a cap is hit. Pure functions: the measurement worker applies the
rule round by round, and tests feed it synthetic series.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import t as student_t

CONFIDENCE = 0.95


@dataclass(frozen=True)
class RatioInterval:
    """Geometric-mean ratio of ``rounds`` per-round ratios and its confidence interval."""

    ratio: float
    low: float
    high: float
    rounds: int

    @property
    def halfwidth(self) -> float:
        """Relative half-width: the interval is ``ratio`` x/÷ (1 + halfwidth)."""
        return self.high / self.ratio - 1.0


def ratio_interval(ratios: Sequence[float], confidence: float = CONFIDENCE) -> RatioInterval:
    """t-interval of the mean log ratio, mapped back to ratios (infinitely wide below 2)."""
    if not ratios or min(ratios) <= 0:
        raise ValueError(f"per-round ratios must be positive; got {list(ratios)!r}")
    logs = [math.log(r) for r in ratios]
    n = len(logs)
    mean = sum(logs) / n
    if n < 2:
        return RatioInterval(math.exp(mean), 0.0, math.inf, n)
    variance = sum((x - mean) ** 2 for x in logs) / (n - 1)
    half = student_t.ppf(0.5 + confidence / 2, n - 1) * math.sqrt(variance / n)
    return RatioInterval(math.exp(mean), math.exp(mean - half), math.exp(mean + half), n)


def precise_enough(
    ratios: Sequence[float], halfwidth: float, min_rounds: int, confidence: float = CONFIDENCE
) -> bool:
    """The stopping rule: at least ``min_rounds`` and the interval within ``halfwidth``."""
    if len(ratios) < max(2, min_rounds):
        return False
    return ratio_interval(ratios, confidence).halfwidth <= halfwidth


def rounds_needed(
    ratios: Sequence[float], halfwidth: float, min_rounds: int, max_rounds: int
) -> int:
    """How many rounds of the series ``ratios`` the rule times before it stops."""
    for count in range(1, min(len(ratios), max_rounds) + 1):
        if precise_enough(ratios[:count], halfwidth, min_rounds):
            return count
    return min(len(ratios), max_rounds)
