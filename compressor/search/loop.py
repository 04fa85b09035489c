"""The search loop: trials of an Optuna study (see ``storage``) until its budget is spent."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import optuna
from optuna.trial import TrialState

from compressor.actions.artifact import DeploySpec
from compressor.credentials import mask
from compressor.errors import CompressorError
from compressor.records import TrialMetrics
from compressor.search.budget import DISCARDED, claiming_before, is_discarded, may_start, spent
from compressor.search.candidate import score_candidate
from compressor.search.context import Resources, SearchSettings
from compressor.search.duplicates import distinct, reuse_duplicate
from compressor.search.fidelity import distilled_metrics, score_with_fidelity, worth_timing
from compressor.search.space import (
    DepthChoice,
    suggest_deploy,
    suggest_depth,
    suggest_flops_level,
    suggest_preferences,
)
from compressor.search.storage import HEARTBEAT_SECONDS, fail_dead_trials, worker_id

# What a trial reports to Optuna from its metrics: R (the default), or a multi-objective
# study's values (B3's NSGA-II front row: accuracy and FLOPs ratio); R stays the trial's
# ``reward`` attribute either way.
TrialValues = Callable[[TrialMetrics], float | Sequence[float]]


def reward_value(metrics: TrialMetrics) -> float:
    return metrics.reward


class OverBudget(Exception):
    """A trial created after other workers' trials had taken the whole budget."""


class Objective:
    """Optuna objective: sample a plan, score it, keep every metric on the trial.

    Each trial records which process (``hostname:pid``) scored and timed it. ``values``: what
    it returns to Optuna (R by default; a multi-objective study's values otherwise).
    """

    def __init__(
        self,
        settings: SearchSettings,
        resources: Resources,
        budget: int,
        values: TrialValues = reward_value,
    ) -> None:
        self.settings, self.resources, self.budget = settings, resources, budget
        self.values = values
        self.worker = worker_id()
        self.scored = 0

    def __call__(self, trial: optuna.Trial) -> float | Sequence[float]:
        if claiming_before(trial.study.get_trials(deepcopy=False), trial.number) >= self.budget:
            trial.set_user_attr(DISCARDED, f"the budget was taken when {self.worker} asked")
            raise OverBudget(f"trial {trial.number} is beyond the study's budget")
        trial.set_user_attr("worker", self.worker)
        self.scored += 1
        settings = self.settings
        config = settings.config
        flops_budget = None
        if config.target_flops is None:  # only a latency target: the FLOPs level is searched
            flops_budget = int(suggest_flops_level(trial) * settings.baseline_flops)
        preferences = suggest_preferences(trial, settings.groups, config.prune)
        deploy = suggest_deploy(trial, config.deploy) if config.deploy.export else None
        depth = (
            suggest_depth(trial, settings.depth_units, config.prune.ratio_step)
            if settings.depth_units
            else None
        )
        reused = reuse_duplicate(trial)
        if reused is not None:  # an earlier trial scored this plan (search/duplicates.py)
            return reused
        try:
            with time_limit(config.search.trial_timeout):
                metrics = self._score(trial, preferences, deploy, flops_budget, depth)
        except Exception as exc:  # the trial fails with its reason; the study goes on
            trial.set_user_attr("error", mask(f"{type(exc).__name__}: {exc}"))
            raise
        for key, value in metrics.attrs().items():
            trial.set_user_attr(key, value)
        # TPE reads this to tell feasible plans apart: <= 0 means within every budget.
        trial.set_constraint("budgets", metrics.budget_excess)
        if metrics.accuracy_floor is not None:  # TPE learns where the accuracy floor lies too
            trial.set_constraint("accuracy", metrics.accuracy_floor - metrics.accuracy)
        return self.values(metrics)

    def _score(
        self,
        trial: optuna.Trial,
        preferences: Mapping[str, float],
        deploy: DeploySpec | None,
        flops_budget: int | None,
        depth: DepthChoice | None,
    ) -> TrialMetrics:
        """The plan's metrics at the highest fidelity it reached.

        Multi-fidelity: the promising plans are scored again after a short distillation
        (search/fidelity.py). It ranks plans by their reported intermediate values, which
        Optuna keeps for a single objective only: a multi-objective study scores cheaply.
        """
        settings = self.settings
        fraction = settings.config.search.promote_fraction
        single = len(trial.study.directions) == 1
        # Under --max-accuracy-drop the fastest feasible plan ships: every latency matters.
        matters = (
            worth_timing(trial.study.get_trials(deepcopy=False), trial.number, fraction)
            if single and settings.accuracy_floor is None
            else None
        )
        metrics = score_candidate(
            settings, self.resources, preferences, deploy, flops_budget, depth, matters
        )
        if not single:
            return metrics
        budget = settings.flops_budget if flops_budget is None else flops_budget
        return score_with_fidelity(
            trial,
            metrics,
            lambda: distilled_metrics(settings, self.resources, metrics, deploy, budget),
            fraction,
        )


def run_study(
    study: optuna.Study,
    settings: SearchSettings,
    resources: Resources,
    trials: int,
    time_budget: float | None,
    report: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None,
    *,
    values: TrialValues = reward_value,
) -> int:
    """Run trials until ``trials`` of the study's trials (this process's and other workers')
    count against the budget, or this process has searched for ``time_budget`` seconds.

    ``values``: what each trial returns to Optuna (see :class:`Objective`). Returns how many
    trials this process scored. While the rest of the budget is held by
    other processes' running trials it waits, failing trials whose process died (their
    heartbeat went stale; Optuna queues them again) so their share is spent again.
    Raises :class:`CompressorError` with a summary when too many trials fail in a row.
    """
    guard = FailureGuard(settings.config.search.max_consecutive_failures)
    callbacks = [_unless_discarded(c) for c in [guard] + ([report] if report else [])]
    objective = Objective(settings, resources, trials, values)
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
        self.limit, self.streak = limit, []
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


def best_feasible_trial(
    study: optuna.Study, fastest: bool = False
) -> optuna.trial.FrozenTrial | None:
    """Highest-reward finished trial within every budget the user set.

    ``fastest`` (``--max-accuracy-drop``): the feasible trial with the lowest measured
    latency ratio (FLOPs ratio when latency was not measured), reward breaking ties.
    """
    feasible = [
        t
        for t in distinct(study.trials)
        if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("feasible")
    ]
    if fastest:
        return min(feasible, key=lambda t: (trial_cost(t), -t.value), default=None)
    return max(feasible, key=lambda t: t.value, default=None)


def trial_cost(trial: optuna.trial.FrozenTrial) -> float:
    """What ``--max-accuracy-drop`` minimises: the latency ratio, else the FLOPs ratio."""
    attrs = trial.user_attrs
    latency = attrs.get("latency_ratio")
    return latency if latency is not None else attrs.get("flops_ratio", 1.0)
