"""Bring your own model: ``--model pkg.module:factory [--weights FILE] --data DIR``.

A factory is imported with :mod:`importlib` (user strings are never evaluated) and called
with no arguments; it returns the model, or ``(model, example_inputs)``. Weights are a
``.safetensors`` file or a state dict read by ``torch.load(weights_only=True)`` (no pickled
code runs), loaded with strict key matching. ``hf:PATH`` names a local Hugging Face folder
(see :mod:`compressor.tasks.sentence_similarity`). A whole model saved with
``torch.save(model, "model.pt")`` is a pickle: unpickling runs code stored in the file, so
``--model model.pt`` is refused unless ``--trust-pickle`` says its source is trusted.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from compressor.errors import UserInputError, one_line
from compressor.tasks.base import Task, register_task
from compressor.tasks.common import accuracy, default_ignored_layers
from compressor.tasks.image_folder import (
    AugmentedBatches,
    load_image_split,
    normalise,
    split_holdout,
)

HF_PREFIX = "hf:"
# ``--model FILE`` with one of these suffixes is a pickled whole model (torch.save(model)).
PICKLED_MODEL_SUFFIXES = (".pt", ".pth", ".pkl", ".bin")


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
    spec: str, weights: Path | None = None, trust_pickle: bool = False
) -> tuple[nn.Module, tuple[torch.Tensor, ...] | None]:
    """Call the factory (or unpickle a trusted model file); load ``weights`` when given."""
    if is_model_file(spec):
        model, example = load_pickled_model(Path(spec), trust_pickle), None
    else:
        factory = import_factory(spec)
        try:
            made = factory()
        except Exception as exc:  # the user's code: report it in one line, not a traceback
            raise UserInputError(f"--model {spec!r}: the factory raised {one_line(exc)}") from None
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


def is_model_file(spec: str) -> bool:
    """``--model model.pt``: a file path rather than ``pkg.module:factory``."""
    return ":" not in spec and Path(spec).suffix in PICKLED_MODEL_SUFFIXES


def load_pickled_model(path: Path, trust_pickle: bool) -> nn.Module:
    """A model saved whole with ``torch.save(model)``; only with ``--trust-pickle``."""
    if not path.is_file():
        raise UserInputError(f"--model {path} does not exist")
    if not trust_pickle:
        raise UserInputError(
            f"--model {path} is a pickled model and loading it runs code stored in the file: "
            "pass --trust-pickle if you trust its source, or give --model pkg.module:factory "
            "with --weights (a state dict, loaded without running code)"
        )
    try:
        # weights_only=False is the unsafe unpickler, reached only through --trust-pickle.
        loaded = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UserInputError(f"--model {path} could not be unpickled ({one_line(exc)})") from None
    if isinstance(loaded, dict):
        raise UserInputError(
            f"--model {path} holds a state dict, not a model: "
            "give --model pkg.module:factory --weights FILE"
        )
    return loaded


def load_weights(model: nn.Module, path: Path) -> None:
    """Strictly load a ``.safetensors`` file or a ``torch.save``-d state dict into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"--weights {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:
            raise UserInputError(
                f"--weights {path} is not a readable safetensors file ({one_line(exc)})"
            ) from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # it holds objects, e.g. a whole pickled model
            raise UserInputError(
                f"--weights {path} holds pickled objects, not a plain state dict; if it is a "
                f"whole model saved with torch.save(model), pass --model {path} --trust-pickle"
            ) from None
        except Exception as exc:
            raise UserInputError(
                f"--weights {path} is not a readable state dict ({type(exc).__name__})"
            ) from None
    if not isinstance(state, dict):
        raise UserInputError(f"--weights {path} holds a {type(state).__name__}, not a state dict")
    problems = weight_mismatches(model.state_dict(), state)
    if problems:
        raise UserInputError(f"--weights {path} does not fit the model: {problems}")
    model.load_state_dict(state, strict=True)


def weight_mismatches(expected: dict, given: dict, shown: int = 3) -> str:
    """The first missing, unexpected and wrongly shaped keys, in one line ('' if it fits)."""

    def first(keys: list[str]) -> str:
        more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
        return ", ".join(keys[:shown]) + more

    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    reshaped = [
        f"{key} {tuple(given[key].shape)} vs model {tuple(value.shape)}"
        for key, value in expected.items()
        if key in given and getattr(given[key], "shape", None) != value.shape
    ]
    parts = [
        f"{label} {first(keys)}"
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", reshaped),
        )
        if keys
    ]
    return "; ".join(parts)


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
    _check_same_classes(data / "test", test.classes, train.classes)
    if (data / "val").is_dir():
        val = load_image_split(data / "val", image_size=train.images.shape[-1])
        _check_same_classes(data / "val", val.classes, train.classes)
    else:
        train, val = split_holdout(train, max(1, min(holdout, len(train.labels) // 10)))
    return train, val, test


def _check_same_classes(split: Path, classes: tuple[str, ...], train: tuple[str, ...]) -> None:
    # Labels are class indices in alphabetical order: different folders shift every label.
    if classes != train:
        raise UserInputError(
            f"{split} has classes {', '.join(classes)} but train/ has {', '.join(train)}; "
            "every split needs the same class sub-folders"
        )


@register_task("image-classification")
def image_classification_task(
    model: str | None = None,
    data: str | Path | None = None,
    weights: str | Path | None = None,
    trust_pickle: bool = False,
    verbose: bool = True,
    batch_size: int = 64,
) -> Task:
    """Your classifier (``--model pkg.module:factory``) on an ImageFolder directory."""
    if model is None or data is None:
        raise UserInputError(
            "task image-classification needs --model pkg.module:factory (or model.pt) "
            "and --data DIR (train/ and test/ ImageFolder splits)"
        )
    if model.startswith(HF_PREFIX):
        raise UserInputError(
            "image-classification takes a Python factory; hf:PATH is for "
            "the sentence-similarity task"
        )
    network, example = build_user_model(model, Path(weights) if weights else None, trust_pickle)
    train, val, test = image_folder_splits(Path(data))
    x_val, x_test = normalise(val.images), normalise(test.images)

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
