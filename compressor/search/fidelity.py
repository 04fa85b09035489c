"""Multi-fidelity scoring: every candidate gets the cheap score, the promising few a better one.

The cheap score (fidelity 0) is the artifact's metric after adaptive BatchNorm; it ranks
plans only loosely against their accuracy after recovery (benchmarks/results/proxy-*). A
short version of the final recovery (fidelity 1, ``search.promote_steps`` steps at a
constant learning rate on fixed batches, BatchNorm re-estimated after) ranks them better.
It trains as the final recovery would: under ``recovery.method: auto`` a plan that removed
blocks is both fine-tuned (labels) and distilled (logits + labels) and scores the better,
the others are fine-tuned (``compressor.recover.raced_methods``): which method recovers a
depth plan best differs by plan (ResNet-56, 1 epoch, 3 blocks removed: fine-tuned 0.2 pt
under the unpruned model, distilled 2.8 pt; `python -m benchmarks recovery`). It costs far
more, so only a trial whose cheap reward is among the top ``search.promote_fraction`` of
the study's cheap rewards so far (itself included) is promoted, as in successive halving.
The decision reads only the study's finished trials, so a resumed study or a second worker
takes the same decision for the same history, and the trial budget stays the study's.

Each fidelity's reward is reported to Optuna as the trial's intermediate value at that step
(``trial.report``: the dashboard plots them); the trial's value is the reward at the
highest fidelity it reached, and its ``fidelity`` attribute says which. The latency is not
timed again: training changes weights, not the artifact's shape.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from optuna.trial import FrozenTrial, TrialState
from torch import nn

from compressor.actions.artifact import DeploySpec
from compressor.distill import distill, logits_kd_loss
from compressor.records import TrialMetrics
from compressor.recover import raced_methods, recalibrate_batchnorm
from compressor.search.candidate import (
    build_candidate,
    checked_metric,
    complexity_terms,
    make_artifact,
    measured_latency,
    reward_of,
    runnable,
)
from compressor.search.context import Resources, SearchSettings, accuracy_floor
from compressor.search.duplicates import distinct

CHEAP, DISTILLED = 0, 1  # DISTILLED: the short recovery, whichever method it ran
# The short recoveries' losses: the same optimiser, steps and batches, so the two differ
# only in what they learn from (labels alone, or the unpruned model's logits and labels).
SHORT_LOSSES = {"fine_tune": logits_kd_loss(label_weight=1.0), "distill": logits_kd_loss()}
FLOOR_KEY = "distilled accuracy floor"  # in SearchSettings.fidelity_cache
TEACHER_KEY = "teacher outputs"  # ... with the teacher's and the batches' identities


def cheap_rewards(trials: Iterable[FrozenTrial], number: int) -> list[float]:
    """Fidelity-0 rewards of the study's finished trials other than trial ``number``, each
    plan once (a plan sampled twice would otherwise weigh twice in the ranks)."""
    return [
        t.user_attrs["reward_cheap"]
        for t in distinct(trials)
        if t.state == TrialState.COMPLETE
        and t.number != number
        and t.user_attrs.get("reward_cheap") is not None
    ]


def promoted(cheap: float, others: list[float], fraction: float) -> bool:
    """Whether ``cheap`` is among the top ``fraction`` of ``others + [cheap]``.

    With n rewards the top ``ceil(fraction x n)`` places are promoted, so the best trial so
    far always is (the first trial too) and about ``fraction`` of a long study is. Ties
    count in the candidate's favour.
    """
    if fraction <= 0:
        return False
    places = math.ceil(fraction * (len(others) + 1))
    better = sum(other > cheap for other in others)
    return better < places


def worth_timing(
    trials: Iterable[FrozenTrial], number: int, fraction: float
) -> Callable[[float], bool]:
    """Whether a trial (number ``number``) whose cheap reward could reach a given value
    might still change the study's decisions: be promoted (:func:`promoted`) or beat the
    best reward so far. Below both, a more precise latency changes nothing the study does
    with the trial (the chosen variant's latency is timed again before the choice,
    ``choose.retime``). Reads only finished trials, like :func:`promoted`."""
    trials = list(trials)
    others = cheap_rewards(trials, number)
    best = max(
        (
            t.value
            for t in trials
            if t.state == TrialState.COMPLETE
            and t.number != number
            and t.user_attrs.get("feasible")
            and t.value is not None
        ),
        default=None,
    )

    def matters(reward: float) -> bool:
        return best is None or reward >= best or promoted(reward, others, fraction)

    return matters


def contender(metrics: TrialMetrics, trials: Iterable[FrozenTrial], number: int) -> bool:
    """Under ``--max-accuracy-drop``, whether the plan may be faster than every feasible
    finished trial (other than ``number``): the fastest feasible trial is what that mode
    ships, so only the floor can keep such a plan out, and the short recovery is what
    judges that. "May be": the low end of its latency interval is under their fastest
    ratio (two plans timed apart differ by noise; B2b timed two and one removed encoder
    layers at the same 0.41x). Reads only finished trials, like :func:`promoted`."""
    if metrics.accuracy_floor is None or metrics.latency_ratio is None:
        return False
    fastest = min(
        (
            t.user_attrs["latency_ratio"]
            for t in trials
            if t.state == TrialState.COMPLETE
            and t.number != number
            and t.user_attrs.get("feasible")
            and t.user_attrs.get("latency_ratio") is not None
        ),
        default=math.inf,
    )
    low = metrics.latency_ratio_low
    return (metrics.latency_ratio if low is None else low) < fastest


def score_with_fidelity(
    trial, metrics: TrialMetrics, rescore: Callable[[], TrialMetrics], fraction: float
) -> TrialMetrics:
    """``metrics`` (the cheap score) raised to the distilled fidelity when promoted.

    ``rescore()`` returns the distilled score's metrics; the cheap accuracy and reward stay
    beside them (``accuracy_cheap``, ``reward_cheap``). Only plans within the FLOPs and
    latency budgets are promoted: distillation changes weights, not cost, so the others
    can never be chosen. A plan under the ``--max-accuracy-drop`` floor may be: a short
    recovery is exactly what can lift it above the floor (a removed layer or block scores
    far below it before any training), and the floor then judges the recovered accuracy.
    With that floor, a plan that may be faster than every feasible trial so far is promoted
    too (:func:`contender`), whatever its reward.
    """
    trial.report(metrics.reward, CHEAP)
    metrics = dataclasses.replace(
        metrics, fidelity=CHEAP, accuracy_cheap=metrics.accuracy, reward_cheap=metrics.reward
    )
    trials = trial.study.get_trials(deepcopy=False)
    others = cheap_rewards(trials, trial.number)
    if not metrics.within_budgets or not (
        promoted(metrics.reward, others, fraction) or contender(metrics, trials, trial.number)
    ):
        return metrics
    better = rescore()
    trial.report(better.reward, DISTILLED)
    return dataclasses.replace(
        better,
        fidelity=DISTILLED,
        accuracy_cheap=metrics.accuracy,
        reward_cheap=metrics.reward,
        seconds=metrics.seconds + better.seconds,
    )


def short_recoveries(
    settings: SearchSettings, model: nn.Module, depth_pruned: bool
) -> dict[str, nn.Module]:
    """Copies of ``model`` after ``search.promote_steps`` steps of each recovery the final
    one would run on the plan (the task's own, or ``raced_methods``), BatchNorm statistics
    re-estimated after (training-mode steps leave momentum averages of a moving network)."""
    steps = settings.config.search.promote_steps
    samples = settings.config.search.calibration_samples
    if settings.recover is not None:  # the task's own recovery (sentence encoders)
        recovery = dataclasses.replace(settings.config.recovery, epochs=1, steps=steps)
        student = settings.recover(copy.deepcopy(model), settings.model, recovery, False)
        return {"task": recalibrate_batchnorm(student, settings.calibration, samples)}
    students = {}
    # Every promoted trial distils from the same teacher on the same batches: its outputs
    # are computed once per search (digits: 16 teacher batches against 20 student steps of
    # forward and backward, about a fifth of each short recovery).
    key = (TEACHER_KEY, id(settings.model), id(settings.distill_batches))
    teacher_outputs = settings.fidelity_cache.setdefault(key, {})
    for method in raced_methods(settings.config.recovery.method, depth_pruned):
        student = distill(
            copy.deepcopy(model),
            settings.model,
            list(settings.distill_batches),
            SHORT_LOSSES.get(method, SHORT_LOSSES["distill"]),
            steps=steps,
            lr=settings.config.recovery.lr,
            optimizer="sgd",
            progress=False,
            constant_lr=True,
            teacher_outputs=teacher_outputs,
        )
        students[method] = recalibrate_batchnorm(student, settings.calibration, samples)
    return students


def distilled_metrics(
    settings: SearchSettings,
    resources: Resources,
    metrics: TrialMetrics,
    deploy: DeploySpec | None,
    flops_budget: int,
) -> TrialMetrics:
    """``metrics`` with the accuracy (and reward) of the plan after the short recovery (the
    best of them when they race), scored as its artifact when ``deploy`` is given, with the
    latency already measured."""
    started = time.perf_counter()
    model, _ = build_candidate(settings, metrics.ratios, metrics.removed_units, metrics.round_to)
    students = short_recoveries(settings, model, bool(metrics.removed_units))
    accuracy = max(artifact_accuracy(settings, resources, s, deploy) for s in students.values())
    terms = complexity_terms(settings, metrics.flops, flops_budget, measured_latency(metrics))
    floor = distilled_floor(settings)
    return dataclasses.replace(
        metrics,
        accuracy=accuracy,
        reward=reward_of(settings, accuracy, terms),
        seconds=time.perf_counter() - started,
        accuracy_floor=floor,
    )


def artifact_accuracy(
    settings: SearchSettings, resources: Resources, model: nn.Module, deploy: DeploySpec | None
) -> float:
    """The validation metric of ``model``, as its ``deploy`` artifact when there is one."""
    if deploy is None:
        return checked_metric(settings.evaluate(model))
    with tempfile.TemporaryDirectory(prefix="distilled-", dir=resources.workdir) as scratch:
        artifact = make_artifact(settings, model, deploy, Path(scratch) / "c.onnx")
        return checked_metric(settings.evaluate(runnable(settings, artifact.path)))


def distilled_floor(settings: SearchSettings) -> float | None:
    """The ``--max-accuracy-drop`` floor of a fidelity-1 score: the unpruned model's accuracy
    after its own short recovery (as the final recovery treats it), less the drop (None
    without the option).

    The short recovery trains on the task's data (and labels, when it has them), which
    by itself can lift a model that was never trained on that data: a pretrained ResNet-56
    on CIFAR-10 JPEGs gains ~4 pt of validation accuracy in 20 steps. Against the untrained
    baseline's floor, a plan that lost several points to pruning would still pass; against
    the baseline at the same fidelity, only the plan's own loss counts. Computed once per
    process and kept in the settings' cache.
    """
    if settings.accuracy_floor is None:
        return None
    cache = settings.fidelity_cache
    if FLOOR_KEY not in cache:
        students = short_recoveries(settings, settings.model, depth_pruned=False)
        best = max(checked_metric(settings.evaluate(s)) for s in students.values())
        cache[FLOOR_KEY] = accuracy_floor(settings.config, best)
    return cache[FLOOR_KEY]
