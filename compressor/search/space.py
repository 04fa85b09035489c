"""The search space: per-group pruning preferences, fitted to the FLOPs budget.

Sampling each group's ratio independently wastes most trials: nearly all plans land far
over or under the budget, and the sampler spends its budget learning the total instead of
the allocation. Here a trial samples a *preference* per group in [0, 1]; the plan's ratios
are ``min(max_ratio, scale x preference)`` with one ``scale`` found by bisection so the
plan just fits the budget (the same idea as AMC constraining its actions to the target).
Equal preferences give the uniform plan.

Depth (issue 14): a trial also samples a *depth share* and a removal preference per
removable unit (residual block, encoder layer); the most preferred units are removed until
they save that share of the FLOPs reduction, and the widths are fitted to the rest.

The same trial also picks how its artifact is deployed: the INT8 quantization mode and
layer fusion on / off (categorical parameters), so pruning, quantization and fusion are
searched jointly and judged by the artifact's measured latency and accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import optuna

from compressor.actions.artifact import DeploySpec
from compressor.actions.depth import DepthUnit
from compressor.actions.prune import ChannelGroup
from compressor.config import DeployConfig, PruneConfig

PREFERENCE_PREFIX = "prune."
FlopsOf = Callable[[Mapping[str, float]], int]


def preference_param(group: str) -> str:
    """The Optuna parameter name for a group's pruning preference."""
    return PREFERENCE_PREFIX + group


def suggest_preferences(
    trial: optuna.Trial, groups: Sequence[ChannelGroup], config: PruneConfig
) -> dict[str, float]:
    """Ask the sampler for every group's preference (0 = never prune it, 1 = prune most)."""
    return {
        group.name: trial.suggest_float(
            preference_param(group.name), 0.0, 1.0, step=config.ratio_step
        )
        for group in groups
    }


def preferences_from_params(params: Mapping[str, float]) -> dict[str, float]:
    """The preferences stored in a finished trial's parameters."""
    return {
        name[len(PREFERENCE_PREFIX) :]: value
        for name, value in params.items()
        if name.startswith(PREFERENCE_PREFIX)
    }


def uniform_params(groups: Sequence[ChannelGroup]) -> dict[str, float]:
    """Equal preferences: the plan is torch-pruning's uniform ratio at the budget."""
    return {preference_param(group.name): 1.0 for group in groups}


def scaled_ratios(
    preferences: Mapping[str, float], scale: float, max_ratio: float
) -> dict[str, float]:
    return {name: min(max_ratio, scale * value) for name, value in preferences.items()}


def fit_to_budget(
    preferences: Mapping[str, float],
    flops_of: FlopsOf,
    budget: int,
    max_ratio: float,
    iterations: int = 12,
) -> tuple[dict[str, float], bool]:
    """The least pruning along ``preferences`` that fits ``budget``.

    FLOPs fall monotonically as ``scale`` grows, so bisection finds the smallest scale
    whose plan fits. Returns the ratios and whether they fit (False when even every
    preferred group at ``max_ratio`` is over budget; the most-pruned plan is returned).
    """
    top = max(preferences.values(), default=0.0)
    if top <= 0:
        ratios = scaled_ratios(preferences, 0.0, max_ratio)
        return ratios, flops_of(ratios) <= budget
    # At `high` every group with a positive preference is at max_ratio (each ratio is
    # clipped there), so the whole range from no pruning to the most pruning is searched.
    low, high = 0.0, max_ratio / min(v for v in preferences.values() if v > 0)
    high_ratios = scaled_ratios(preferences, high, max_ratio)
    if flops_of(high_ratios) > budget:
        return high_ratios, False
    if flops_of(scaled_ratios(preferences, 0.0, max_ratio)) <= budget:
        return scaled_ratios(preferences, 0.0, max_ratio), True
    for _ in range(iterations):  # invariant: plan at `high` fits, plan at `low` does not
        middle = (low + high) / 2
        if flops_of(scaled_ratios(preferences, middle, max_ratio)) <= budget:
            high = middle
        else:
            low = middle
    return scaled_ratios(preferences, high, max_ratio), True


QUANTIZATION_PARAM = "deploy.quantization"
FUSION_PARAM = "deploy.fusion"


KEEP_ENDS_PARAM = "deploy.keep_ends_fp32"
KEEP_SENSITIVE_PARAM = "deploy.keep_sensitive"


def suggest_deploy(trial: optuna.Trial, config: DeployConfig) -> DeploySpec:
    """Ask the sampler for the artifact's quantization mode, fusion, whether the first
    and last weighted layers stay fp32 and how many of the measured most INT8-sensitive
    layers do (per-layer precision), in the same study."""
    return DeploySpec(
        quantization=trial.suggest_categorical(QUANTIZATION_PARAM, list(config.quantization)),
        fusion=trial.suggest_categorical(FUSION_PARAM, list(config.fusion)),
        keep_ends=trial.suggest_categorical(KEEP_ENDS_PARAM, [False, True]),
        keep_sensitive=trial.suggest_categorical(KEEP_SENSITIVE_PARAM, list(config.keep_sensitive)),
    )


def deploy_params(spec: DeploySpec) -> dict[str, str | bool | int]:
    """The study parameters that make a trial choose ``spec`` (for seeded trials)."""
    return {
        QUANTIZATION_PARAM: spec.quantization,
        FUSION_PARAM: spec.fusion,
        KEEP_ENDS_PARAM: spec.keep_ends,
        KEEP_SENSITIVE_PARAM: spec.keep_sensitive,
    }


def spec_from_params(params: Mapping) -> DeploySpec:
    """The deployment a finished trial chose (trials of older studies: every layer that the
    user did not keep quantized)."""
    return DeploySpec(
        params[QUANTIZATION_PARAM],
        params[FUSION_PARAM],
        params.get(KEEP_ENDS_PARAM, False),
        params.get(KEEP_SENSITIVE_PARAM, 0),
    )


FLOPS_LEVEL_PARAM = "prune.flops_level"


def suggest_flops_level(trial: optuna.Trial, low: float = 0.2, step: float = 0.05) -> float:
    """The FLOPs ratio a trial's plan is fitted to, when the user gave no FLOPs target."""
    return trial.suggest_float(FLOPS_LEVEL_PARAM, low, 1.0, step=step)


def seed_deploy_params(config: DeployConfig) -> list[dict[str, str | bool]]:
    """Every allowed quantization mode once (fused when allowed), for the seeded trials.

    Each mode is then measured on the same plan before the sampler starts preferring some.
    Without export there is nothing to choose: one seed, no deploy parameters.
    """
    if not config.export:
        return [{}]
    fusion = max(config.fusion)  # fused when allowed: what a deployment would ship
    return [deploy_params(DeploySpec(mode, fusion)) for mode in config.quantization]


def preferred_deploy_params(config: DeployConfig, mode: str) -> dict[str, str | bool]:
    """The seeded plans' deployment: quantization ``mode`` (the settings' ``seed_mode``),
    fused when allowed."""
    if not config.export:
        return {}
    return deploy_params(DeploySpec(mode, max(config.fusion)))


DEPTH_PREFIX = "depth."
DEPTH_SHARE_PARAM = "depth_share"  # not under DEPTH_PREFIX: a unit could be named "share"


@dataclass(frozen=True)
class DepthChoice:
    """A trial's depth move: how much of the FLOPs reduction comes from removing units
    (``share`` 0 = none, 1 = all of it), and which units go first (higher preference)."""

    share: float
    preferences: Mapping[str, float]


def depth_param(unit: str) -> str:
    """The Optuna parameter name for a depth unit's removal preference."""
    return DEPTH_PREFIX + unit


def suggest_depth(trial: optuna.Trial, units: Sequence[DepthUnit], step: float) -> DepthChoice:
    """Ask the sampler for the depth share and every unit's removal preference."""
    share = trial.suggest_float(DEPTH_SHARE_PARAM, 0.0, 1.0, step=0.125)
    return DepthChoice(
        share,
        {u.name: trial.suggest_float(depth_param(u.name), 0.0, 1.0, step=step) for u in units},
    )


def depth_params(share: float, preferences: Mapping[str, float]) -> dict[str, float]:
    """The study parameters that make a trial choose this depth move (for seeded trials)."""
    return {DEPTH_SHARE_PARAM: share} | {depth_param(n): v for n, v in preferences.items()}


def no_depth_params(units: Sequence[DepthUnit]) -> dict[str, float]:
    """Seeded trials that keep every unit (all parameters fixed, none left to sample)."""
    return depth_params(0.0, {u.name: 0.0 for u in units}) if units else {}


def units_to_remove(
    units: Sequence[DepthUnit], choice: DepthChoice, flops_to_save: int
) -> tuple[str, ...]:
    """The units ``choice`` removes: most preferred first (preference 0 = never), until
    they save ``choice.share`` of ``flops_to_save``. The widths fit the rest of the budget."""
    goal = choice.share * max(0, flops_to_save)
    removed, saved = [], 0
    ranked = sorted(units, key=lambda u: (-choice.preferences.get(u.name, 0.0), u.name))
    for unit in ranked:
        if saved >= goal or choice.preferences.get(unit.name, 0.0) <= 0:
            break
        removed.append(unit.name)
        saved += unit.flops
    return tuple(sorted(removed))
