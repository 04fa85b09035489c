"""The search loop: an Optuna study (stored in SQLite in the output folder) over plans."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from compressor.errors import CompressorError
from compressor.search.candidate import SearchContext, score_candidate
from compressor.search.space import suggest_deploy, suggest_flops_level, suggest_preferences

STUDY_NAME = "compress"
# A worker writes a heartbeat this often; a RUNNING trial silent for GRACE seconds belongs to
# a process that died, and Optuna marks it FAIL (its budget is spent again, see spent_trials).
HEARTBEAT_SECONDS = 2
GRACE_SECONDS = 6


def make_sampler(name: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """TPE (multivariate, feasibility-aware) or random sampling, seeded per trial.

    Each trial gets a fresh sampler seeded from ``(seed, trial number)`` (see
    :class:`PerTrialSeedSampler`), so a resumed run or a second worker draws what an
    uninterrupted single run would have drawn, given the same finished trials.
    """
    if name not in ("tpe", "random"):
        raise ValueError(f"unknown sampler {name!r}")
    return PerTrialSeedSampler(lambda trial_seed: _build_sampler(name, trial_seed, trials), seed)


def _build_sampler(name: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # TPE reads the trials' constraints (Trial.set_constraint) to tell feasible plans apart.
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, n_startup_trials=max(3, min(10, trials // 4))
        )


def trial_seed(seed: int, number: int) -> int:
    """Trial ``number``'s seed under run seed ``seed``, mixed by NumPy's ``SeedSequence``.

    ``seed + number`` would make run seeds 0 and 1 replay one stream shifted by a trial.
    """
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class PerTrialSeedSampler(optuna.samplers.BaseSampler):
    """An Optuna sampler rebuilt for every trial, seeded from ``(seed, trial.number)``.

    A seeded Optuna sampler keeps one random stream for its lifetime, so a process that is
    restarted (resume after a kill) or a second worker restarts that stream from the
    beginning and draws other parameters than one uninterrupted run. TPE and random sampling
    hold no other state between trials (TPE re-reads the history from the study), so a fresh
    sampler per trial, seeded by the trial number, makes each trial's parameters a function of
    the seed and the finished trials alone. Only the public sampler interface is used.
    """

    def __init__(self, build: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._build, self._seed = build, seed
        self._sampler = build(seed)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self._sampler = self._build(trial_seed(self._seed, trial.number))
        self._sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._sampler.reseed_rng()


def open_study(output_dir: Path, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """The study in ``output_dir/study.db`` (created, or continued if it exists)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(
            f"sqlite:///{(output_dir / 'study.db').resolve()}",
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
        )
    return optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage,
        sampler=sampler,
        direction="maximize",
        load_if_exists=True,
    )


def spent_trials(study: optuna.Study) -> int:
    """Trials that count against the budget: finished ones, and failures with a reason.

    A trial that was RUNNING when its process died fails without a recorded reason; it does
    not count, so a resumed run spends that budget again.
    """
    return sum(
        t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and "error" in t.user_attrs)
        for t in study.trials
    )


class Objective:
    """Optuna objective: sample a plan, score it, keep every metric on the trial."""

    def __init__(self, ctx: SearchContext) -> None:
        self.ctx = ctx

    def __call__(self, trial: optuna.Trial) -> float:
        ctx = self.ctx
        config = ctx.config
        if config.target_flops is None:  # only a latency target: the FLOPs level is searched
            level = suggest_flops_level(trial)
            ctx = dataclasses.replace(ctx, flops_budget=int(level * ctx.baseline_flops))
        preferences = suggest_preferences(trial, ctx.groups, config.prune)
        deploy = suggest_deploy(trial, config.deploy) if config.deploy.export else None
        try:
            with time_limit(config.search.trial_timeout):
                metrics = score_candidate(ctx, preferences, deploy)
        except Exception as exc:  # the trial fails with its reason; the study goes on
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        trial.set_constraint("flops", metrics["flops"] / ctx.flops_budget - 1.0)
        return metrics["reward"]


def run_study(
    study: optuna.Study,
    ctx: SearchContext,
    trials: int,
    time_budget: float | None,
    report: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None,
) -> None:
    """Run trials until ``trials`` count against the budget or ``time_budget`` runs out.

    Raises :class:`CompressorError` with a summary when too many trials fail in a row.
    """
    _fail_interrupted_trials(study)
    remaining = trials - spent_trials(study)
    if remaining <= 0:
        return
    guard = FailureGuard(ctx.config.search.max_consecutive_failures)
    callbacks = [guard] + ([report] if report else [])
    study.optimize(
        Objective(ctx),
        n_trials=remaining,
        timeout=time_budget,
        catch=(Exception,),
        callbacks=callbacks,
        gc_after_trial=False,
    )
    if guard.tripped:
        raise CompressorError(guard.summary())


def _fail_interrupted_trials(study: optuna.Study) -> None:
    # A trial left RUNNING by a killed process still has a recent heartbeat right after the
    # kill; wait out the grace period once so it is marked FAIL before this run starts.
    if any(t.state == TrialState.RUNNING for t in study.trials):
        time.sleep(GRACE_SECONDS + HEARTBEAT_SECONDS)
        fail_dead_trials(study)


def fail_dead_trials(study: optuna.Study) -> None:
    """Mark FAIL the RUNNING trials whose process died.

    Optuna's ``fail_stale_trials`` (the heavy lifting) fails trials whose heartbeat went
    stale, but skips a trial that never wrote one: a process killed between ``study.ask()``
    and its heartbeat thread's first beat leaves a RUNNING trial that would never be failed
    (and would hold its share of the budget forever). A live process beats within
    milliseconds of asking, so a trial older than the grace period without a beat is dead.
    """
    storage = study._storage
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    # Optuna wraps an RDBStorage in a cache (``_CachedStorage._backend``).
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        return  # no heartbeats to judge by
    cutoff = datetime.datetime.now() - datetime.timedelta(seconds=GRACE_SECONDS)
    beaten = _trials_with_heartbeat(backend)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial._trial_id in beaten or trial.datetime_start is None:
            continue
        if trial.datetime_start < cutoff:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                    # As fail_stale_trials does: e.g. a retry callback queues it again.
                    stale_callback = storage.get_heartbeat_stale_trial_callback()
                    if stale_callback is not None:
                        stale_callback(study, storage.get_trial(trial._trial_id))


def _trials_with_heartbeat(storage: optuna.storages.RDBStorage) -> set[int]:
    """Ids of the trials that have written a heartbeat."""
    # Optuna has no public "has this trial ever beaten"; its heartbeat table is the record.
    from optuna.storages._rdb import models

    session = storage.scoped_session()
    try:
        return {trial_id for (trial_id,) in session.query(models.TrialHeartbeatModel.trial_id)}
    finally:
        storage.scoped_session.remove()


class TrialTimeout(Exception):
    """A trial ran past ``search.trial_timeout``."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TrialTimeout` inside the block after ``seconds`` (main thread only)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TrialTimeout(f"trial exceeded its time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class FailureGuard:
    """Optuna callback: stop the study after ``limit`` failed trials in a row."""

    def __init__(self, limit: int) -> None:
        self.limit, self.streak, self.reasons = limit, [], []
        self.tripped = False

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == TrialState.FAIL:
            self.streak.append(f"#{trial.number}: {trial.user_attrs.get('error', 'unknown')}")
        else:
            self.streak = []
        if len(self.streak) >= self.limit:
            self.tripped = True
            study.stop()

    def summary(self) -> str:
        return f"stopped after {len(self.streak)} failed trials in a row; the last: " + "; ".join(
            self.streak[-3:]
        )


def best_feasible_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """Highest-reward finished trial within the FLOPs budget."""
    feasible = [
        t
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("feasible")
    ]
    return max(feasible, key=lambda t: t.value, default=None)
