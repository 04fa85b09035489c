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

# builder(seed, trials, seeded) -> a seeded Optuna sampler; ``seeded``: the study's queued
# known plans (uniform, sensitivity, depth, references), which come before any sampling.
SamplerBuilder = Callable[[int, int, int], optuna.samplers.BaseSampler]
SAMPLERS: Registry[SamplerBuilder] = Registry("sampler")
SEEDED_ATTR = "seeded"  # user attribute of a trial queued by the study's seeding


def seeded_trials(study: optuna.Study) -> int:
    """How many of the study's trials (run or still queued) were queued by its seeding."""
    return sum(bool(t.user_attrs.get(SEEDED_ATTR)) for t in study.get_trials(deepcopy=False))


def make_sampler(name: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """The registered sampler ``name``, rebuilt and seeded per trial."""
    build = SAMPLERS.get(name)
    return PerTrialSeedSampler(lambda trial_seed, seeded: build(trial_seed, trials, seeded), seed)


def startup_trials(trials: int, seeded: int) -> int:
    """Trials before a model-based sampler models: Optuna counts every finished trial, the
    seeded plans too, but those sit close together (one allocation at several levels), so
    a model fitted on them alone exploits their neighbourhood. The random start-up trials
    come on top of them. (B3 on digits: seeded then TPE with the seeds counted stalled at
    R 0.887-0.908 in 3 of 3 seeds while random sampling reached 0.900-0.925.)"""
    return seeded + max(3, min(10, trials // 4))


def _tpe(seed: int, trials: int, seeded: int, group: bool) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # TPE reads the trials' constraints (Trial.set_constraint) to tell feasible plans apart.
        return optuna.samplers.TPESampler(
            seed=seed,
            multivariate=True,
            group=group,
            n_startup_trials=startup_trials(trials, seeded),
            # Workers sampling while others' trials run treat those as bad results, so they
            # do not all sample next to the same point; a single process never sees one.
            constant_liar=True,
        )


@SAMPLERS.register("tpe", "Optuna TPE: multivariate, constraint-aware, constant liar")
def tpe(seed: int, trials: int, seeded: int) -> optuna.samplers.BaseSampler:
    return _tpe(seed, trials, seeded, group=False)


@SAMPLERS.register("tpe-group", "TPE multivariate with group=True (conditional spaces)")
def tpe_group(seed: int, trials: int, seeded: int) -> optuna.samplers.BaseSampler:
    return _tpe(seed, trials, seeded, group=True)


@SAMPLERS.register("gp", "Optuna GPSampler: Gaussian-process Bayesian optimisation")
def gp(seed: int, trials: int, seeded: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(trials, seeded))


@SAMPLERS.register("cmaes", "Optuna CmaEsSampler (needs the cmaes package, dev extra)")
def cmaes(seed: int, trials: int, seeded: int) -> optuna.samplers.BaseSampler:
    # The categorical deploy choices go to its independent (random) sampler.
    return optuna.samplers.CmaEsSampler(
        seed=seed, n_startup_trials=startup_trials(trials, seeded), warn_independent_sampling=False
    )


@SAMPLERS.register("nsga2", "Optuna NSGAIISampler, a population of a quarter of the trials")
def nsga2(seed: int, trials: int, seeded: int) -> optuna.samplers.BaseSampler:
    # The default population (50) would make a 30-trial study one random generation.
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, trials // 4))


@SAMPLERS.register("random", "uniform random sampling (Optuna RandomSampler)")
def random(seed: int, trials: int, seeded: int) -> optuna.samplers.BaseSampler:
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
    beginning and draws other parameters than one uninterrupted run. The samplers here hold
    no other state between trials (TPE, GP and NSGA-II re-read the history from the study,
    CMA-ES stores its optimizer state in the trials' system attributes), so a fresh
    sampler per trial, seeded by the trial number, makes each trial's parameters a function of
    the seed and the finished trials alone. Only the public sampler interface is used.
    """

    def __init__(self, build: Callable[[int, int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._build, self._seed = build, seed
        self._sampler = build(seed, 0)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        seeded = seeded_trials(study)
        self._sampler = self._build(trial_seed(self._seed, trial.number), seeded)
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
