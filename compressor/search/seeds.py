"""The trials a study starts with, before the sampler proposes any.

- **Uniform** widths once per quantization mode (fused when allowed), no depth: each mode
  is measured on the same plan, and the search can only improve on torch-pruning's default.
- **Width sensitivity**: each group's measured proxy-accuracy drop sets its preference.
- **Depth sensitivity** (when the model has removable units): the whole FLOPs reduction by
  removing the least sensitive units, and a half-and-half mix with the width allocation.
- **References** (``search.references``): the *unpruned* model exported fp32, fused, and
  quantized in each allowed mode, scored and timed like any candidate, so the chosen
  variant is never dominated by the obvious pipeline when that pipeline meets the target
  (and the report can say what the target costs when it does not).
"""

from __future__ import annotations

from dataclasses import dataclass

from compressor.actions.deploy import DeploySpec
from compressor.search.candidate import SearchContext
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


@dataclass(frozen=True)
class Sensitivity:
    """Preferences from the measured sensitivity passes (width groups, depth units)."""

    widths: dict[str, float]
    depth: dict[str, float]


def measure_sensitivity(ctx: SearchContext, baseline_accuracy: float, log=None) -> Sensitivity:
    """One proxy evaluation per width group and per depth unit."""
    step = ctx.config.prune.ratio_step
    if log:
        log(
            f"sensitivity of {len(ctx.groups)} groups and {len(ctx.depth_units)} depth units "
            "(each pruned alone) ...",
            flush=True,
        )
    widths = preferences_from_sensitivity(group_sensitivity(ctx, baseline_accuracy), step)
    depth = (
        preferences_from_sensitivity(unit_sensitivity(ctx, baseline_accuracy), step)
        if ctx.depth_units
        else {}
    )
    return Sensitivity(widths, depth)


def seed_params(ctx: SearchContext, sensitivity: Sensitivity) -> list[dict]:
    """The seeded trials' parameters, in the order they are queued (see module docstring)."""
    config = ctx.config
    keep_depth = no_depth_params(ctx.depth_units)
    preferred = preferred_deploy_params(config.deploy)
    widths = {preference_param(name): value for name, value in sensitivity.widths.items()}
    seeds = [
        {**uniform_params(ctx.groups), **deploy, **keep_depth}
        for deploy in seed_deploy_params(config.deploy)
    ]
    seeds.append({**widths, **preferred, **keep_depth})
    if ctx.depth_units:
        seeds.append({**widths, **preferred, **depth_params(1.0, sensitivity.depth)})
        seeds.append({**widths, **preferred, **depth_params(0.5, sensitivity.depth)})
    return seeds


def study_budget(ctx: SearchContext) -> int:
    """Trials the study runs: ``search.trials`` searched plans plus the reference pipelines
    (on top, so asking for references never takes trials from the search)."""
    return ctx.config.search.trials + len(reference_params(ctx))


def reference_params(ctx: SearchContext) -> list[tuple[str, dict]]:
    """The unpruned model's obvious pipelines, ``(name, parameters)``: fp32, fp32 fused,
    each allowed INT8 mode fused. None without export or with ``search.references`` off."""
    config = ctx.config
    if not config.deploy.export or not config.search.references:
        return []
    fusion = max(config.deploy.fusion)
    specs = [DeploySpec("none", False)] if False in config.deploy.fusion else []
    specs += [DeploySpec(mode, fusion) for mode in config.deploy.quantization]
    unpruned = {preference_param(group.name): 0.0 for group in ctx.groups}
    unpruned |= no_depth_params(ctx.depth_units)
    if config.target_flops is None:  # the searched FLOPs level: the whole model
        unpruned[FLOPS_LEVEL_PARAM] = 1.0
    return [
        (
            f"unpruned {spec.quantization}{' + fused' if spec.fusion else ''}",
            unpruned | deploy_params(spec),
        )
        for spec in dict.fromkeys(specs)
    ]
