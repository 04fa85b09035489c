"""A trial whose parameters repeat a finished trial's reuses its result: nothing is built or
measured again, the budget still counts it, and the choice never re-times the plan twice.

Deterministic fakes stand in for the expensive scoring (queued trials, or spaces so small
that the sampler must repeat a plan); the fakes count their calls.
"""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from compressor.config import CompressConfig
from compressor.measure.decoder_latency import DecoderLatency
from compressor.measure.latency import LatencyComparison, LatencyStats
from compressor.records import TrialMetrics, trial_record
from compressor.search import loop
from compressor.search.choose import retimed_set, top_feasible
from compressor.search.duplicates import DUPLICATE_ATTR, reuse_duplicate, same_params
from compressor.search.fidelity import cheap_rewards
from compressor.search.samplers import SEEDED_ATTR

optuna.logging.set_verbosity(optuna.logging.WARNING)


def counting_objective(builds: list[dict], directions: int = 1):
    """An objective that "builds" each new plan (recorded in ``builds``) and reuses repeats."""

    def run(trial: optuna.Trial):
        x = trial.suggest_categorical("x", [1, 2, 3])
        y = trial.suggest_float("y", 0.0, 1.0, step=0.05)
        reused = reuse_duplicate(trial)
        if reused is not None:
            return reused
        builds.append(trial.params)
        trial.set_user_attr("reward", x + y)
        trial.set_user_attr("worker", "host:1")
        trial.set_user_attr("seconds", 60.0)
        trial.set_constraint("budgets", -0.5)
        return (x + y, -x) if directions == 2 else x + y

    return run


@pytest.mark.parametrize("directions", [1, 2])
def test_a_queued_repeat_reuses_the_first_trials_values_without_building(directions):
    study = optuna.create_study(directions=["maximize"] * directions)
    study.enqueue_trial({"x": 2, "y": 0.35}, user_attrs={SEEDED_ATTR: True})
    study.enqueue_trial({"x": 2, "y": 0.35})
    study.enqueue_trial({"x": 3, "y": 0.35})
    builds: list[dict] = []
    study.optimize(counting_objective(builds, directions), n_trials=3)

    first, repeat, other = study.trials
    assert builds == [first.params, other.params]  # the repeat was never built
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert repeat.values == first.values
    assert repeat.user_attrs[DUPLICATE_ATTR] == 0
    assert repeat.user_attrs["reward"] == first.user_attrs["reward"]
    assert repeat.constraints == first.constraints == {"budgets": -0.5}
    # how the original was queued and run is its own: the repeat is no seed and took no time
    assert SEEDED_ATTR not in repeat.user_attrs and "worker" not in repeat.user_attrs
    assert repeat.user_attrs["seconds"] == 0.0
    assert DUPLICATE_ATTR not in other.user_attrs
    if directions == 1:  # (trial_record reads a single value)
        assert trial_record(repeat).duplicate_of == 0


def test_a_repeat_of_a_repeat_names_the_trial_that_scored_the_plan():
    study = optuna.create_study(direction="maximize")
    for _ in range(3):
        study.enqueue_trial({"x": 1, "y": 0.5})
    builds: list[dict] = []
    study.optimize(counting_objective(builds), n_trials=3)
    assert len(builds) == 1
    assert [t.user_attrs.get(DUPLICATE_ATTR) for t in study.trials] == [None, 0, 0]


def test_only_finished_trials_are_reused():
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"x": 1, "y": 0.5})
    study.enqueue_trial({"x": 1, "y": 0.5})
    calls: list[int] = []

    def flaky(trial: optuna.Trial) -> float:
        trial.suggest_categorical("x", [1, 2, 3])
        trial.suggest_float("y", 0.0, 1.0, step=0.05)
        reused = reuse_duplicate(trial)
        if reused is not None:
            return reused
        calls.append(trial.number)
        if trial.number == 0:
            raise RuntimeError("the build failed")
        return 1.0

    study.optimize(flaky, n_trials=2, catch=(RuntimeError,))
    assert calls == [0, 1]  # a failed plan is scored again, not "reused"
    assert DUPLICATE_ATTR not in study.trials[1].user_attrs


def test_parameters_match_on_the_grid_point_not_the_float_bits():
    assert same_params({"y": 0.35, "q": "int8"}, {"q": "int8", "y": 0.35000000000000003})
    assert not same_params({"y": 0.35}, {"y": 0.4})
    assert not same_params({"y": 0.35}, {"y": 0.35, "x": 1})
    assert not same_params({"fused": True}, {"fused": False})


# --- the pruning study's objective -------------------------------------------------------


def _metrics(ratio: float) -> TrialMetrics:
    return TrialMetrics(
        flops=int(1000 * (1 - ratio)),
        flops_ratio=1 - ratio,
        params=1,
        ratios={"g": ratio},
        channels={"g": 8},
        accuracy=0.9 - 0.2 * ratio,
        reward=0.9 - 0.1 * ratio,
        budget_excess=-0.1,
        seconds=5.0,
    )


@pytest.mark.parametrize("directions", [1, 2])
def test_the_pruning_loop_scores_each_plan_once_and_spends_the_whole_budget(
    monkeypatch, directions
):
    """One group at step 0.5 is three plans; six trials must repeat some, and end."""
    scored: list[dict] = []

    def score_candidate(settings, resources, preferences, deploy, flops_budget, depth, matters):
        scored.append(dict(preferences))
        return _metrics(preferences["g"] / 2)

    monkeypatch.setattr(loop, "score_candidate", score_candidate)
    config = CompressConfig.from_dict(
        {
            "prune": {"ratio_step": 0.5},
            "deploy": {"export": False},
            "search": {"promote_fraction": 0.0},
        }
    )
    settings = SimpleNamespace(
        config=config,
        groups=[SimpleNamespace(name="g")],
        depth_units=(),
        baseline_flops=1000,
        flops_budget=500,
        accuracy_floor=None,
    )
    study = optuna.create_study(
        directions=["maximize"] * directions, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    values = loop.reward_value if directions == 1 else (lambda m: (m.accuracy, -m.flops_ratio))
    loop.run_study(study, settings, SimpleNamespace(), 6, None, None, values=values)

    finished = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(study.trials) == len(finished) == 6
    plans = {t.params["prune.g"] for t in finished}
    assert len(scored) == len(plans) < 6  # each plan scored once, the repeats reused
    by_plan = {}
    for t in finished:  # every trial of a plan has the values of the one that scored it
        assert by_plan.setdefault(t.params["prune.g"], t.values) == t.values
    repeats = [t for t in finished if DUPLICATE_ATTR in t.user_attrs]
    assert len(repeats) == 6 - len(plans)
    assert all(t.user_attrs["feasible"] for t in finished)
    if directions == 1:
        picked = top_feasible(study, 6)
        assert len(picked) == len(plans)  # each plan once in the re-timed set
        assert {t.params["prune.g"] for t in picked} == plans
        assert loop.best_feasible_trial(study).number == picked[0].number
        assert len(cheap_rewards(study.trials, number=-1)) == len(plans)


# --- the choice, on studies built by hand ------------------------------------------------


def _feasible(value: float, duplicate_of: int | None = None, reference: str | None = None):
    attrs = {"feasible": True, "reward_cheap": value}
    if duplicate_of is not None:
        attrs[DUPLICATE_ATTR] = duplicate_of
    if reference is not None:
        attrs["reference"] = reference
    return create_trial(value=value, user_attrs=attrs, params={}, distributions={})


def test_the_re_timed_set_holds_each_plan_once():
    study = optuna.create_study(direction="maximize")
    study.add_trial(_feasible(0.9))  # 0
    study.add_trial(_feasible(0.9, duplicate_of=0))  # 1: the same plan
    study.add_trial(_feasible(0.8))  # 2
    study.add_trial(_feasible(0.7, reference="unpruned none"))  # 3
    study.add_trial(_feasible(0.8, duplicate_of=2, reference="unpruned int8"))  # 4: #2's plan
    assert [t.number for t in top_feasible(study, 5)] == [0, 2, 3]
    assert [t.number for t in retimed_set(study, 2)] == [0, 2, 3]
    assert loop.best_feasible_trial(study).number == 0


# --- the decoder study ------------------------------------------------------------------


def _decoder_score(reward: float):
    from compressor.search.decoder import DecoderScore

    stats = LatencyStats(1.0, 1.0, 3)
    comparison = LatencyComparison(stats, stats, 0.5, rounds=3)
    return DecoderScore(
        perplexity=12.0,
        quality=1 / 12.0,
        latency=DecoderLatency(comparison, comparison, 16),
        size_mb=100.0,
        streamed_mb=90.0,
        flops_per_token=1.0,
        flops_ratio=1.0,
        reward=reward,
        terms=(),
        reward_if_within=reward,
    )


def _decoder_study(tmp_path, builds: list):
    from compressor.search.decoder import DecoderStudy

    study = DecoderStudy(
        model=None,
        search_windows=(),
        prompt=None,
        meter=None,
        workdir=tmp_path,
        baseline_graph=tmp_path / "baseline.onnx",
        baseline_flops_per_token=1.0,
    )

    def build(candidate, path):
        builds.append(candidate)
        path.write_bytes(b"graph")
        return path

    study.build = build
    study.score = lambda candidate, graph, precise=False: _decoder_score(
        0.08 + 0.01 * candidate.fusion
    )
    return study


def test_the_decoder_study_builds_each_plan_once_and_finishes_its_trials(tmp_path):
    """Two plans (fused or not) and five trials: the seed and TPE must repeat plans."""
    from compressor.decoder_pipeline import NEAR_BUDGET, RETIMED, search
    from compressor.search.decoder import DecoderPrior, DecoderSpace, finalists

    space = DecoderSpace(
        max_drop_layers=0,
        mlp_ratios=(0.0,),
        weights=("int8",),
        lm_head=("int8",),
        int4_methods=("rtn",),
        max_keep_sensitive=0,
        offset_units=(0,),
        fusion=(False, True),
    )
    prior = DecoderPrior(removal_order=(0, 1), sensitive={"int8": (), "int4": ()})
    builds: list = []
    settings = SimpleNamespace(trials=5, seed=0, space=space)
    made = search(_decoder_study(tmp_path, builds), settings, prior, None)

    finished = made.get_trials(states=(TrialState.COMPLETE,))
    assert len(made.trials) == len(finished) == 5
    plans = {t.params["decoder.fusion"] for t in finished}
    assert len(builds) == len(plans) <= 2
    repeats = [t for t in finished if DUPLICATE_ATTR in t.user_attrs]
    assert len(repeats) == 5 - len(plans)
    for t in repeats:
        original = made.trials[t.user_attrs[DUPLICATE_ATTR]]
        assert t.params == original.params and t.value == original.value
        assert t.user_attrs["perplexity"] == original.user_attrs["perplexity"]
    chosen = finalists(made.trials, RETIMED, NEAR_BUDGET)
    assert len(chosen) == len(plans)
    assert all(DUPLICATE_ATTR not in t.user_attrs for t in chosen)


def test_the_reports_say_which_trial_a_repeat_reuses():
    from compressor.decoder_pipeline import trials_markdown
    from compressor.records import TrialRecord
    from compressor.report.render import _status

    repeat = TrialRecord(number=7, state="COMPLETE", feasible=True, duplicate_of=6)
    assert _status(repeat) == "complete, same as #6"
    assert _status(TrialRecord(number=6, state="COMPLETE", feasible=False)) == "over budget"
    row = {
        "decoder.drop_layers": 0,
        "decoder.mlp_ratio": 0.0,
        "decoder.head_ratio": 0.0,
        "decoder.keep_sensitive": 0,
        "decoder.offset_units": 0,
        "perplexity": 12.0,
        "decode_ratio": 0.5,
        "size_mb": 100.0,
        "reward": 0.08,
    }
    table = trials_markdown([{"number": 6, **row}, {"number": 7, **row, DUPLICATE_ATTR: 6}])
    header, _, first, second = table.strip().splitlines()
    assert header.rstrip(" |").endswith("same as #")
    assert second.rstrip(" |").endswith("6") and not first.rstrip(" |").endswith("6")
