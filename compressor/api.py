"""The Python entry point: ``compress(model, example_inputs, evaluate, *, ...)``.

The CLI builds the same :class:`CompressConfig` and calls :func:`run_task`; both end in
:func:`run_compression`, which runs the steps of :mod:`compressor.pipeline` in order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import optuna
import torch
from torch import nn

from compressor import pipeline
from compressor.config import (
    CompressConfig,
    parse_accuracy_drop,
    parse_flops_target,
    parse_latency_target,
)
from compressor.environment import environment_info
from compressor.errors import UserInputError
from compressor.logs import LOGGER, console_output
from compressor.measure.kernel_probes import OP_KINDS
from compressor.measure.kernel_widths import stored_kernel_widths
from compressor.measure.latency import default_threads
from compressor.records import Baseline, Target, to_json, trial_record, worker_summary
from compressor.report import save_run_info, write_report
from compressor.result import CompressionResult
from compressor.run_folder import check_output_dir, clear_run_files, write_config, write_json
from compressor.saved_model import save_model
from compressor.search.budget import reported_trials
from compressor.search.context import SearchSettings, excluded_records, measuring
from compressor.search.samplers import make_sampler
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
from compressor.tasks import Task, default_ignored_layers, get_task


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
    with console_output(verbose):
        task = get_task(config.task, verbose=verbose, **config.task_options())
    return run_compression(task, config, verbose=verbose, existing=existing)


def run_compression(
    task: Task, config: CompressConfig, verbose: bool = True, existing: str = "auto"
) -> CompressionResult:
    """Baseline -> search -> choose -> recover -> deploy -> outputs (see
    :mod:`compressor.pipeline`)."""
    with console_output(verbose):
        return _run(task, config, verbose, existing)


def _run(task: Task, config: CompressConfig, verbose: bool, existing: str) -> CompressionResult:
    output_dir, resuming = check_output_dir(config.output, config, existing)
    check_study(config, existing)
    _check_device(config.measure.device)
    baseline = pipeline.measure_baseline(task)
    settings, target = pipeline.prepare_search(task, config, baseline)
    LOGGER.info(
        f"baseline: val {baseline.val_accuracy:.2%}  test {baseline.accuracy:.2%}  "
        f"FLOPs {baseline.flops / 1e6:.1f}M  params {baseline.params / 1e3:.1f}K  "
        f"{len(settings.groups)} prunable groups; target FLOPs <= "
        f"{settings.flops_budget / 1e6:.1f}M"
    )
    if existing == "overwrite":
        clear_run_files(output_dir)
        discard_study(config)
    if resuming:
        LOGGER.info(f"continuing the run in {output_dir}")
    write_config(output_dir, config)
    threads = config.measure.threads or default_threads()
    environment = {
        "task": task.name,
        "task_description": task.description,
        **environment_info(config.measure.device, threads),
    }
    # {op: {mode: multiple}}, shown for each kind of layer measured; never measured here
    widths = {op: stored_kernel_widths(op) for op in OP_KINDS}
    if any(widths.values()):
        environment["kernel_widths"] = {op: w.multiples for op, w in widths.items() if w}
    # The study is seeded and published before this process times anything, so workers
    # that wait for it set up while this process does.
    study = _start_study(task, settings, baseline, target, environment, output_dir)
    with measuring(settings) as resources:
        pipeline.search(study, settings, resources, progress=verbose)
        trial, retimed = pipeline.choose(study, settings, resources)
        LOGGER.info(f"best plan: trial #{trial.number}, R {trial.value:.4f}; recovering ...")
        recovered = pipeline.recover(task, settings, trial, progress=verbose)
        deployed = (
            pipeline.deploy(settings, resources, task, recovered.model, trial.params, output_dir)
            if config.deploy.export
            else None
        )
        latency = pipeline.time_chosen(
            settings, resources, deployed.path if deployed else recovered.model
        )
    trials = [trial_record(t) for t in reported_trials(study.trials)]
    result = CompressionResult(
        model=recovered.model,
        baseline=dataclasses.replace(
            baseline,
            latency_ms=latency.baseline.p50_ms,
            latency_p90_ms=latency.baseline.p90_ms,
        ),
        best=pipeline.chosen_record(task, settings, trial, recovered, deployed, latency, retimed),
        target=target,
        trials=trials,
        environment=environment,
        output_dir=output_dir,
        artifacts=pipeline.artifact_files(deployed, latency) if deployed else {},
        workers=worker_summary(trials, worker_machines(study)),
    )
    save_model(recovered.model, output_dir / "model.safetensors", pipeline.removed_units_of(trial))
    write_json(output_dir / "result.json", result.to_json())
    # Rendered from the files just written, exactly as `compress report` re-renders it.
    result.report = write_report(output_dir).html
    return result


def _start_study(
    task: Task,
    settings: SearchSettings,
    baseline: Baseline,
    target: Target,
    environment: dict,
    output_dir: Path,
) -> optuna.Study:
    """The study, created (and seeded) or continued; published for workers to join."""
    config = settings.config
    search = config.search
    study = open_study(
        storage_url(config, output_dir),
        search.study,
        make_sampler(search.sampler, search.seed, search.trials),
    )
    # What the report of an interrupted run (no result.json yet) needs besides the trials.
    save_run_info(
        study,
        baseline=to_json(baseline),
        target=to_json(target),
        channels_before={group.name: group.channels for group in settings.groups},
        excluded_groups=excluded_records(settings),
        environment=environment,
    )
    pipeline.seed_study(
        study, settings, lambda: pipeline.sensitivity_seed(settings, baseline.val_accuracy)
    )
    # Waiting workers start now, with the seeded plans queued first (the lowest trial
    # numbers, so always within the budget). A continued study gets the current config.
    publish_manifest(study, make_manifest(task.name, config, baseline, task.model))
    record_worker(study, worker_info(config.measure, "compress"))
    return study


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
