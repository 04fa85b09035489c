"""Recovery by knowledge distillation from the uncompressed model (the teacher).

Two losses: for classifiers, KL divergence between temperature-softened logits (Hinton et
al. 2015) mixed with cross-entropy on the labels where there are labels; for sentence
encoders, MSE plus cosine distance between student and teacher embeddings. The budget is
epochs or a number of optimiser steps; progress is live on a terminal, plain lines in logs.
When the batches are a fixed list (no augmentation), the teacher's outputs are computed once
and reused every epoch, which halves the cost of every later epoch.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from compressor.progress import Steps, progress_mode

if TYPE_CHECKING:  # a type only: the config imports the recovery registry, not this
    from compressor.config import RecoveryConfig

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def logits_kd_loss(temperature: float = 4.0, label_weight: float = 0.5) -> LossFn:
    """``T^2 KL(teacher_T || student_T)``, mixed with cross-entropy when labels are given."""

    def loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor | None):
        kd = (
            F.kl_div(
                F.log_softmax(student / temperature, dim=-1),
                F.log_softmax(teacher / temperature, dim=-1),
                log_target=True,
                reduction="batchmean",
            )
            * temperature**2
        )
        if labels is None:
            return kd
        return (1 - label_weight) * kd + label_weight * F.cross_entropy(student, labels)

    return loss


def embedding_kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels=None) -> torch.Tensor:
    """MSE (keeps the scale) + cosine distance (what the similarity metric reads)."""
    cosine = F.cosine_similarity(student, teacher, dim=-1)
    return F.mse_loss(student, teacher) + (1.0 - cosine).mean()


def distill(
    student: nn.Module,
    teacher: nn.Module,
    batches: Iterable,
    loss_fn: LossFn,
    *,
    epochs: int = 1,
    steps: int | None = None,
    lr: float = 1e-4,
    optimizer: str = "adamw",
    progress: bool = True,
    seed: int = 0,
    constant_lr: bool = False,
    on_step: Callable[[int, nn.Module], None] | None = None,
    teacher_outputs: dict[int, torch.Tensor] | None = None,
) -> nn.Module:
    """Train ``student`` to match ``teacher`` on ``batches`` of ``(inputs, labels)``.

    ``inputs`` is a tensor or a tuple of tensors (passed as positional arguments);
    ``labels`` may be None. ``steps`` (if set) overrides ``epochs``. A list of batches is
    visited in a seeded shuffled order and the teacher's outputs are cached per batch.
    The learning rate decays linearly to 0 unless ``constant_lr``: then the first k steps of
    a run are exactly a k-step run, so ``on_step(step, student)`` (called after every step)
    can score a short distillation at several budgets in one pass. ``teacher_outputs``: the
    per-batch cache to use, kept by a caller that distils many students from the same
    teacher on the same list of batches (the search's promoted trials).
    """
    fixed = isinstance(batches, Sequence)
    per_epoch = len(batches) if hasattr(batches, "__len__") else None
    total = steps if steps is not None else (epochs * per_epoch if per_epoch else None)
    if total == 0 or (steps is None and epochs <= 0):
        return student.eval()
    opt = _optimizer(student, optimizer, lr)
    scheduler = (
        torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / total))
        if total and not constant_lr
        else None
    )
    cache: dict[int, torch.Tensor] = {} if teacher_outputs is None else teacher_outputs
    teacher.eval()
    student.train()
    # A plain line every tenth of the budget (or every pass over an unsized iterable).
    every = max(1, total // 10) if total else 50
    with Steps("distillation", total, mode=progress_mode(progress), every=every) as bar:
        done, rng = 0, random.Random(seed)
        while total is None or done < total:
            order = rng.sample(range(len(batches)), len(batches)) if fixed else None
            stream = ((i, batches[i]) for i in order) if fixed else enumerate(batches)
            done_before = done
            for key, (inputs, labels) in stream:
                inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
                target = cache.get(key) if fixed else None
                if target is None:
                    with torch.no_grad():
                        target = teacher(*inputs)
                    if fixed:
                        cache[key] = target
                loss = loss_fn(student(*inputs), target, labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if scheduler:
                    scheduler.step()
                done += 1
                bar.advance(loss=f"{loss.item():.4f}")
                if on_step is not None:
                    on_step(done, student)
                if total is not None and done >= total:
                    break
            if done == done_before:  # an exhausted one-shot iterator: nothing more to learn from
                break
            if total is None:  # an unsized iterable: one pass per epoch
                epochs -= 1
                if epochs <= 0:
                    break
    return student.eval()


def _optimizer(model: nn.Module, name: str, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4
        )
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)


def embedding_recovery(batches: Sequence) -> Callable[..., nn.Module]:
    """A task ``recover`` hook: distil a sentence encoder's embeddings on ``batches`` of
    model inputs (AdamW; the teacher's embeddings are cached)."""

    def recover(
        student: nn.Module, teacher: nn.Module, config: RecoveryConfig, progress: bool = True
    ) -> nn.Module:
        return distill(
            student,
            teacher,
            [(inputs, None) for inputs in batches],
            embedding_kd_loss,
            epochs=config.epochs,
            steps=config.steps,
            lr=config.lr,
            optimizer="adamw",
            progress=progress,
        )

    return recover


LM_LR = 5e-5  # AdamW on a pretrained LM; the default recovery lr (0.01) is for SGD on CNNs
LM_MAX_LR = 1e-3


class _Logits(nn.Module):
    """A causal LM as ``ids -> next-token logits, one row per position`` (for the KD loss)."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        logits = self.lm(input_ids=ids, use_cache=False).logits
        return logits.reshape(-1, logits.shape[-1])


class _Windows:
    """Re-iterable, unindexed windows: ``distill`` then caches no teacher logits (one
    512-token window of a 49 k-vocabulary LM is 100 MB of them)."""

    def __init__(self, windows: Sequence[torch.Tensor]) -> None:
        self.windows = tuple(windows)

    def __len__(self) -> int:
        return len(self.windows)

    def __iter__(self):
        return ((window, None) for window in self.windows)


def logits_recovery(windows: Sequence[torch.Tensor], temperature: float = 1.0):
    """A task ``recover`` hook for causal LMs: KL divergence to the uncompressed model's
    next-token distribution at every position of the recovery ``windows`` (AdamW).

    The recovery lr is used when it suits AdamW (<= 1e-3); above, :data:`LM_LR`.
    """

    def recover(
        student: nn.Module, teacher: nn.Module, config: RecoveryConfig, progress: bool = True
    ) -> nn.Module:
        lr = config.lr if config.lr <= LM_MAX_LR else LM_LR
        distill(
            _Logits(student),
            _Logits(teacher),
            _Windows(windows),
            logits_kd_loss(temperature),
            epochs=config.epochs,
            steps=config.steps,
            lr=lr,
            optimizer="adamw",
            progress=progress,
        )
        return student.eval()

    return recover
