"""The benchmark tasks, optionally cut to small subsets for ``--quick`` runs.

The built-in tasks (``compressor.tasks``) use the full splits; a smoke test or a search
benchmark with many short studies needs the same task on fewer images / pairs. Subsets
are fixed (first N of a seeded order), so every method sees the same ones.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from compressor.config import CompressConfig
from compressor.tasks import Task, get_task

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CONFIG_FILES = {
    "digits": "digits.yaml",
    "resnet56-cifar10": "resnet56-cifar10.yaml",
    "minilm-stsb": "minilm-stsb.yaml",
}


def task_config(task: str, **sections) -> CompressConfig:
    """The task's shipped config (``configs/*.yaml``), with section overrides
    (``search={"trials": 8}``) applied on top."""
    data = yaml.safe_load((CONFIGS / CONFIG_FILES[task]).read_text())
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return CompressConfig.from_dict(data)


def cifar_task(
    data: Path | None,
    *,
    val_images: int | None = None,
    test_images: int | None = None,
    train_images: int | None = None,
    batch_size: int = 128,
) -> Task:
    """``resnet56-cifar10`` with its validation / test / training sets optionally cut."""
    from compressor.tasks.common import accuracy
    from compressor.tasks.image_folder import AugmentedBatches, normalise, split_holdout
    from compressor.tasks.resnet_cifar import VALIDATION_IMAGES, cifar_splits

    task = get_task("resnet56-cifar10", data=data, verbose=False)
    if val_images is test_images is train_images is None:
        return task
    splits = cifar_splits(Path(data) if data else _default_root())
    train, val = split_holdout(splits["train"], VALIDATION_IMAGES)  # the task's own split
    x_val, y_val = normalise(val.images)[:val_images], val.labels[:val_images]
    test = splits["test"].subset(_spread(len(splits["test"].labels), test_images))
    x_test = normalise(test.images)
    x_train = normalise(train.images)[:train_images]
    return dataclasses.replace(
        task,
        evaluate=lambda m: accuracy(m, x_val, y_val),
        evaluate_test=lambda m: accuracy(m, x_test, test.labels),
        train_data=AugmentedBatches(x_train, train.labels[:train_images], batch_size),
        description=task.description
        + f" (cut: val {len(y_val)}, test {len(test.labels)}, train {len(x_train)})",
    )


def minilm_task(
    data: Path | None,
    *,
    test_pairs: int | None = None,
    dev_pairs: int | None = None,
    train_sentences: int | None = None,
) -> Task:
    """``minilm-stsb`` with sts-test / the searched sts-dev part / sts-train optionally cut."""
    from compressor.distill import embedding_recovery
    from compressor.errors import UserInputError
    from compressor.tasks.sentence_similarity import (
        SEARCH_PAIRS,
        STSB,
        minilm_path,
        read_pairs,
        sentence_task,
        subset_pairs,
    )

    if test_pairs is dev_pairs is train_sentences is None:
        return get_task("minilm-stsb", data=data, verbose=False)
    root = Path(data) if data else _default_root()
    missing = [str(root / p) for p in STSB.values() if not (root / p).is_file()]
    if missing:
        raise UserInputError(f"STS-B data not found: {', '.join(missing)}; pass --data DIR")
    splits = {split: read_pairs(root / path) for split, path in STSB.items()}
    splits["dev"] = subset_pairs(splits["dev"], dev_pairs or SEARCH_PAIRS)
    if test_pairs:
        splits["test"] = subset_pairs(splits["test"], test_pairs)
    task = sentence_task("minilm-stsb", minilm_path(), splits, "all-MiniLM-L6-v2, STS-B (cut)")
    if train_sentences:
        batches = [inputs for inputs, _ in task.train_data][: max(1, train_sentences // 32)]
        task = dataclasses.replace(
            task,
            train_data=[(batch, None) for batch in batches],
            recover=embedding_recovery(batches),
        )
    return task


def _spread(total: int, count: int | None):
    import torch

    if count is None or count >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(0))[:count]


def _default_root() -> Path:
    from compressor.tasks.common import default_data_root

    return default_data_root()
