"""Bring your own model: ``--model pkg.module:factory [--weights FILE] --data DIR``.

A factory is imported with :mod:`importlib` (user strings are never evaluated) and called
with no arguments; it returns the model, or ``(model, example_inputs)``. Weights are a
``.safetensors`` file or a state dict read by ``torch.load(weights_only=True)`` (no pickled
code runs), loaded with strict key matching. ``hf:PATH`` names a local Hugging Face folder
(see :mod:`compressor.tasks.sentence_similarity`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from compressor.errors import UserInputError
from compressor.tasks import register_task
from compressor.tasks.base import Task
from compressor.tasks.digits import accuracy
from compressor.tasks.image_folder import (
    AugmentedBatches,
    load_image_split,
    normalise,
    split_holdout,
)

HF_PREFIX = "hf:"


def import_factory(spec: str) -> Callable[[], object]:
    """``pkg.module:factory`` (``factory`` may be dotted: ``Class.build``) -> the callable."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise UserInputError(f"--model {spec!r} must look like pkg.module:factory or hf:PATH")
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserInputError(f"--model {spec!r}: cannot import {module_name!r} ({exc})") from None
    for attr in attr_path.split("."):
        if not hasattr(target, attr):
            raise UserInputError(
                f"--model {spec!r}: {module_name!r} has no attribute {attr_path!r}"
            )
        target = getattr(target, attr)
    if not callable(target):
        raise UserInputError(f"--model {spec!r} is not callable")
    return target


def build_user_model(
    spec: str, weights: Path | None = None
) -> tuple[nn.Module, tuple[torch.Tensor, ...] | None]:
    """Call the factory; load ``weights`` into the model when given."""
    made = import_factory(spec)()
    model, example = made if isinstance(made, tuple) else (made, None)
    if not isinstance(model, nn.Module):
        raise UserInputError(
            f"--model {spec!r} returned {type(model).__name__}, not a torch module"
        )
    if example is not None:
        example = (example,) if isinstance(example, torch.Tensor) else tuple(example)
    if weights is not None:
        load_weights(model, weights)
    return model.eval(), example


def load_weights(model: nn.Module, path: Path) -> None:
    """Strictly load a ``.safetensors`` file or a ``torch.save``-d state dict into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"--weights {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserInputError(
                f"--weights {path} is not a readable state dict ({type(exc).__name__})"
            ) from None
    if not isinstance(state, dict):
        raise UserInputError(f"--weights {path} holds a {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise UserInputError(f"--weights {path} does not fit the model: {first}") from None


def image_folder_splits(data: Path, holdout: int = 2000):
    """``train`` / ``val`` / ``test`` from ``DIR/{train,val,test}``; without ``val/``, a fixed
    share of ``train/`` (at most ``holdout`` images, 10 %) is held out for the search."""
    data = Path(data)
    for split in ("train", "test"):
        if not (data / split).is_dir():
            raise UserInputError(
                f"--data {data} must hold train/ and test/ ImageFolder splits "
                "(SPLIT/<class>/<image>.jpg)"
            )
    train = load_image_split(data / "train")
    test = load_image_split(data / "test", image_size=train.images.shape[-1])
    if (data / "val").is_dir():
        val = load_image_split(data / "val", image_size=train.images.shape[-1])
    else:
        train, val = split_holdout(train, max(1, min(holdout, len(train.labels) // 10)))
    return train, val, test


@register_task("image-classification")
def image_classification_task(
    model: str | None = None,
    data: str | Path | None = None,
    weights: str | Path | None = None,
    verbose: bool = True,
    batch_size: int = 64,
) -> Task:
    """Your classifier (``--model pkg.module:factory``) on an ImageFolder directory."""
    if model is None or data is None:
        raise UserInputError(
            "task image-classification needs --model pkg.module:factory "
            "and --data DIR (train/ and test/ ImageFolder splits)"
        )
    if model.startswith(HF_PREFIX):
        raise UserInputError(
            "image-classification takes a Python factory; hf:PATH is for "
            "the sentence-similarity task"
        )
    network, example = build_user_model(model, Path(weights) if weights else None)
    train, val, test = image_folder_splits(Path(data))
    x_val, x_test = normalise(val.images), normalise(test.images)
    from compressor.api import default_ignored_layers

    return Task(
        name="image-classification",
        model=network,
        example_inputs=example or (torch.zeros(1, *x_val.shape[1:]),),
        evaluate=lambda m: accuracy(m, x_val, val.labels),
        evaluate_test=lambda m: accuracy(m, x_test, test.labels),
        train_data=AugmentedBatches(normalise(train.images), train.labels, batch_size),
        ignored_layers=default_ignored_layers(network),
        description=f"{model} on {data} ({len(train.classes)} classes)",
    )
