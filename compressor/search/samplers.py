"""Optuna samplers the search can use, one registered builder each (:data:`SAMPLERS`).

Whatever the sampler, each trial gets a fresh one seeded from ``(seed, trial number)`` (see
:class:`PerTrialSeedSampler`), so a resumed run or a second worker draws what an
uninterrupted single run would have drawn, given the same finished trials.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import optuna

from compressor.registry import Registry

# builder(seed, trials) -> a seeded Optuna sampler
SamplerBuilder = Callable[[int, int], optuna.samplers.BaseSampler]
SAMPLERS: Registry[SamplerBuilder] = Registry("sampler")


def make_sampler(name: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """The registered sampler ``name``, rebuilt and seeded per trial."""
    build = SAMPLERS.get(name)
    return PerTrialSeedSampler(lambda trial_seed: build(trial_seed, trials), seed)


@SAMPLERS.register("tpe", "Optuna TPE: multivariate, constraint-aware, constant liar")
def tpe(seed: int, trials: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # TPE reads the trials' constraints (Trial.set_constraint) to tell feasible plans apart.
        return optuna.samplers.TPESampler(
            seed=seed,
            multivariate=True,
            n_startup_trials=max(3, min(10, trials // 4)),
            # Workers sampling while others' trials run treat those as bad results, so they
            # do not all sample next to the same point; a single process never sees one.
            constant_liar=True,
        )


@SAMPLERS.register("random", "uniform random sampling (Optuna RandomSampler)")
def random(seed: int, trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


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
