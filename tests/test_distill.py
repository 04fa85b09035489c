"""Distillation recovery: losses, budgets, teacher caching, dispatch."""

from __future__ import annotations

import copy

import pytest
import torch
from _real_model_helpers import tiny_cnn
from _tiny_transformers import tiny_bert
from torch import nn

from compressor.actions.prune_transformer import TransformerPruner
from compressor.config import RecoveryConfig
from compressor.distill import distill, embedding_kd_loss, logits_kd_loss
from compressor.errors import UserInputError
from compressor.recover import recover_model
from compressor.tasks.base import Task
from compressor.tasks.sentence_similarity import SentenceEncoder


class CountingTeacher(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, *inputs):
        self.calls += 1
        return self.model(*inputs)


def _images(batches=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(8, 3, 8, 8, generator=generator),
            torch.randint(0, 2, (8,), generator=generator),
        )
        for _ in range(batches)
    ]


def _kl(student, teacher, batches):
    loss = logits_kd_loss()
    with torch.no_grad():
        return sum(float(loss(student(x), teacher(x), None)) for x, _ in batches)


def test_kd_losses_vanish_when_student_equals_teacher():
    logits = torch.randn(4, 10)
    assert float(logits_kd_loss()(logits, logits, None)) == pytest.approx(0.0, abs=1e-6)
    embeddings = torch.randn(4, 16)
    assert float(embedding_kd_loss(embeddings, embeddings)) == pytest.approx(0.0, abs=1e-6)


def _plain_cnn(width: int, scale: float = 1.0, seed: int = 0) -> torch.nn.Module:
    # No BatchNorm: train/eval mode then computes the same function, so the KL is comparable.
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, width, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * width, 2),
    )
    with torch.no_grad():
        model[4].weight.mul_(scale)
    return model.eval()


def test_logit_distillation_moves_student_towards_teacher_and_caches_it():
    teacher, student = _plain_cnn(16, scale=20.0), _plain_cnn(4, seed=1)
    batches = _images()
    before = _kl(student, teacher, batches)
    counting = CountingTeacher(teacher)
    distill(
        student,
        counting,
        batches,
        logits_kd_loss(),
        epochs=10,
        lr=0.01,
        optimizer="adamw",
        progress=False,
    )
    assert _kl(student, teacher, batches) < 0.5 * before
    assert counting.calls == len(batches)  # a fixed list: teacher outputs computed once


def test_students_of_one_teacher_share_its_outputs_through_a_kept_cache():
    teacher, batches = CountingTeacher(_plain_cnn(16, scale=20.0)), _images()
    shared: dict = {}
    students = []
    for seed in (1, 2):
        student = _plain_cnn(4, seed=seed)
        before = _kl(student, teacher.model, batches)
        distill(
            student,
            teacher,
            batches,
            logits_kd_loss(),
            epochs=5,
            lr=0.01,
            optimizer="adamw",
            progress=False,
            teacher_outputs=shared,
        )
        students.append(_kl(student, teacher.model, batches) < 0.7 * before)
    assert all(students)  # each still learns from the cached outputs
    assert teacher.calls == len(batches) and len(shared) == len(batches)  # once, not twice


def test_steps_budget_counts_optimiser_steps():
    teacher = tiny_cnn().eval()
    calls = []

    def loss(student, target, labels):
        calls.append(1)
        return logits_kd_loss()(student, target, labels)

    distill(copy.deepcopy(teacher), teacher, iter(_images(10)), loss, steps=7, progress=False)
    assert len(calls) == 7
    calls.clear()  # more steps than a one-shot iterator holds: stops when it runs dry
    distill(copy.deepcopy(teacher), teacher, iter(_images(3)), loss, steps=50, progress=False)
    assert len(calls) == 3


def test_embedding_distillation_closes_the_gap_to_the_teacher():
    teacher = SentenceEncoder(tiny_bert(seed=0))
    other = SentenceEncoder(tiny_bert(seed=1))  # a different encoder: a real gap to close
    pruner = TransformerPruner(other, round_to=None)
    student, _ = pruner.prune(other, {g.name: 0.5 for g in pruner.groups()})
    generator = torch.Generator().manual_seed(0)
    batches = [
        ((ids, torch.ones_like(ids)), None)
        for ids in torch.randint(5, 25, (6, 8, 10), generator=generator)
    ]

    def gap():
        with torch.no_grad():
            return sum(float(embedding_kd_loss(student(*x), teacher(*x))) for x, _ in batches)

    before = gap()
    distill(student, teacher, batches, embedding_kd_loss, epochs=10, lr=1e-2, progress=False)
    assert gap() < 0.5 * before


def test_recover_model_uses_task_hook_then_configured_method():
    teacher = tiny_cnn().eval()
    seen = {}

    def hook(student, given_teacher, config, progress):
        seen["teacher"] = given_teacher
        return student

    task = Task(
        name="t",
        model=teacher,
        example_inputs=(torch.zeros(1, 3, 8, 8),),
        evaluate=lambda m: 1.0,
        evaluate_test=lambda m: 1.0,
        train_data=_images(),
        recover=hook,
    )
    recover_model(task, copy.deepcopy(teacher), RecoveryConfig(epochs=1), progress=False)
    assert seen["teacher"] is teacher
    task.recover = None
    student = copy.deepcopy(teacher)
    recover_model(
        task, student, RecoveryConfig(epochs=1, method="distill", lr=0.01), progress=False
    )
    assert not torch.equal(student[0].weight, teacher[0].weight)


def test_recovery_config_validates_method_and_steps():
    with pytest.raises(UserInputError, match="recovery.method"):
        RecoveryConfig(method="magic")
    with pytest.raises(UserInputError, match="recovery.steps"):
        RecoveryConfig(steps=-1)


def test_auto_races_fine_tune_and_distill_on_a_depth_plan_and_keeps_the_validation_lead():
    teacher = tiny_cnn().eval()
    probe = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(1))

    def agreement(model):  # validation: closeness to the teacher's logits
        with torch.no_grad():
            return -float(nn.functional.mse_loss(model(probe), teacher(probe)))

    def never(model):
        raise AssertionError("the race must not look at the test split")

    task = Task(
        name="t",
        model=teacher,
        example_inputs=(torch.zeros(1, 3, 8, 8),),
        evaluate=agreement,
        evaluate_test=never,
        train_data=_images(),
    )
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student[0].weight.mul_(0.5)  # a damaged student: both methods have work to do
    untouched = student[0].weight.clone()
    config = RecoveryConfig(epochs=2, lr=0.01)

    raced = recover_model(task, student, config, progress=False, depth_pruned=True)
    assert set(raced.val_metric) == {"fine_tune", "distill"}
    assert raced.val_metric["fine_tune"] != raced.val_metric["distill"]
    assert raced.method == max(raced.val_metric, key=raced.val_metric.get)
    assert agreement(raced.model) == pytest.approx(raced.val_metric[raced.method])
    assert torch.equal(student[0].weight, untouched)  # each method trained its own copy

    single = recover_model(task, student, config, progress=False, depth_pruned=False)
    assert (single.method, dict(single.val_metric)) == ("fine_tune", {})
    assert single.model is student
