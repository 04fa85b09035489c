"""Where the study lives, and what it records so that other processes can join it.

The Optuna study is the search's whole state. It is stored through Optuna's relational
storage (``optuna.storages.RDBStorage``, SQLAlchemy underneath): SQLite in the output folder
by default, or any URL SQLAlchemy understands (``postgresql://user@host/db``), which lets
``compress worker`` processes on other machines run trials of the same study.

Every process writes a heartbeat for its running trial; a trial whose process died is failed
by the next process that looks (``optuna.storages.fail_stale_trials``) and queued again with
the same parameters (``RetryHeartbeatStaleTrialCallback``). Optuna reads the database's clock
for both sides of that comparison, so the machines' clocks need not agree.

The study's *manifest* (a study user attribute, written once the seeded trials are queued)
holds what a worker needs besides the storage URL: the config, the task's registry name, the
baseline measurements and a fingerprint of the model's weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import os
import socket
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import optuna
import sqlalchemy.exc
import torch
from optuna.trial import TrialState
from torch import nn

from compressor.config import CompressConfig, MeasureConfig
from compressor.credentials import mask
from compressor.environment import cpu_model
from compressor.errors import UserInputError, one_line
from compressor.logs import LOGGER
from compressor.measure.latency import default_threads
from compressor.records import Baseline
from compressor.run_folder import config_difference

MANIFEST_KEY = "compressor:manifest"
WORKER_KEY = "compressor:worker:"  # + worker id: the machine a worker measured on
# A process writes a heartbeat this often; a RUNNING trial silent for GRACE seconds belongs to
# a process that died: it is failed and queued again (at most MAX_RETRIES times).
HEARTBEAT_SECONDS = 2
GRACE_SECONDS = 6
MAX_RETRIES = 2
SCHEMA_ATTEMPTS = 8  # opening a fresh database another process is creating (see _lost_schema_race)


def worker_id() -> str:
    """``hostname:pid``: names the process (and machine) that ran and timed a trial."""
    return f"{socket.gethostname()}:{os.getpid()}"


def storage_url(config: CompressConfig, output_dir: Path) -> str:
    """The URL to connect to: ``search.storage``, or SQLite in the output folder (the
    default)."""
    if config.search.storage:
        return config.search.storage.connect
    return f"sqlite:///{(Path(output_dir) / 'study.db').resolve()}"


class StorageUnavailable(UserInputError):
    """The database could not be reached or read (a worker waiting for it tries again)."""


@contextlib.contextmanager
def _opening(url: str) -> Iterator[None]:
    """Turn what opening a database raises into one line for the user."""
    try:
        yield
    except ModuleNotFoundError as exc:
        raise UserInputError(
            f"storage {mask(url)}: its database driver is not installed ({exc}); for "
            "PostgreSQL install the postgres extra: pip install 'compressor[postgres]'"
        ) from None
    except Exception as exc:  # SQLAlchemy: bad URL, unreachable server, wrong password
        # SQLAlchemy's messages may quote the URL (e.g. one it cannot parse): masked too.
        raise StorageUnavailable(mask(f"storage {url} cannot be opened: {one_line(exc)}")) from None


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The RDB storage at ``url`` with heartbeats and stale-trial retry (Optuna creates its
    tables there if they are missing).

    Raises :class:`UserInputError` (one line) when the driver is missing, the URL is wrong or
    the database cannot be reached.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # SQLite: wait for another process's write instead of failing at once ("database is
    # locked"); servers: check pooled connections before use (idle ones get dropped).
    sqlite = url.startswith("sqlite")
    engine = {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}
    with _opening(url), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        attempt = 1
        while True:
            try:
                return _new_storage(url, engine)
            except Exception as exc:
                if attempt == SCHEMA_ATTEMPTS or not _lost_schema_race(exc):
                    raise
                time.sleep(0.05 * attempt)
                attempt += 1


def _new_storage(url: str, engine: dict) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs=engine,
        heartbeat_interval=HEARTBEAT_SECONDS,
        grace_period=GRACE_SECONDS,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=MAX_RETRIES
        ),
    )


def _lost_schema_race(exc: Exception) -> bool:
    """Whether ``exc`` is another process creating the same tables at the same moment.

    ``RDBStorage`` creates its tables and stamps the schema version when they are missing, and
    that check-then-create is not atomic: two processes opening a fresh database together
    (workers starting at once, or a reader polling a run that is starting) see "table already
    exists" or a duplicate ``alembic_version`` row. Once the winner has committed, opening
    again finds the tables and creates nothing.
    """
    return isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in str(exc).lower()


def holds_studies(url: str) -> bool:
    """Whether ``url`` already holds Optuna's tables, found without creating anything:
    opening the storage would create them (and a SQLite file), which is `compress`'s job.
    Two processes creating them at once collide on PostgreSQL."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url

    with _opening(url):
        parsed = make_url(url)
        database = parsed.database or ""
        if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:"):
            return Path(database).exists() and Path(database).stat().st_size > 0
        engine = create_engine(parsed)
        try:
            return inspect(engine).has_table("studies")  # Optuna's table of studies
        finally:
            engine.dispose()


def open_study(
    url: str,
    name: str,
    sampler: optuna.samplers.BaseSampler,
    directions: Sequence[str] = ("maximize",),
) -> optuna.Study:
    """The study ``name`` at ``url``, created if it does not exist; ``directions``: one per
    objective (the search maximises R; B3's front row is multi-objective)."""
    return optuna.create_study(
        study_name=name,
        storage=open_storage(url),
        sampler=sampler,
        directions=list(directions),
        load_if_exists=True,
    )


def existing_study(url: str, name: str) -> optuna.Study | None:
    """The study ``name`` at ``url`` if it exists (its sampler unused), else None."""
    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:  # Optuna's answer for a study name the storage does not hold
        return None


def check_study(config: CompressConfig, existing: str) -> None:
    """Refuse to continue a study in a shared storage that was started with another config.

    The default storage lives in the output folder, where ``check_output_dir`` already made
    that decision. ``resume`` continues with the new config, ``overwrite`` starts over.
    """
    storage = config.search.storage
    if storage is None or existing != "auto":
        return
    study = existing_study(storage.connect, config.search.study)
    manifest = read_manifest(study) if study is not None else None
    if manifest is None:
        return
    saved = manifest["config"]
    difference = config_difference(saved, shared_config(config))
    if difference:
        raise UserInputError(
            f"study {config.search.study!r} in {storage} was started "
            f"with a different config ({difference}); pass --resume to continue it with the "
            "new settings, --overwrite to start over, or choose another --study"
        )


def discard_study(config: CompressConfig) -> None:
    """``--overwrite`` with a shared storage: delete the study there (SQLite in the output
    folder goes with the folder's files)."""
    storage = config.search.storage
    if storage is not None and existing_study(storage.connect, config.search.study):
        optuna.delete_study(study_name=config.search.study, storage=storage.connect)


def shared_config(config: CompressConfig) -> CompressConfig:
    """The config as the study records it: no output folder, no storage URL (it may hold a
    password, and every process already knows it)."""
    return dataclasses.replace(
        config, output=None, search=dataclasses.replace(config.search, storage=None)
    )


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the state dict (names and raw bytes): workers must prune the same weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        digest.update(raw.numpy().tobytes())
    return digest.hexdigest()[:16]


def make_manifest(task_name: str, config: CompressConfig, baseline: Baseline, model) -> dict:
    """What a worker needs to run this study's trials, as plain JSON data."""
    return {
        "task": task_name,
        "config": shared_config(config).to_dict(),
        "baseline": {
            "flops": baseline.flops,
            "params": baseline.params,
            "val_accuracy": baseline.val_accuracy,
            "accuracy": baseline.accuracy,
        },
        "model_fingerprint": model_fingerprint(model),
    }


def publish_manifest(study: optuna.Study, manifest: dict) -> None:
    """Record the manifest; workers waiting for the study start once it is there.

    It holds no storage URL (see :func:`shared_config`), and is masked all the same: a
    worker takes the password from its own ``--storage`` or ``PGPASSWORD``, never from here.
    """
    study.set_user_attr(MANIFEST_KEY, mask(manifest))


def read_manifest(study: optuna.Study) -> dict | None:
    return study.user_attrs.get(MANIFEST_KEY)


def wait_for_study(url: str, name: str, timeout: float) -> dict:
    """The study's manifest, waiting up to ``timeout`` seconds for ``compress`` to create
    the study and publish it (workers may start first, e.g. as pods of one Kubernetes Job).

    A storage that cannot be opened is retried within the same time (the database server
    may be starting too); the last reason is reported when time runs out.
    """
    deadline = time.monotonic() + timeout
    said = False
    while True:
        try:
            study = existing_study(url, name) if holds_studies(url) else None
            manifest = read_manifest(study) if study is not None else None
            if manifest is not None:
                return manifest
            reason = "it does not exist yet" if study is None else "it is not ready yet"
        except StorageUnavailable as exc:  # the server may be starting too
            reason = str(exc)
        if time.monotonic() >= deadline:
            raise UserInputError(
                f"study {name!r} in {mask(url)} was not ready within {timeout:g} s ({reason});"
                " start it with `compress --storage URL --study NAME ...`"
            )
        if not said:
            LOGGER.info(f"waiting for study {name!r} in {mask(url)}: {reason}")
            said = True
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def worker_info(measure: MeasureConfig, role: str) -> dict:
    """The machine and settings this process times candidates with."""
    return {
        "role": role,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": measure.threads or default_threads(),
        "device": measure.device,
        "joined": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def record_worker(study: optuna.Study, info: dict) -> None:
    """Record ``info`` (see :func:`worker_info`) under this process's worker id."""
    study.set_user_attr(WORKER_KEY + worker_id(), info)


def worker_machines(study: optuna.Study) -> dict[str, dict]:
    """What :func:`record_worker` stored, per worker id (see ``result.worker_summary``)."""
    return {
        key[len(WORKER_KEY) :]: value
        for key, value in study.user_attrs.items()
        if key.startswith(WORKER_KEY)
    }


def fail_dead_trials(study: optuna.Study) -> None:
    """Mark FAIL the RUNNING trials whose process died.

    Optuna's ``fail_stale_trials`` (the heavy lifting) fails trials whose heartbeat went
    stale, but skips a trial that never wrote one: a process killed between ``study.ask()``
    and its heartbeat thread's first beat leaves a RUNNING trial that would never be failed
    (and would hold its share of the budget forever). A live process beats within
    milliseconds of asking, so a trial older than the grace period without a beat is dead.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    storage = rdb_storage(study)
    if storage is None:
        return  # no heartbeats to judge by
    cutoff = datetime.datetime.now() - datetime.timedelta(seconds=GRACE_SECONDS)
    beaten = trials_with_heartbeat(storage)
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        if trial_id in beaten or trial.datetime_start is None or trial.datetime_start >= cutoff:
            continue
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                # As fail_stale_trials does: e.g. a retry callback queues it again.
                stale_callback = storage.get_heartbeat_stale_trial_callback()
                if stale_callback is not None:
                    stale_callback(study, storage.get_trial(trial_id))


# The two Optuna internals the shared budget relies on (tests/test_optuna_internals.py fails
# with a clear message if an Optuna release changes them): a study's storage, and the table
# of heartbeats. Everything else here is Optuna's public API.
def rdb_storage(study: optuna.Study) -> optuna.storages.RDBStorage | None:
    """The relational storage behind ``study`` (Optuna wraps it in ``_CachedStorage``)."""
    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


def trials_with_heartbeat(storage: optuna.storages.RDBStorage) -> set[int]:
    """Ids of the trials that have written a heartbeat."""
    # Optuna has no public "has this trial ever beaten"; its heartbeat table is the record.
    from optuna.storages._rdb import models

    session = storage.scoped_session()
    try:
        return {trial_id for (trial_id,) in session.query(models.TrialHeartbeatModel.trial_id)}
    finally:
        storage.scoped_session.remove()
