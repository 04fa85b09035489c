"""The trials a study starts with, before the sampler proposes any.

- **Uniform** widths once per quantization mode (fused when allowed), no depth: each mode
  is measured on the same plan, and the search can only improve on torch-pruning's default.
- **Width sensitivity**: each group's measured proxy-accuracy drop sets its preference.
- **Depth sensitivity** (when the model has removable units): the whole FLOPs reduction by
  removing the least sensitive units, and a half-and-half mix with the width allocation.
  Without a FLOPs target (``--max-accuracy-drop``, a latency target alone) the FLOPs level
  is searched too, so the depth-only plan is seeded at each level of :data:`DEPTH_LADDER`:
  how many units can go is what such a run asks, and a sampler drawing the level and every
  unit's preference at random rarely proposes the deeper plans (B2b, 10 trials: one
  encoder layer of six removed, never two).
- **References** (``search.references``): the *unpruned* model exported fp32, fused, and
  quantized in each allowed mode, scored and timed like any candidate, so the chosen
  variant is never dominated by the obvious pipeline when that pipeline meets the target
  (and the report can say what the target costs when it does not).
"""

from __future__ import annotations

from dataclasses import dataclass

from compressor.actions.artifact import DeploySpec
from compressor.logs import LOGGER
from compressor.search.context import SearchSettings
from compressor.search.sensitivity import (
    group_sensitivity,
    preferences_from_sensitivity,
    unit_sensitivity,
)
from compressor.search.space import (
    FLOPS_LEVEL_PARAM,
    deploy_params,
    depth_params,
    no_depth_params,
    preference_param,
    preferred_deploy_params,
    seed_deploy_params,
    uniform_params,
)

REFERENCE_ATTR = "reference"  # trial user attribute naming a reference pipeline
# FLOPs levels of the depth-only seeds when the level is searched: on MiniLM at 128 tokens,
# one, two and three of six encoder layers; on ResNet-56, 4, 8 and 12 of 27 blocks (B1b).
DEPTH_LADDER = (0.85, 0.7, 0.55)


@dataclass(frozen=True)
class Sensitivity:
    """Preferences from the measured sensitivity passes (width groups, depth units)."""

    widths: dict[str, float]
    depth: dict[str, float]


def measure_sensitivity(settings: SearchSettings, baseline_accuracy: float) -> Sensitivity:
    """One proxy evaluation per width group and per depth unit."""
    step = settings.config.prune.ratio_step
    LOGGER.info(
        f"sensitivity of {len(settings.groups)} groups and {len(settings.depth_units)} "
        "depth units (each pruned alone) ..."
    )
    widths = preferences_from_sensitivity(group_sensitivity(settings, baseline_accuracy), step)
    depth = (
        preferences_from_sensitivity(unit_sensitivity(settings, baseline_accuracy), step)
        if settings.depth_units
        else {}
    )
    return Sensitivity(widths, depth)


def seed_params(settings: SearchSettings, sensitivity: Sensitivity) -> list[dict]:
    """The seeded trials' parameters, in the order they are queued (see module docstring)."""
    config = settings.config
    keep_depth = no_depth_params(settings.depth_units)
    preferred = preferred_deploy_params(config.deploy, settings.seed_mode)
    widths = {preference_param(name): value for name, value in sensitivity.widths.items()}
    seeds = [
        {**uniform_params(settings.groups), **deploy, **keep_depth}
        for deploy in seed_deploy_params(config.deploy)
    ]
    seeds.append({**widths, **preferred, **keep_depth})
    if settings.depth_units:
        depth_only = {**widths, **preferred, **depth_params(1.0, sensitivity.depth)}
        if config.target_flops is None:
            seeds += [{**depth_only, FLOPS_LEVEL_PARAM: level} for level in DEPTH_LADDER]
        else:
            seeds.append(depth_only)
        seeds.append({**widths, **preferred, **depth_params(0.5, sensitivity.depth)})
    return seeds


def study_budget(settings: SearchSettings) -> int:
    """Trials the study runs: ``search.trials`` searched plans plus the reference pipelines
    (on top, so asking for references never takes trials from the search)."""
    return settings.config.search.trials + len(reference_params(settings))


def reference_params(settings: SearchSettings) -> list[tuple[str, dict]]:
    """The unpruned model's obvious pipelines, ``(name, parameters)``: fp32, fp32 fused,
    each allowed INT8 mode fused. None without export or with ``search.references`` off."""
    config = settings.config
    if not config.deploy.export or not config.search.references:
        return []
    # Only what the study may choose: a reference outside the allowed modes cannot be a trial.
    fusion, modes = max(config.deploy.fusion), config.deploy.quantization
    specs = [DeploySpec("none", False)] if "none" in modes and False in config.deploy.fusion else []
    specs += [DeploySpec(mode, fusion) for mode in modes]
    unpruned = {preference_param(group.name): 0.0 for group in settings.groups}
    unpruned |= no_depth_params(settings.depth_units)
    if config.target_flops is None:  # the searched FLOPs level: the whole model
        unpruned[FLOPS_LEVEL_PARAM] = 1.0
    return [
        (
            f"unpruned {spec.quantization}{' + fused' if spec.fusion else ''}",
            unpruned | deploy_params(spec),
        )
        for spec in dict.fromkeys(specs)
    ]
