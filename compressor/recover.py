"""Getting accuracy back: BatchNorm re-calibration (the search's proxy), and the recovery
methods for the chosen variant (:data:`RECOVERIES`: fine-tuning, distillation)."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from compressor.distill import distill, logits_kd_loss
from compressor.progress import Steps, progress_mode
from compressor.registry import Registry

if TYPE_CHECKING:  # types only: the config imports RECOVERIES from here
    from compressor.config import RecoveryConfig
    from compressor.tasks.base import Task

# method(task, student, config, progress) -> the recovered student
Recovery = Callable[["Task", nn.Module, "RecoveryConfig", bool], nn.Module]
RECOVERIES: Registry[Recovery] = Registry("recovery method")


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable, num_samples: int) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics on ``num_samples`` training inputs.

    Pruning shifts each layer's activation statistics, so the stored ones are stale and a
    pruned net scores far below what it can reach. Adaptive BN (EagleEye, ECCV 2020) fixes
    them with a few forward passes, which makes the no-fine-tune score a usable proxy.
    Only BatchNorm layers switch to training mode; dropout and the rest stay in eval.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model
    model.eval()
    saved_momentum = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batches
        norm.train()
    seen = 0
    for inputs, _ in batches:
        model(inputs)
        seen += len(inputs)
        if seen >= num_samples:
            break
    for norm, momentum in zip(norms, saved_momentum, strict=True):
        norm.momentum = momentum
    return model.eval()


def fine_tune(
    model: nn.Module,
    batches: Iterable,
    loss_fn: Callable,
    *,
    epochs: int,
    lr: float,
    steps: int | None = None,
    progress: bool = True,
) -> nn.Module:
    """Train all weights for ``epochs`` passes, or exactly ``steps`` optimiser steps when
    set (SGD + Nesterov momentum, cosine schedule over the budget)."""
    steps_per_epoch = len(batches) if hasattr(batches, "__len__") else None
    if steps is not None:
        if steps == 0:
            return model.eval()
        # Enough passes to make ``steps`` (one more for an unsized iterable); stop there.
        epochs = -(-steps // steps_per_epoch) if steps_per_epoch else max(epochs, 1)
    if epochs <= 0:
        return model.eval()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    total = steps if steps is not None else epochs * steps_per_epoch if steps_per_epoch else None
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total) if total else None
    )
    model.train()
    mode = progress_mode(progress)
    done = 0
    with Steps("recovery", total, mode=mode, every=steps_per_epoch or 50) as bar:
        for epoch in range(epochs):
            for inputs, labels in batches:
                if steps is not None and done >= steps:
                    break
                done += 1
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(inputs), labels)
                loss.backward()
                optimizer.step()
                if scheduler:
                    scheduler.step()
                bar.advance(epoch=f"{epoch + 1}/{epochs}", loss=f"{loss.item():.4f}")
    return model.eval()


def first_batches(batches: Iterable, num_samples: int) -> list:
    """The first batches covering ``num_samples`` inputs, materialised for reuse."""
    taken, seen = [], 0
    for batch in itertools.islice(batches, 100_000):
        taken.append(batch)
        seen += len(batch[0])
        if seen >= num_samples:
            break
    return taken


# What ``auto`` races on a plan that removed whole blocks / layers. Neither wins everywhere
# (ResNet-56 on the CIFAR-10 JPEGs, 1 epoch each, test %): with 3 of 27 blocks removed
# fine-tuning reached 88.33 and distillation 85.84 (the teacher scores only 83.2 on these
# JPEGs, so its logits teach less than the labels); with 13 removed distillation led, 82.70
# against 81.79. So both run, each with the full budget, and validation decides.
DEPTH_RACE = ("fine_tune", "distill")


@dataclass(frozen=True)
class RecoveredModel:
    """A recovered model and how: the method whose weights it has, and when methods were
    raced, each one's validation metric (the lead decided)."""

    model: nn.Module
    method: str
    val_metric: Mapping[str, float] = field(default_factory=dict)


def recover_model(
    task: Task,
    student: nn.Module,
    config: RecoveryConfig,
    progress: bool = True,
    depth_pruned: bool = False,
) -> RecoveredModel:
    """The chosen variant's recovery: the task's own hook, else the configured method;
    ``auto`` fine-tunes a plan that kept every block and races fine-tuning against
    distillation from the unpruned model on a ``depth_pruned`` one (:data:`DEPTH_RACE`),
    keeping the better on the validation split. The race costs a second recovery, only
    on depth plans."""
    if task.recover is not None:
        return RecoveredModel(task.recover(student, task.model, config, progress), "task")
    methods = raced_methods(config.method, depth_pruned)
    if len(methods) == 1:
        recovered = RECOVERIES.get(methods[0])(task, student, config, progress)
        return RecoveredModel(recovered, methods[0])
    race = race_methods(task, student, config, methods, progress)
    return RecoveredModel(race.models[race.winner], race.winner, race.val_metric)


def raced_methods(method: str, depth_pruned: bool) -> tuple[str, ...]:
    """The recovery methods ``method`` runs on a plan (more than one: a race)."""
    if method != "auto":
        return (method,)
    return DEPTH_RACE if depth_pruned else ("fine_tune",)


@dataclass(frozen=True)
class Race:
    """Every raced method's recovered model and validation metric; ``winner`` leads it."""

    models: Mapping[str, nn.Module]
    val_metric: Mapping[str, float]

    @property
    def winner(self) -> str:
        # max() keeps the first of equal scores: the race order breaks ties.
        return max(self.val_metric, key=self.val_metric.__getitem__)


def race_methods(
    task: Task,
    student: nn.Module,
    config: RecoveryConfig,
    methods: Iterable[str],
    progress: bool = True,
) -> Race:
    """Recover a copy of ``student`` with each method (same budget) and score each on the
    validation split (never the test split, which reports the winner)."""
    models, scores = {}, {}
    for method in methods:
        models[method] = RECOVERIES.get(method)(task, copy.deepcopy(student), config, progress)
        scores[method] = float(task.evaluate(models[method]))
    return Race(models, scores)


@RECOVERIES.register(
    "auto",
    "fine_tune; on a plan that removed whole blocks / layers, fine_tune and distill both run"
    " and the better on validation is kept (default)",
)
def auto_method(task: Task, student: nn.Module, config: RecoveryConfig, progress: bool):
    # Called only without the plan at hand (recover_model resolves "auto" itself).
    return fine_tune_method(task, student, config, progress)


@RECOVERIES.register("fine_tune", "train on the task's loss (SGD, cosine schedule)")
def fine_tune_method(
    task: Task, student: nn.Module, config: RecoveryConfig, progress: bool
) -> nn.Module:
    return fine_tune(
        student,
        task.train_data,
        task.loss_fn,
        epochs=config.epochs,
        lr=config.lr,
        steps=config.steps,
        progress=progress,
    )


@RECOVERIES.register("distill", "learn the unpruned model's logits (KL) and the labels")
def distill_method(
    task: Task, student: nn.Module, config: RecoveryConfig, progress: bool
) -> nn.Module:
    return distill(
        student,
        task.model,
        task.train_data,
        logits_kd_loss(),
        epochs=config.epochs,
        steps=config.steps,
        lr=config.lr,
        optimizer="sgd",
        progress=progress,
    )
