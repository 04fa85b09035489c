"""The methods a benchmark compares: our search (variants) and torch-pruning's own pruners.

Our search is driven here with compressor's own pieces (``SearchContext``, the Optuna study
of ``search/loop.py``, the seeds of ``api._search``) rather than through ``run_compression``,
so that several searches in one benchmark share one sensitivity pass and one baseline
evaluation, and spend exactly the same trial budget.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import optuna
import torch_pruning as tp
from torch import nn

from compressor.config import CompressConfig
from compressor.measure.flops import count_flops
from compressor.progress import progress_mode
from compressor.recover import recalibrate_batchnorm
from compressor.search import setup
from compressor.search.candidate import SearchContext, build_candidate
from compressor.search.loop import best_feasible_trial, make_sampler, run_study
from compressor.search.progress import TrialProgress
from compressor.search.seeds import (
    REFERENCE_ATTR,
    Sensitivity,
    measure_sensitivity,
    reference_params,
    seed_params,
)
from compressor.search.storage import open_study
from compressor.tasks import Task


def search_context(task: Task, config: CompressConfig) -> SearchContext:
    """The context ``compress`` builds (budget, pruner, fixed calibration batches)."""
    model = task.model.eval()
    baseline_accuracy = task.evaluate(model) if config.max_accuracy_drop is not None else None
    return setup.search_context(
        task, config, count_flops(model, task.example_inputs), baseline_accuracy
    )


def sensitivity_params(ctx: SearchContext) -> Sensitivity:
    """The sensitivity seeds' preferences (one evaluation per group and per depth unit),
    computed once."""
    return measure_sensitivity(ctx, ctx.evaluate(ctx.model))


def run_search(
    ctx: SearchContext,
    *,
    trials: int,
    sampler: str = "tpe",
    seed: int = 0,
    seeds: Sensitivity | None = None,
    progress: bool = False,
) -> tuple[optuna.Study, float]:
    """One study of ``trials`` trials (seeded plans included); returns it and its seconds.

    ``seeds``: the sensitivity preferences; with them the study starts like ``compress``
    does (``compressor.search.seeds``: uniform per deployment mode, sensitivity, depth,
    then the reference pipelines when the config asks for them, run on top of ``trials``).
    Without, every trial comes from the sampler (B3 compares samplers alone).
    """
    search = ctx.config.search
    if seeds is not None:  # the reference pipelines run on top of the searched trials
        trials += len(reference_params(ctx))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-study-") as folder:
        url = f"sqlite:///{Path(folder) / 'study.db'}"
        study = open_study(url, "compress", make_sampler(sampler, seed, trials))
        if seeds is not None:
            for params in seed_params(ctx, seeds):
                study.enqueue_trial(params)
            for name, params in reference_params(ctx):
                study.enqueue_trial(params, user_attrs={REFERENCE_ATTR: name})
        with TrialProgress(study, trials, progress_mode(progress)) as report:
            run_study(study, ctx, trials, search.time_budget, report)
        # The storage closes with the folder; keep the finished trials in memory.
        study = _in_memory_copy(study)
    return study, time.perf_counter() - started


def best_model(
    ctx: SearchContext, study: optuna.Study
) -> tuple[nn.Module, optuna.trial.FrozenTrial]:
    """The best feasible trial's plan rebuilt (adaptive BN applied)."""
    best = best_feasible_trial(study, fastest=ctx.config.max_accuracy_drop is not None)
    if best is None:
        raise RuntimeError("no trial of the search met the FLOPs budget")
    model, _ = build_candidate(
        ctx, best.user_attrs["ratios"], best.user_attrs.get("removed_units", ())
    )
    return model, best


def prune_only(ctx: SearchContext, **search) -> SearchContext:
    """The context scoring plain pruned PyTorch models (no artifact, no latency term)."""
    config = copy.deepcopy(ctx.config)
    config.deploy.export = False
    config.search = dataclasses.replace(config.search, **search)
    return dataclasses.replace(ctx, config=config, meter=None, workdir=None)


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
    """Best feasible reward after each trial (None until the first feasible one)."""
    best, curve = None, []
    for trial in sorted(study.trials, key=lambda t: t.number):
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.user_attrs.get("feasible"):
            best = trial.value if best is None else max(best, trial.value)
        curve.append(best)
    return curve


def _in_memory_copy(study: optuna.Study) -> optuna.Study:
    copy_ = optuna.create_study(direction="maximize")
    copy_.add_trials(study.trials)
    return copy_
