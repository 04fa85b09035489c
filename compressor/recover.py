"""Getting accuracy back: BatchNorm re-calibration (the search's proxy), and the recovery
methods for the chosen variant (:data:`RECOVERIES`: fine-tuning, distillation)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
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


def recover_model(
    task: Task,
    student: nn.Module,
    config: RecoveryConfig,
    progress: bool = True,
    depth_pruned: bool = False,
) -> nn.Module:
    """The chosen variant's recovery: the task's own hook, else the configured method
    (``auto`` distils a ``depth_pruned`` model and fine-tunes the others).

    Why ``auto``: with whole blocks gone, the remaining ones must take over what the removed
    blocks computed, and the unpruned model's logits say what that was more densely than
    the labels do (measured on ResNet-56, 1 epoch: blocks removed evenly reached only 82.5 %
    test with plain fine-tuning, below a width plan's 86.7 %)."""
    if task.recover is not None:
        return task.recover(student, task.model, config, progress)
    method = resolved_method(config.method, depth_pruned)
    return RECOVERIES.get(method)(task, student, config, progress)


def resolved_method(method: str, depth_pruned: bool) -> str:
    """The recovery ``method`` names, with ``auto`` resolved for the plan at hand."""
    if method != "auto":
        return method
    return "distill" if depth_pruned else "fine_tune"


@RECOVERIES.register(
    "auto", "distill when the plan removed whole blocks / layers, else fine_tune (default)"
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
