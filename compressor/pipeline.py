"""The steps of one compression run, each a function the benchmarks can call on its own:

    measure_baseline -> prepare_search -> seed_study -> search -> choose (the top trials
    re-timed together) -> recover
    -> deploy -> time_chosen -> chosen_record, then the run folder is written

:func:`compressor.api.run_compression` is these steps in sequence; ``compress worker`` runs
only ``search``. Each step takes what it needs and returns a typed record, so nothing is
re-implemented elsewhere (study seeding, for one, lives only in :func:`seed_study`).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from torch import nn

from compressor.actions.artifact import DeploySpec
from compressor.actions.export import export_onnx
from compressor.config import CompressConfig
from compressor.errors import CompressorError, UserInputError
from compressor.logs import LOGGER
from compressor.measure.flops import count_flops, count_params
from compressor.measure.latency import LatencyComparison, LatencyStats
from compressor.progress import progress_mode
from compressor.records import (
    ArtifactFile,
    ArtifactInfo,
    Baseline,
    Chosen,
    Parity,
    Percentiles,
    Plan,
    Retimed,
    Target,
)
from compressor.recover import recover_model
from compressor.run_folder import atomic_path
from compressor.search.candidate import (
    artifact_info,
    build_candidate,
    checked_metric,
    flops_of_plan,
    make_artifact,
    parity_of,
    plan_for,
    runnable,
)
from compressor.search.choose import choose_retimed
from compressor.search.context import Resources, SearchSettings, excluded_records, search_settings
from compressor.search.loop import run_study
from compressor.search.samplers import SEEDED_ATTR
from compressor.search.seeds import (
    REFERENCE_ATTR,
    Sensitivity,
    measure_sensitivity,
    reference_params,
    seed_params,
    study_budget,
)
from compressor.search.space import (
    no_depth_params,
    seed_deploy_params,
    spec_from_params,
    uniform_params,
)
from compressor.search.trial_progress import TrialProgress
from compressor.tasks import Task


def measure_baseline(task: Task) -> Baseline:
    """The unmodified model's metric (test and validation), FLOPs and parameters."""
    started = time.perf_counter()
    model = task.model.eval()
    return Baseline(
        accuracy=_user_metric(task.evaluate_test, model),
        val_accuracy=_user_metric(task.evaluate, model),
        flops=count_flops(model, task.example_inputs),
        params=count_params(model),
        evaluate_seconds=time.perf_counter() - started,
    )


def prepare_search(
    task: Task, config: CompressConfig, baseline: Baseline
) -> tuple[SearchSettings, Target]:
    """The search's settings and the targets record; says which groups are left whole
    because pruning them breaks the forward, refuses a FLOPs budget below the smallest
    reachable."""
    settings = search_settings(
        task, config, baseline.flops, baseline_accuracy=baseline.val_accuracy
    )
    for group in settings.excluded_groups:
        LOGGER.info(f"excluded group {group}")
    uniform = uniform_ratio_at_budget(settings)
    search = config.search
    return settings, Target(
        flops=settings.flops_budget,
        flops_ratio=settings.flops_budget / baseline.flops,
        spec=str(config.target_flops) if config.target_flops is not None else None,
        reward=search.reward,
        alpha=search.alpha,
        beta=search.beta,
        uniform_ratio=uniform,
        latency=str(config.target_latency) if config.target_latency else None,
        max_accuracy_drop=config.max_accuracy_drop,
    )


def uniform_ratio_at_budget(settings: SearchSettings) -> float:
    """The uniform ratio that fits the FLOPs budget; a budget below the smallest reachable
    FLOPs is the user's to change (:class:`UserInputError`)."""
    ratios, fits = plan_for(settings, {group.name: 1.0 for group in settings.groups})
    if not fits:
        smallest = flops_of_plan(settings, ratios)
        raise UserInputError(
            f"target {settings.flops_budget / 1e6:.3g}M FLOPs cannot be reached: the smallest "
            f"reachable is {smallest / 1e6:.3g}M ({smallest / settings.baseline_flops:.2f} of "
            f"the model) at prune.max_ratio {settings.config.prune.max_ratio}"
        )
    return max(ratios.values())


def sensitivity_seed(settings: SearchSettings, baseline_val_accuracy: float) -> Sensitivity:
    """The sensitivity passes' preferences: each group pruned alone and each depth unit
    removed alone, the drops turned into preferences (one evaluation each)."""
    return measure_sensitivity(settings, baseline_val_accuracy)


def seed_study(
    study: optuna.Study,
    settings: SearchSettings,
    sensitivity: Sensitivity | Callable[[], Sensitivity] | None,
) -> None:
    """Queue the known plans a new study starts from (a continued one is left alone).

    The uniform plan (so the search can only improve on it) once with every allowed
    deployment, so each mode is measured on the same plan before the sampler starts
    preferring some; then the sensitivity allocation (a strong prior to refine) with the
    preferred deployment, the depth plans, and the reference pipelines (see
    :mod:`compressor.search.seeds`). ``sensitivity`` is the passes' result, or a function
    computing it (called only for a new study), or None for the uniform plans alone.
    """
    if study.trials:
        return
    if sensitivity is None:
        for params in seed_deploy_params(settings.config.deploy):
            study.enqueue_trial(
                {
                    **uniform_params(settings.groups),
                    **params,
                    **no_depth_params(settings.depth_units),
                },
                user_attrs={SEEDED_ATTR: True},
            )
        return
    measured = sensitivity() if callable(sensitivity) else sensitivity
    for params in seed_params(settings, measured):
        study.enqueue_trial(params, user_attrs={SEEDED_ATTR: True})
    for name, params in reference_params(settings):
        study.enqueue_trial(params, user_attrs={REFERENCE_ATTR: name, SEEDED_ATTR: True})


def search(
    study: optuna.Study,
    settings: SearchSettings,
    resources: Resources,
    *,
    progress: bool = True,
) -> int:
    """Run the study's trials until its budget is spent; returns how many this process
    scored."""
    config = settings.config.search
    budget = study_budget(settings)  # the reference pipelines run on top of search.trials
    with TrialProgress(study, budget, progress_mode(progress)) as display:
        return run_study(study, settings, resources, budget, config.time_budget, display)


def choose(
    study: optuna.Study, settings: SearchSettings, resources: Resources | None = None
) -> tuple[optuna.trial.FrozenTrial, tuple[Retimed, ...]]:
    """The best trial within every budget, after the top ones and the reference pipelines
    were re-timed together (with ``resources``' meter; see :mod:`compressor.search.choose`); with
    ``--max-accuracy-drop`` the fastest of them. None is an error that says what to change."""
    drop = settings.config.max_accuracy_drop
    best, retimed = choose_retimed(study, settings, resources, fastest=drop is not None)
    if best is None:
        budgets = f"the FLOPs target ({settings.flops_budget / 1e6:.2f}M)"
        if settings.config.target_latency is not None:
            budgets += f" and the latency target ({settings.config.target_latency})"
        if drop is not None:
            budgets += f" and the accuracy floor (-{drop:g} pt)"
        raise CompressorError(
            f"no trial met {budgets} within the search budget; raise --trials or loosen the targets"
        )
    return best, retimed


@dataclass(frozen=True)
class Recovered:
    """The chosen plan rebuilt and recovered."""

    model: nn.Module
    kept: dict[str, int]  # channels (heads, neurons) each group kept
    accuracy_before: float  # test metric of the rebuilt plan before recovery
    method: str = ""  # the recovery method whose weights the model has
    raced: Mapping[str, float] = field(default_factory=dict)  # method -> validation metric


def recover(
    task: Task, settings: SearchSettings, trial: optuna.trial.FrozenTrial, *, progress: bool = True
) -> Recovered:
    """Rebuild ``trial``'s plan (adaptive BN applied) and recover it as configured (under
    ``recovery.method: auto`` a plan that removed whole blocks is fine-tuned and distilled,
    and the better on validation kept)."""
    removed = removed_units_of(trial)
    model, kept = build_candidate(
        settings, trial.user_attrs["ratios"], removed, trial.user_attrs.get("round_to")
    )
    before = checked_metric(task.evaluate_test(model))
    outcome = recover_model(
        task, model, settings.config.recovery, progress=progress, depth_pruned=bool(removed)
    )
    return Recovered(outcome.model, kept, before, outcome.method, dict(outcome.val_metric))


@dataclass(frozen=True)
class Deployed:
    """``model.onnx`` and what was measured on it (its latency is timed by
    :func:`time_chosen`, with the baseline, at the end)."""

    path: Path
    accuracy: float  # test metric of the artifact
    val_accuracy: float
    spec: DeploySpec
    parity: Parity
    artifact: ArtifactInfo
    sizes: dict[str, int]  # file name -> bytes
    pruned_fp32: LatencyComparison  # the pruned model's fp32 export against the baseline


def deploy(
    settings: SearchSettings,
    resources: Resources,
    task: Task,
    model: nn.Module,
    params: Mapping,
    output_dir: Path,
) -> Deployed:
    """Write ``output_dir/model.onnx`` for the deployment ``params`` chose, from the
    recovered weights (exported, fused and calibrated anew), and measure it.

    Also times the fp32 export of the pruned model, to tell pruning's speed-up from
    quantization's.
    """
    spec = spec_from_params(params)
    output_dir.mkdir(parents=True, exist_ok=True)
    built = make_artifact(settings, model, spec, resources.workdir / "model.onnx")
    with atomic_path(output_dir / "model.onnx") as tmp:
        shutil.copyfile(built.path, tmp)
    module = runnable(settings, output_dir / "model.onnx")
    pruned_fp32 = export_onnx(model, task.example_inputs, resources.workdir / "pruned_fp32.onnx")
    rounds = 3 * settings.config.measure.rounds
    return Deployed(
        path=output_dir / "model.onnx",
        accuracy=checked_metric(task.evaluate_test(module)),
        val_accuracy=checked_metric(task.evaluate(module)),
        spec=spec,
        parity=parity_of(settings, model, module),
        artifact=artifact_info(built),
        sizes={
            "baseline_fp32.onnx": resources.baseline_artifact.stat().st_size,
            "pruned_fp32.onnx": pruned_fp32.stat().st_size,
            "model.onnx": built.size_bytes,
        },
        pruned_fp32=resources.meter.compare(pruned_fp32, rounds=rounds),
    )


def time_chosen(
    settings: SearchSettings, resources: Resources, shipped: Path | nn.Module
) -> LatencyComparison:
    """The shipped variant against the baseline, with three times the usual rounds."""
    return resources.meter.compare(shipped, rounds=3 * settings.config.measure.rounds)


def chosen_record(
    task: Task,
    settings: SearchSettings,
    trial: optuna.trial.FrozenTrial,
    recovered: Recovered,
    deployed: Deployed | None,
    latency: LatencyComparison,
    retimed: tuple[Retimed, ...] = (),
) -> Chosen:
    """What ``result.json`` states about the chosen variant."""
    model, config = recovered.model, settings.config
    fp32_accuracy = checked_metric(task.evaluate_test(model))
    shipped = {}
    if deployed is not None:
        shipped = dict(
            accuracy_fp32=fp32_accuracy,
            quantization=deployed.spec.quantization,
            fusion=deployed.spec.fusion,
            parity=deployed.parity,
            artifact=deployed.artifact,
        )
    return Chosen(
        accuracy=deployed.accuracy if deployed else fp32_accuracy,
        accuracy_before_recovery=recovered.accuracy_before,
        val_accuracy=(deployed.val_accuracy if deployed else checked_metric(task.evaluate(model))),
        val_accuracy_before_recovery=trial.user_attrs["accuracy"],
        flops=count_flops(model, task.example_inputs),
        params=count_params(model),
        latency_ms=latency.candidate.p50_ms,
        latency_p90_ms=latency.candidate.p90_ms,
        latency_ratio=latency.ratio,
        latency_ratio_low=latency.ratio_low,
        latency_ratio_high=latency.ratio_high,
        reward=next((r.reward for r in retimed if r.trial == trial.number), trial.value),
        trial=trial.number,
        fidelity=trial.user_attrs.get("fidelity"),
        retimed=retimed,
        plan=Plan(
            ratios=trial.user_attrs["ratios"],
            channels=recovered.kept,
            channels_before={group.name: group.channels for group in settings.groups},
            excluded_groups=excluded_records(settings),
            importance=config.prune.importance,
            round_to=trial.user_attrs.get("round_to", config.prune.round_to),
            round_to_measured=settings.kernel_widths is not None,
            removed_units=removed_units_of(trial),
            depth_units=tuple(unit.name for unit in settings.depth_units),
        ),
        recovery={
            **dataclasses.asdict(config.recovery),
            "used": recovered.method,
            "raced": dict(recovered.raced),
        },
        **shipped,
    )


def removed_units_of(trial: optuna.trial.FrozenTrial) -> tuple[str, ...]:
    """The depth units a finished trial removed (none for trials of older studies)."""
    return tuple(trial.user_attrs.get("removed_units") or ())


def artifact_files(deployed: Deployed, latency: LatencyComparison) -> dict[str, ArtifactFile]:
    """Per ONNX file: latency (p50, p90; all timed against the same baseline) and size."""
    pruned = deployed.pruned_fp32
    return {
        "baseline_fp32.onnx": _file(latency.baseline, deployed.sizes["baseline_fp32.onnx"]),
        "pruned_fp32.onnx": _file(
            pruned.candidate, deployed.sizes["pruned_fp32.onnx"], pruned.ratio
        ),
        "model.onnx": _file(latency.candidate, deployed.sizes["model.onnx"], latency.ratio),
    }


def _file(stats: LatencyStats, size: int, ratio: float | None = None) -> ArtifactFile:
    return ArtifactFile(Percentiles(stats.p50_ms, stats.p90_ms), size, ratio)


def _user_metric(evaluate: Callable[[nn.Module], float], model: nn.Module) -> float:
    """The metric on the unmodified model: any failure here is the caller's to fix."""
    try:
        return checked_metric(evaluate(model))
    except CompressorError as exc:
        raise UserInputError(str(exc)) from None
    except Exception as exc:
        raise UserInputError(
            f"evaluate() failed on the unmodified model: {type(exc).__name__}: {exc}"
        ) from None
