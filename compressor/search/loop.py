"""The search loop: trials of an Optuna study (see ``storage``) until its budget is spent."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import optuna
from optuna.trial import TrialState

from compressor.errors import CompressorError
from compressor.search.budget import DISCARDED, claiming_before, is_discarded, may_start, spent
from compressor.search.candidate import SearchContext, score_candidate
from compressor.search.space import suggest_deploy, suggest_flops_level, suggest_preferences
from compressor.search.storage import HEARTBEAT_SECONDS, fail_dead_trials, worker_id


def make_sampler(name: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """A sampler of :data:`SAMPLERS` (TPE multivariate by default), seeded per trial.

    Each trial gets a fresh sampler seeded from ``(seed, trial number)`` (see
    :class:`PerTrialSeedSampler`), so a resumed run or a second worker draws what an
    uninterrupted single run would have drawn, given the same finished trials. Every
    sampler here keeps its state in the study (TPE, GP and NSGA-II re-read the trials,
    CMA-ES stores its optimizer in them), so rebuilding it per trial loses nothing.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}")
    return PerTrialSeedSampler(lambda trial_seed: SAMPLERS[name](trial_seed, trials), seed)


def _startup(trials: int) -> int:
    return max(3, min(10, trials // 4))


def _tpe(seed: int, trials: int, group: bool = False) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # TPE reads the trials' constraints (Trial.set_constraint) to tell feasible plans apart.
        return optuna.samplers.TPESampler(
            seed=seed,
            multivariate=True,
            group=group,
            n_startup_trials=_startup(trials),
            # Workers sampling while others' trials run treat those as bad results, so they
            # do not all sample next to the same point; a single process never sees one.
            constant_liar=True,
        )


def _gp(seed: int, trials: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=_startup(trials))


def _cmaes(seed: int, trials: int) -> optuna.samplers.BaseSampler:
    # Needs the `cmaes` package (dev extra). Categorical deploy choices go to random sampling.
    return optuna.samplers.CmaEsSampler(
        seed=seed, n_startup_trials=_startup(trials), warn_independent_sampling=False
    )


def _nsga2(seed: int, trials: int) -> optuna.samplers.BaseSampler:
    # The default population (50) would make a 30-trial study one random generation.
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, trials // 4))


SAMPLERS: dict[str, Callable[[int, int], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "tpe-group": lambda seed, trials: _tpe(seed, trials, group=True),
    "gp": _gp,
    "cmaes": _cmaes,
    "nsga2": _nsga2,
    "random": lambda seed, trials: optuna.samplers.RandomSampler(seed=seed),
}


class OverBudget(Exception):
    """A trial created after other workers' trials had taken the whole budget."""


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


class Objective:
    """Optuna objective: sample a plan, score it, keep every metric on the trial.

    Each trial records which process (``hostname:pid``) scored and timed it.
    """

    def __init__(self, ctx: SearchContext, budget: int) -> None:
        self.ctx, self.budget, self.worker = ctx, budget, worker_id()
        self.scored = 0

    def __call__(self, trial: optuna.Trial) -> float:
        if claiming_before(trial.study.get_trials(deepcopy=False), trial.number) >= self.budget:
            trial.set_user_attr(DISCARDED, f"the budget was taken when {self.worker} asked")
            raise OverBudget(f"trial {trial.number} is beyond the study's budget")
        trial.set_user_attr("worker", self.worker)
        self.scored += 1
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
) -> int:
    """Run trials until ``trials`` of the study's trials (this process's and other workers')
    count against the budget, or this process has searched for ``time_budget`` seconds.

    Returns how many trials this process scored. While the rest of the budget is held by
    other processes' running trials it waits, failing trials whose process died (their
    heartbeat went stale; Optuna queues them again) so their share is spent again.
    Raises :class:`CompressorError` with a summary when too many trials fail in a row.
    """
    guard = FailureGuard(ctx.config.search.max_consecutive_failures)
    callbacks = [_unless_discarded(c) for c in [guard] + ([report] if report else [])]
    objective = Objective(ctx, trials)
    deadline = None if time_budget is None else time.monotonic() + time_budget
    while not guard.tripped and (deadline is None or time.monotonic() < deadline):
        fail_dead_trials(study)
        current = study.get_trials(deepcopy=False)
        if spent(current) >= trials:
            break
        if not may_start(current, trials):
            time.sleep(HEARTBEAT_SECONDS)
            continue
        study.optimize(
            objective, n_trials=1, catch=(Exception,), callbacks=callbacks, gc_after_trial=False
        )
    if guard.tripped:
        raise CompressorError(guard.summary())
    return objective.scored


def _unless_discarded(callback):
    def call(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if not is_discarded(trial):
            callback(study, trial)

    return call


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
