"""A sensitivity prior: how much the proxy accuracy drops when each group alone is pruned.

Used to seed the study with a sensible allocation (prune the insensitive groups more), the
heuristic that beat uniform and random plans on ResNet-56 in our measurements; the sampler
then refines it. Costs one candidate evaluation per group.
"""

from __future__ import annotations

from compressor.search.candidate import build_candidate, checked_metric
from compressor.search.context import SearchSettings


def group_sensitivity(
    settings: SearchSettings, baseline_accuracy: float, probe_ratio: float = 0.5
) -> dict[str, float]:
    """Proxy-accuracy drop (>= 0) for each group pruned alone by ``probe_ratio``."""
    return {
        group.name: _drop(settings, baseline_accuracy, {group.name: probe_ratio})
        for group in settings.groups
    }


def unit_sensitivity(settings: SearchSettings, baseline_accuracy: float) -> dict[str, float]:
    """Proxy-accuracy drop (>= 0) for each depth unit removed alone (adaptive BN applied):
    which blocks a network can lose is measured, not guessed (the first and last block of
    a stage usually matter more)."""
    return {
        unit.name: _drop(settings, baseline_accuracy, {}, (unit.name,))
        for unit in settings.depth_units
    }


def _drop(settings: SearchSettings, baseline_accuracy: float, ratios: dict, removed=()) -> float:
    model, _ = build_candidate(settings, ratios, removed)
    try:
        accuracy = checked_metric(settings.evaluate(model))
    except Exception:  # a plan we cannot judge is treated as the most sensitive
        accuracy = 0.0
    return max(0.0, baseline_accuracy - accuracy)


def preferences_from_sensitivity(drops: dict[str, float], step: float) -> dict[str, float]:
    """Preference 1 for the least sensitive group, falling linearly to 0 for the most."""
    worst = max(drops.values(), default=0.0)
    if worst <= 0:
        return {name: 1.0 for name in drops}
    return {
        name: round(round((1.0 - drop / worst) / step) * step, 6) for name, drop in drops.items()
    }
