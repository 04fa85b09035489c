"""The methods a benchmark compares: our search (variants) and torch-pruning's own pruners.

Our search runs through the same pipeline steps as ``compress`` (:mod:`compressor.pipeline`:
settings, study seeding, search, choice) rather than through ``run_compression``, so that
several searches in one benchmark share one sensitivity pass and one baseline evaluation,
and spend exactly the same trial budget.

A search may also be multi-objective (:class:`Objectives`, B3's NSGA-II front row): each
trial is scored by the same objective and keeps its R as its ``reward`` attribute, but
returns other values to Optuna (accuracy and FLOPs ratio), and R chooses from the front.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch_pruning as tp
from torch import nn

from compressor import pipeline
from compressor.config import CompressConfig
from compressor.measure.flops import count_flops
from compressor.records import TrialMetrics
from compressor.recover import recalibrate_batchnorm
from compressor.search.candidate import build_candidate
from compressor.search.context import Resources, SearchSettings, search_settings
from compressor.search.loop import TrialValues, run_study
from compressor.search.samplers import make_sampler
from compressor.search.seeds import Sensitivity, study_budget
from compressor.search.storage import open_study
from compressor.tasks import Task


@dataclass(frozen=True)
class Objectives:
    """A multi-objective study: one direction per objective, and what each trial returns
    for them from its metrics (its R stays the trial's ``reward`` attribute)."""

    directions: tuple[str, ...]
    values: TrialValues


def accuracy_and_flops(metrics: TrialMetrics) -> tuple[float, float]:
    return metrics.accuracy, metrics.flops_ratio


# Accuracy up, FLOPs ratio down: B3's NSGA-II front row. FLOPs stand in for latency there,
# since B3 scores pruned PyTorch models, without the artifacts latency is measured on.
ACCURACY_FLOPS = Objectives(("maximize", "minimize"), accuracy_and_flops)


def settings_for(task: Task, config: CompressConfig) -> SearchSettings:
    """The settings ``compress`` builds (budget, pruner, fixed calibration batches)."""
    model = task.model.eval()
    accuracy = task.evaluate(model) if config.max_accuracy_drop is not None else None
    return search_settings(
        task, config, count_flops(model, task.example_inputs), baseline_accuracy=accuracy
    )


def sensitivity_params(settings: SearchSettings) -> Sensitivity:
    """The sensitivity passes' preferences (one evaluation per group and per depth unit),
    computed once."""
    return pipeline.sensitivity_seed(settings, settings.evaluate(settings.model))


def run_search(
    settings: SearchSettings,
    resources: Resources,
    *,
    trials: int,
    sampler: str = "tpe",
    seed: int = 0,
    seeds: Sensitivity | None = None,
    progress: bool = False,
    objectives: Objectives | None = None,
) -> tuple[optuna.Study, float]:
    """One study of ``trials`` trials (seeded plans included); returns it and its seconds.

    ``seeds``: the sensitivity preferences; with them the study starts like ``compress``
    does (:func:`compressor.pipeline.seed_study`: uniform, sensitivity and depth plans, then
    the reference pipelines when the config asks for them, on top of ``trials``). Without,
    every trial comes from the sampler (B3 compares samplers alone). ``objectives``: a
    multi-objective study instead of one on R (no progress display: it shows the best trial
    by the study's single value).
    """
    settings = with_search(settings, trials=trials, sampler=sampler, seed=seed)
    directions = ("maximize",) if objectives is None else objectives.directions
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-study-") as folder:
        url = f"sqlite:///{Path(folder) / 'study.db'}"
        study = open_study(url, "compress", make_sampler(sampler, seed, trials), directions)
        if seeds is not None:
            pipeline.seed_study(study, settings, seeds)
        if objectives is None:
            pipeline.search(study, settings, resources, progress=progress)
        else:
            budget, limit = study_budget(settings), settings.config.search.time_budget
            run_study(study, settings, resources, budget, limit, None, values=objectives.values)
        # The storage closes with the folder; keep the finished trials in memory.
        study = _in_memory_copy(study)
    return study, time.perf_counter() - started


def best_model(
    settings: SearchSettings, study: optuna.Study, resources: Resources | None = None
) -> tuple[nn.Module, optuna.trial.FrozenTrial]:
    """The chosen trial's plan rebuilt (adaptive BN applied), as ``compress`` chooses it:
    with ``resources`` (a search that timed its artifacts) the top trials are re-timed
    together first and the choice uses those figures (``pipeline.choose``)."""
    best, _ = pipeline.choose(study, settings, resources)
    return trial_model(settings, best), best


def trial_model(settings: SearchSettings, trial: optuna.trial.FrozenTrial) -> nn.Module:
    """``trial``'s plan rebuilt: its ratios, removed units and channel multiple (adaptive BN
    applied)."""
    model, _ = build_candidate(
        settings,
        trial.user_attrs["ratios"],
        pipeline.removed_units_of(trial),
        trial.user_attrs.get("round_to"),
    )
    return model


def with_search(settings: SearchSettings, **search) -> SearchSettings:
    """``settings`` with search options replaced (a new frozen config; nothing mutated)."""
    config = settings.config
    config = dataclasses.replace(config, search=dataclasses.replace(config.search, **search))
    return dataclasses.replace(settings, config=config)


def prune_only(settings: SearchSettings, **search) -> SearchSettings:
    """Settings scoring plain pruned PyTorch models (no artifact; with :data:`NO_METER`
    resources no latency term either)."""
    config = settings.config
    config = dataclasses.replace(config, deploy=dataclasses.replace(config.deploy, export=False))
    return with_search(dataclasses.replace(settings, config=config), **search)


def without_meter(resources: Resources) -> Resources:
    """The same scratch folder, no latency measurement (pruning-only rewards)."""
    return dataclasses.replace(resources, meter=None, baseline_artifact=None)


def torch_pruning(
    task: Task,
    budget: int,
    *,
    global_pruning: bool,
    round_to: int | None,
    max_ratio: float,
    calibration: Sequence,
    calibration_samples: int,
) -> tuple[nn.Module, float]:
    """:func:`torch_pruning_at_budget`, then BatchNorm statistics re-estimated on the same
    calibration batches as every other method."""
    model, ratio = torch_pruning_at_budget(
        task, budget, global_pruning=global_pruning, round_to=round_to, max_ratio=max_ratio
    )
    recalibrate_batchnorm(model, calibration, calibration_samples)
    return model, ratio


def torch_pruning_at_budget(
    task: Task,
    budget: int,
    *,
    global_pruning: bool = False,
    round_to: int | None = None,
    max_ratio: float = 1.0,
) -> tuple[nn.Module, float]:
    """torch-pruning's own pruner (``tp.pruner.MagnitudePruner``, L2 group magnitude),
    uniform or global, its ``pruning_ratio`` bisected to the FLOPs budget; BatchNorm
    statistics left as pruning leaves them."""

    def pruned_at(ratio: float) -> nn.Module:
        model = copy.deepcopy(task.model).eval()
        pruner = tp.pruner.MagnitudePruner(
            model,
            task.example_inputs[0],
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=ratio,
            global_pruning=global_pruning,
            max_pruning_ratio=max_ratio,
            ignored_layers=[model.get_submodule(n) for n in task.ignored_layers],
            round_to=round_to,
        )
        pruner.step()
        return model

    low, high = 0.0, 0.95
    for _ in range(12):
        middle = (low + high) / 2
        if count_flops(pruned_at(middle), task.example_inputs) <= budget:
            high = middle
        else:
            low = middle
    return pruned_at(high), high


def reward_curve(study: optuna.Study) -> list[float | None]:
    """Best feasible reward after each finished trial (None until the first feasible one);
    seeded plans still queued when the budget ran out are not trials."""
    best, curve = None, []
    for trial in finished_trials(study):
        if is_feasible(trial):
            best = trial_reward(trial) if best is None else max(best, trial_reward(trial))
        curve.append(best)
    return curve


def pareto_front(study: optuna.Study) -> dict:
    """A multi-objective study's Pareto front (``study.best_trials``: the feasible trials no
    feasible trial dominates) and R's best on it, which is R's best overall.

    R rises with accuracy and falls with FLOPs (``soft``: accuracy x (FLOPs / target)^w,
    w < 0), so a trial dominating the best-R trial would have an R at least as high: the
    front holds a best-R trial. Raises RuntimeError for a study where it does not (a reward
    with a latency term, say, which these objectives do not see).
    """
    front = study.best_trials
    best = max((trial_reward(t) for t in finished_trials(study) if is_feasible(t)), default=None)
    front_best = max((trial_reward(t) for t in front), default=None)
    if front_best != best:
        raise RuntimeError(f"best R {best} is not on the Pareto front (best there {front_best})")
    return {"front_size": len(front), "front_trials": sorted(t.number for t in front)}


def is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """Finished and within every budget."""
    return trial.state == optuna.trial.TrialState.COMPLETE and bool(
        trial.user_attrs.get("feasible")
    )


def trial_reward(trial: optuna.trial.FrozenTrial) -> float:
    """R: the trial's value, or in a multi-objective study its ``reward`` attribute."""
    return trial.value if len(trial.values) == 1 else trial.user_attrs["reward"]


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trials that ran (complete, pruned or failed), not those still queued, in
    trial-number order."""
    return sorted((t for t in study.trials if t.state.is_finished()), key=lambda t: t.number)


def _in_memory_copy(study: optuna.Study) -> optuna.Study:
    copy_ = optuna.create_study(directions=study.directions)
    copy_.add_trials(study.trials)
    return copy_
