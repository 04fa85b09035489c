"""The Python entry point: ``compress(model, example_inputs, evaluate, *, ...)``.

The CLI builds the same :class:`CompressConfig` and calls :func:`run_task`; both end in
:func:`run_compression`, which wires the task, the search, recovery and the outputs together.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import optuna
import torch
import yaml
from torch import nn

from compressor.actions.pruner import check_prunable
from compressor.artifacts import atomic_path, save_model, write_json
from compressor.config import (
    CompressConfig,
    parse_accuracy_drop,
    parse_flops_target,
    parse_latency_target,
)
from compressor.deployment import artifact_table, deploy_best
from compressor.distill import recover_model
from compressor.environment import environment_info
from compressor.errors import CompressorError, UserInputError
from compressor.measure.flops import count_flops, count_params
from compressor.measure.latency import default_threads
from compressor.progress import progress_mode
from compressor.report import save_run_info, write_report
from compressor.result import CompressionResult, trial_record, worker_summary
from compressor.run_folder import check_output_dir, clear_run_files
from compressor.search.budget import reported_trials
from compressor.search.candidate import (
    SearchContext,
    build_candidate,
    checked_metric,
)
from compressor.search.loop import best_feasible_trial, make_sampler, run_study
from compressor.search.progress import TrialProgress
from compressor.search.seeds import (
    REFERENCE_ATTR,
    measure_sensitivity,
    reference_params,
    seed_params,
    study_budget,
)
from compressor.search.setup import check_reachable, measuring, search_context
from compressor.search.storage import (
    check_study,
    discard_study,
    make_manifest,
    open_study,
    publish_manifest,
    record_worker,
    storage_url,
    worker_info,
    worker_machines,
)
from compressor.tasks import Task, get_task


def compress(
    model: nn.Module,
    example_inputs: Sequence[torch.Tensor] | torch.Tensor,
    evaluate: Callable[[nn.Module], float],
    *,
    train_data: Iterable,
    calibration_data: Iterable | None = None,
    target_flops: float | str | None = None,
    target_latency: float | str | None = None,
    max_accuracy_drop: float | None = None,
    trials: int | None = None,
    time_budget: float | None = None,
    seed: int | None = None,
    output_dir: str | Path | None = None,
    test_evaluate: Callable[[nn.Module], float] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ignored_layers: Sequence[str] | None = None,
    config: CompressConfig | None = None,
    existing: str = "auto",
    verbose: bool = True,
    pruner=None,
    recover: Callable[..., nn.Module] | None = None,
) -> CompressionResult:
    """Search for the best compressed variant of ``model`` within a FLOPs budget.

    Args:
        model: the trained model; it is never modified (variants are pruned copies).
        example_inputs: a tensor or tuple of tensors of the deployment shape (batch 1).
        evaluate: ``evaluate(model) -> float``, the accuracy metric on validation data, in
            [0, 1], higher is better. Used to score every candidate.
        calibration_data: fixed batches for BatchNorm and INT8 calibration (default: the
            first batches of ``train_data``; pass an unshuffled loader for repeatable runs).
        train_data: re-iterable ``(inputs, labels)`` batches (e.g. a DataLoader), used to
            re-estimate BatchNorm statistics and to fine-tune the chosen variant.
        target_flops: a ratio of the original FLOPs (0 < x <= 1) or a count (``"12M"``).
        target_latency: a latency budget for the artifact: a ratio of the fp32 baseline
            artifact's latency (``0.5``) or milliseconds (``"2.5ms"``).
        max_accuracy_drop: points (``1.0`` = one point of a percent metric): choose the
            fastest variant whose validation metric is within this of the baseline's. Alone
            (no ``target_flops`` / ``target_latency``) the FLOPs level is searched.
        trials: number of candidates to score.
        time_budget: seconds; the search stops at whichever of trials / time comes first.
        seed: makes the sampled plans reproducible.
        output_dir: where model, result.json and the study go (default ``runs/<timestamp>``).
        test_evaluate: the metric on held-out data for the final report (default: evaluate).
        loss_fn: recovery loss (default cross-entropy on ``labels``).
        ignored_layers: module names never pruned (default: the last Linear, the classifier).
        config: a full :class:`CompressConfig`; the keyword arguments above override it.
        existing: an output folder holding a run is continued if its config matches
            (``auto``), continued with this config (``resume``) or started over (``overwrite``).
        verbose: print progress.
        pruner: your own pruning method (``groups()`` + ``prune(model, ratios)``, see
            :class:`compressor.actions.pruner.Pruner`), e.g. ``TransformerPruner(model)`` for
            attention heads and FFN neurons; default: torch-pruning channel groups.
        recover: ``recover(student, teacher, recovery_config, progress) -> model`` replacing
            the configured recovery (e.g. :func:`compressor.distill.embedding_recovery`).
    """
    config = _with_overrides(
        config or CompressConfig(),
        target_flops=target_flops,
        trials=trials,
        time_budget=time_budget,
        seed=seed,
        output_dir=output_dir,
    )
    if target_latency is not None:
        config = dataclasses.replace(config, target_latency=parse_latency_target(target_latency))
    if max_accuracy_drop is not None:
        alone = target_flops is None and target_latency is None
        config = dataclasses.replace(
            config,
            max_accuracy_drop=parse_accuracy_drop(max_accuracy_drop),
            target_flops=None if alone else config.target_flops,
        )
    inputs = (
        (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    )
    task = Task(
        name="custom",
        model=model,
        example_inputs=inputs,
        evaluate=evaluate,
        evaluate_test=test_evaluate or evaluate,
        train_data=train_data,
        calibration_data=calibration_data,
        loss_fn=loss_fn or nn.functional.cross_entropy,
        ignored_layers=tuple(ignored_layers)
        if ignored_layers is not None
        else default_ignored_layers(model),
        pruner=pruner,
        recover=recover,
    )
    return run_compression(task, config, verbose=verbose, existing=existing)


def run_task(
    config: CompressConfig, verbose: bool = True, existing: str = "auto"
) -> CompressionResult:
    """Run a built-in task (``config.task``), as the CLI does.

    ``existing`` says what to do with an output folder that holds a run: ``auto`` continues
    it if the config is the same (refuses otherwise), ``resume`` continues it with this
    config, ``overwrite`` starts over.
    """
    # Check the cheap things before the task builds (and maybe trains) its model.
    output, _ = check_output_dir(config.output, config, existing)
    check_study(config, existing)
    config = dataclasses.replace(config, output=output)
    _check_device(config.measure.device)
    task = get_task(config.task, verbose=verbose, **config.task_options())
    return run_compression(task, config, verbose=verbose, existing=existing)


def default_ignored_layers(model: nn.Module) -> tuple[str, ...]:
    """The classifier: the last ``nn.Linear`` registered in the model, if any."""
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return (linears[-1],) if linears else ()


def run_compression(
    task: Task, config: CompressConfig, verbose: bool = True, existing: str = "auto"
) -> CompressionResult:
    """Baseline -> search -> rebuild the best plan -> recovery -> outputs."""
    log = print if verbose else (lambda *args, **kwargs: None)
    output_dir, resuming = check_output_dir(config.output, config, existing)
    check_study(config, existing)
    _check_device(config.measure.device)
    model = task.model.eval()

    baseline = _measure_baseline(task)
    ctx = search_context(task, config, baseline["flops"], baseline["val_accuracy"])
    budget = ctx.flops_budget
    check_prunable(ctx.pruner, model, task.example_inputs, ctx.groups)
    uniform = check_reachable(ctx, budget)
    target = _target_record(config, budget, baseline["flops"], uniform)
    log(
        f"baseline: val {baseline['val_accuracy']:.2%}  test {baseline['accuracy']:.2%}  "
        f"FLOPs {baseline['flops'] / 1e6:.1f}M  params {baseline['params'] / 1e3:.1f}K  "
        f"{len(ctx.groups)} prunable groups; target FLOPs <= {budget / 1e6:.1f}M"
    )

    if existing == "overwrite":
        clear_run_files(output_dir)
        discard_study(config)
    if resuming:
        log(f"continuing the run in {output_dir}")
    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(output_dir / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    threads = config.measure.threads or default_threads()
    environment = {
        "task": task.name,
        "task_description": task.description,
        **environment_info(config.measure.device, threads),
    }
    # What the report of an interrupted run (no result.json yet) needs besides the trials.
    run_info = {
        "baseline": baseline,
        "target": target,
        "channels_before": {group.name: group.channels for group in ctx.groups},
        "environment": environment,
    }
    manifest = make_manifest(task.name, config, baseline, model)
    # The study is seeded and published before this process times anything, so workers
    # that wait for it set up while this process does.
    study = _start_study(ctx, output_dir, baseline["val_accuracy"], log, manifest, run_info)
    with measuring(ctx, task.example_inputs) as baseline_artifact:
        _search(study, ctx, log)
        best_trial = best_feasible_trial(study, fastest=config.max_accuracy_drop is not None)
        if best_trial is None:
            raise CompressorError(
                f"no trial met the FLOPs target ({budget / 1e6:.2f}M)"
                + (
                    f" and the accuracy floor (-{config.max_accuracy_drop:g} pt)"
                    if config.max_accuracy_drop is not None
                    else ""
                )
                + " within the budget; raise --trials or loosen the targets"
            )
        ratios = best_trial.user_attrs["ratios"]
        removed = best_trial.user_attrs.get("removed_units", [])
        log(f"best plan: trial #{best_trial.number}, R {best_trial.value:.4f}; recovering ...")
        best_model, kept = build_candidate(ctx, ratios, removed)
        before = checked_metric(task.evaluate_test(best_model))
        best_model = recover_model(
            task, best_model, config.recovery, progress=verbose, depth_pruned=bool(removed)
        )
        deployed = (
            deploy_best(ctx, task, best_model, best_trial.params, baseline_artifact, output_dir)
            if baseline_artifact
            else {}
        )
        latency = ctx.meter.compare(
            deployed["path"] if deployed else best_model, rounds=3 * config.measure.rounds
        )

    baseline.update(latency_ms=latency.baseline.p50_ms, latency_p90_ms=latency.baseline.p90_ms)
    fp32_accuracy = checked_metric(task.evaluate_test(best_model))
    best = {
        "accuracy": deployed.get("accuracy", fp32_accuracy),
        "accuracy_before_recovery": before,
        "val_accuracy": (
            deployed["val_accuracy"] if deployed else checked_metric(task.evaluate(best_model))
        ),
        "val_accuracy_before_recovery": best_trial.user_attrs["accuracy"],
        "flops": count_flops(best_model, task.example_inputs),
        "params": count_params(best_model),
        "latency_ms": latency.candidate.p50_ms,
        "latency_p90_ms": latency.candidate.p90_ms,
        "latency_ratio": latency.ratio,
        "reward": best_trial.value,
        "trial": best_trial.number,
        "plan": {
            "ratios": ratios,
            "channels": kept,
            "channels_before": run_info["channels_before"],
            "removed_units": removed,
            "depth_units": [unit.name for unit in ctx.depth_units],
            "importance": config.prune.importance,
            "round_to": config.prune.round_to,
        },
        "recovery": dataclasses.asdict(config.recovery),
    }
    artifacts = {}
    if deployed:
        best.update(accuracy_fp32=fp32_accuracy, **deployed["best"])
        artifacts = artifact_table(deployed, latency)
    trials = [trial_record(t) for t in reported_trials(study.trials)]
    result = CompressionResult(
        model=best_model,
        baseline=baseline,
        best=best,
        target=target,
        trials=trials,
        environment=environment,
        output_dir=output_dir,
        artifacts=artifacts,
        workers=worker_summary(trials, worker_machines(study)),
    )
    save_model(best_model, output_dir / "model.safetensors", removed)
    write_json(output_dir / "result.json", result.to_json())
    # Rendered from the files just written, exactly as `compress report` re-renders it.
    result.report = write_report(output_dir).html
    return result


def _target_record(config: CompressConfig, budget: int, baseline_flops: int, uniform: float):
    """The targets and reward parameters, as result.json and the report state them."""
    return {
        "flops": budget,
        "flops_ratio": budget / baseline_flops,
        "spec": str(config.target_flops),
        "reward": config.search.reward,
        "alpha": config.search.alpha,
        "beta": config.search.beta,
        "uniform_ratio": uniform,
        "latency": str(config.target_latency) if config.target_latency else None,
        "max_accuracy_drop": config.max_accuracy_drop,
    }


def _start_study(
    ctx: SearchContext,
    output_dir: Path,
    baseline_val_accuracy: float,
    log,
    manifest: dict,
    run_info: dict,
) -> optuna.Study:
    """The study, created (and seeded) or continued; published for workers to join."""
    search = ctx.config.search
    study = open_study(
        storage_url(ctx.config, output_dir),
        search.study,
        make_sampler(search.sampler, search.seed, search.trials),
    )
    save_run_info(study, **run_info)
    if not study.trials:
        # Seed the sampler with two known plans at the budget: uniform (so the search can
        # only improve on it) and the sensitivity allocation (a strong prior to refine).
        # The uniform plan is tried once with every quantization mode, so each mode is
        # measured on the same plan before the sampler starts preferring some.
        # Then the depth seeds and the reference pipelines (compressor/search/seeds.py).
        sensitivity = measure_sensitivity(ctx, baseline_val_accuracy, log)
        for params in seed_params(ctx, sensitivity):
            study.enqueue_trial(params)
        for name, params in reference_params(ctx):
            study.enqueue_trial(params, user_attrs={REFERENCE_ATTR: name})
    # Waiting workers start now, with the seeded plans queued first (the lowest trial
    # numbers, so always within the budget). A continued study gets the current config.
    publish_manifest(study, manifest)
    record_worker(study, worker_info(ctx.config.measure, "compress"))
    return study


def _search(study: optuna.Study, ctx: SearchContext, log) -> None:
    search = ctx.config.search
    budget = study_budget(ctx)
    with TrialProgress(study, budget, progress_mode(log is print)) as progress:
        run_study(study, ctx, budget, search.time_budget, progress)


def _measure_baseline(task: Task) -> dict:
    started = time.perf_counter()
    model = task.model.eval()
    baseline = {
        "accuracy": _user_metric(task.evaluate_test, model),
        "val_accuracy": _user_metric(task.evaluate, model),
        "flops": count_flops(model, task.example_inputs),
        "params": count_params(model),
    }
    baseline["evaluate_seconds"] = time.perf_counter() - started
    return baseline


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


def _check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise UserInputError(
            "--device cuda was requested but CUDA is not available here; use --device cpu"
        )


def _with_overrides(
    config: CompressConfig, *, target_flops, trials, time_budget, seed, output_dir
) -> CompressConfig:
    search = dataclasses.replace(
        config.search,
        **{
            k: v
            for k, v in (("trials", trials), ("time_budget", time_budget), ("seed", seed))
            if v is not None
        },
    )
    return dataclasses.replace(
        config,
        search=search,
        target_flops=(
            parse_flops_target(target_flops) if target_flops is not None else config.target_flops
        ),
        output=Path(output_dir) if output_dir is not None else config.output,
    )
