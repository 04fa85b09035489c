"""``compress worker``: join a study that ``compress`` started and run its trials.

A worker needs only the storage URL and the study's name: the study's manifest (see
:mod:`compressor.search.storage`) holds the config, the task and the baseline. The worker
rebuilds the task (the same model and data paths must be reachable on its machine), checks
that its model's weights are the study's, times the baseline artifact on its own machine
(every candidate's latency is a ratio to it) and runs trials until the study's budget is
spent. It writes nothing but trials; ``compress`` materialises the best one from the storage
(the trial's parameters rebuild the plan, so no artifact has to travel).
"""

from __future__ import annotations

import dataclasses

import optuna

from compressor import pipeline
from compressor.config import CompressConfig
from compressor.credentials import StorageUrl
from compressor.errors import UserInputError
from compressor.logs import LOGGER, console_output
from compressor.search.context import measuring, search_settings
from compressor.search.samplers import make_sampler
from compressor.search.seeds import study_budget
from compressor.search.storage import (
    model_fingerprint,
    open_storage,
    record_worker,
    wait_for_study,
    worker_id,
    worker_info,
)
from compressor.tasks import Task, get_task, task_names


def run_worker(
    storage: str,
    study: str = "compress",
    *,
    task: Task | None = None,
    threads: int | None = None,
    wait: float = 600.0,
    verbose: bool = True,
) -> int:
    """Run trials of ``study`` in ``storage`` until its budget is spent; returns how many
    this worker scored.

    Args:
        storage: the study's Optuna RDB URL (``postgresql://user@host/db``, ``sqlite:///...``);
            the password, if not in the URL, comes from ``PGPASSWORD`` or ``~/.pgpass`` (the
            study records none).
        study: the study's name (``--study`` of the ``compress`` run that started it).
        task: the task, for a study started from Python with a model of your own (built-in
            tasks are rebuilt from the study's record).
        threads: intra-op threads for this worker (latency measurement and its own torch
            work); default: the study's ``measure.threads``.
        wait: seconds to wait for the study to be created and ready.
        verbose: print a line per trial.
    """
    url = StorageUrl(storage)  # connects with what it was given, never with a masked ***
    with console_output(verbose):
        manifest = wait_for_study(url.connect, study, wait)
        config = _worker_config(manifest, url, threads)
        task = task or _rebuild_task(manifest, config, verbose)
        _check_same_model(task, manifest)
        baseline = manifest["baseline"]
        settings = search_settings(
            task, config, baseline["flops"], baseline_accuracy=baseline.get("val_accuracy")
        )
        search = config.search
        shared = optuna.load_study(
            study_name=study,
            storage=open_storage(url.connect),
            # The study's seed: each trial's sampler is seeded from (seed, trial number), and
            # trial numbers are unique across workers, so workers do not draw the same plans.
            sampler=make_sampler(search.sampler, search.seed, search.trials),
        )
        record_worker(shared, worker_info(config.measure, "worker"))
        budget = study_budget(settings)
        LOGGER.info(f"worker {worker_id()} joined study {study!r} (budget {budget} trials)")
        with measuring(settings) as resources:
            return pipeline.search(shared, settings, resources, progress=verbose)


def _worker_config(manifest: dict, storage: StorageUrl, threads: int | None) -> CompressConfig:
    config = CompressConfig.from_dict(manifest["config"])
    measure = config.measure
    if threads is not None:
        measure = dataclasses.replace(measure, threads=threads)
    return dataclasses.replace(
        config, search=dataclasses.replace(config.search, storage=storage), measure=measure
    )


def _rebuild_task(manifest: dict, config: CompressConfig, verbose: bool) -> Task:
    name = manifest["task"]
    if name not in task_names():
        raise UserInputError(
            f"the study was started from Python with a task of its own ({name!r}); a worker "
            "rebuilds only built-in tasks: call compressor.worker.run_worker(..., task=...) "
            "with the same model, data and metric instead"
        )
    return get_task(name, verbose=verbose, **config.task_options())


def _check_same_model(task: Task, manifest: dict) -> None:
    here, study = model_fingerprint(task.model), manifest["model_fingerprint"]
    if here != study:
        raise UserInputError(
            f"this worker's model is not the study's (weights fingerprint {here}, the study's "
            f"{study}): give every worker the same model files (for the built-in digits tasks, "
            "the same $COMPRESSOR_CACHE)"
        )
