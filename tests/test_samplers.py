"""Every registered sampler searches the plan space and replays the same trials when re-run."""

import optuna
import pytest

from compressor.search.samplers import SAMPLERS, SEEDED_ATTR, make_sampler, seeded_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial: optuna.Trial) -> float:
    # Like the search space: per-group preferences on a 0.05 grid (3 start-up trials, then
    # 3 sampled by the model: GP fits are slow on a discrete grid, so the study is short).
    values = [trial.suggest_float(f"prune.g{i}", 0.0, 1.0, step=0.05) for i in range(4)]
    return -sum((v - 0.3) ** 2 for v in values)


# GPSampler optimises its acquisition over the discrete grid on every trial: ~100 s here
# under load, so it runs with the slow tests.
NAMES = [
    pytest.param(name, marks=pytest.mark.slow) if name == "gp" else name
    for name in SAMPLERS.names()
]


@pytest.mark.parametrize("name", NAMES)
def test_sampler_runs_and_replays_its_trials(name):
    runs = []
    for _ in range(2):
        study = optuna.create_study(direction="maximize", sampler=make_sampler(name, 7, 6))
        study.optimize(_objective, n_trials=6)
        runs.append([t.params for t in study.trials])
    assert len(runs[0]) == 6
    assert runs[0] == runs[1]  # per-trial seeding: the same seed draws the same plans
    assert all(v % 0.05 < 1e-9 or 0.05 - v % 0.05 < 1e-9 for p in runs[0] for v in p.values())


def _seeded_study(sampler: str) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=make_sampler(sampler, 7, 12))
    for value in (0.3, 0.35, 0.4, 0.45):  # known plans close together, as the seeding queues
        study.enqueue_trial(
            {f"prune.g{i}": value for i in range(4)}, user_attrs={SEEDED_ATTR: True}
        )
    study.optimize(_objective, n_trials=4 + 3)
    return study


def test_the_random_start_up_comes_after_the_seeded_plans():
    # TPE counts every finished trial towards its start-up; fitted on the 4 seeded plans
    # alone (3 start-up trials for 12) it would model their neighbourhood at once. Here its
    # 3 trials after them are its random start-up: the draws of the random sampler.
    tpe, random = _seeded_study("tpe"), _seeded_study("random")
    assert seeded_trials(tpe) == 4
    assert [t.params for t in tpe.trials[4:]] == [t.params for t in random.trials[4:]]
    assert [t.params for t in tpe.trials[:4]] == [t.params for t in random.trials[:4]]
