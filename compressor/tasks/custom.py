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

import dataclasses
import importlib
import pickle
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from compressor.config import ImagesConfig
from compressor.errors import UserInputError, one_line
from compressor.logs import LOGGER
from compressor.progress import progress_mode
from compressor.tasks.base import Task, register_task
from compressor.tasks.common import accuracy, default_ignored_layers
from compressor.tasks.image_folder import (
    AugmentedBatches,
    ImageSplit,
    load_image_split,
    normalise,
    split_holdout,
)

HF_PREFIX = "hf:"
BN_COUNTER = "num_batches_tracked"
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
    expected = model.state_dict()
    counters = [key for key in expected if key not in state and key.endswith(BN_COUNTER)]
    problems = weight_mismatches({k: v for k, v in expected.items() if k not in counters}, state)
    if problems:
        raise UserInputError(f"--weights {path} does not fit the model: {problems}")
    if counters:
        # BatchNorm's step counters: only read in training with momentum=None, absent from
        # many converted checkpoints. The model's own (zero) values stand in for them.
        LOGGER.warning(
            "--weights %s has no BatchNorm %s counters (%d layers); using the defaults",
            path,
            BN_COUNTER,
            len(counters),
        )
        state = {**state, **{key: expected[key] for key in counters}}
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


def image_folder_splits(
    data: Path,
    holdout: int = 2000,
    image_size: int | None = None,
    channels: int = 3,
    progress: str = "off",
):
    """``train`` / ``val`` / ``test`` from ``DIR/{train,val,test}``; without ``val/``, a fixed
    share of ``train/`` (at most ``holdout`` images, 10 %) is held out for the search."""
    data = Path(data)
    for split in ("train", "test"):
        if not (data / split).is_dir():
            raise UserInputError(
                f"--data {data} must hold train/ and test/ ImageFolder splits "
                "(SPLIT/<class>/<image>.jpg)"
            )

    def load(split: str, size: int | None):
        return load_image_split(data / split, image_size=size, channels=channels, progress=progress)

    train = load("train", image_size)
    size = train.images.shape[-1]
    test = load("test", size)
    _check_same_classes(data / "test", test.classes, train.classes)
    if (data / "val").is_dir():
        val = load("val", size)
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


def model_input_channels(
    model: nn.Module, example: tuple[torch.Tensor, ...] | None
) -> tuple[int, str] | None:
    """The channels the model takes and where that was read, when visible: the factory's
    example inputs, else the first ``Conv2d`` registered (usually the stem)."""
    if example is not None and example[0].dim() == 4:
        return int(example[0].shape[1]), "its example inputs"
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels, f"its first convolution {name!r}"
    return None


def resolve_channels(
    requested: int | None, model: nn.Module, example: tuple[torch.Tensor, ...] | None
) -> int:
    """``--channels`` if given (and matching the model), else what the model takes, else 3."""
    seen = model_input_channels(model, example)
    if seen is None:
        return requested or 3
    takes, where = seen
    if requested is not None and requested != takes:
        raise UserInputError(
            f"--channels is {requested} but the model takes {takes} input channels ({where}); "
            f"set --channels {takes} (images.channels in YAML)"
        )
    if takes not in (1, 3):
        raise UserInputError(
            f"the model takes {takes} input channels ({where}); image folders decode to "
            "1 (grayscale) or 3 (RGB) channels"
        )
    return takes


def _check_statistics(name: str, values: tuple[float, ...] | None, channels: int) -> None:
    if values is not None and len(values) not in (1, channels):
        raise UserInputError(
            f"--{name} has {len(values)} values but the images have {channels} channel"
            f"{'s' if channels > 1 else ''}; give 1 or {channels} values"
        )


@register_task("image-classification")
def image_classification_task(
    model: str | None = None,
    data: str | Path | None = None,
    weights: str | Path | None = None,
    trust_pickle: bool = False,
    verbose: bool = True,
    batch_size: int = 64,
    channels: int | None = None,
    image_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    augment: str | None = None,
) -> Task:
    """Your classifier (``--model pkg.module:factory``) on an ImageFolder directory.

    ``channels`` (1 or 3; default: what the model takes), ``image_size`` (square; default:
    the factory's example inputs, else the first train image), ``mean`` / ``std`` (default
    ImageNet's) and ``augment`` (default ``none``) say how the images become inputs.
    """
    if model is None or data is None:
        raise UserInputError(
            "task image-classification needs --model pkg.module:factory (or model.pt) "
            "and --data DIR (train/ and test/ ImageFolder splits)"
        )
    if model.startswith(HF_PREFIX):
        raise UserInputError(
            "image-classification takes a Python factory; hf:PATH is for "
            "the text-classification and sentence-similarity tasks"
        )
    images = ImagesConfig(channels, image_size, mean, std, augment or "none")
    network, example = build_user_model(model, Path(weights) if weights else None, trust_pickle)
    channels = resolve_channels(images.channels, network, example)
    _check_statistics("mean", images.mean, channels)
    _check_statistics("std", images.std, channels)
    if images.size is None and example is not None and example[0].dim() == 4:
        images = dataclasses.replace(images, size=int(example[0].shape[-1]))
    train, val, test = image_folder_splits(
        Path(data),
        image_size=images.size,
        channels=channels,
        progress=progress_mode(verbose),
    )

    def inputs(split: ImageSplit) -> torch.Tensor:
        return normalise(split.images, images.mean, images.std)

    x_val, x_test = inputs(val), inputs(test)

    return Task(
        name="image-classification",
        model=network,
        example_inputs=example or (torch.zeros(1, *x_val.shape[1:]),),
        evaluate=lambda m: accuracy(m, x_val, val.labels),
        evaluate_test=lambda m: accuracy(m, x_test, test.labels),
        train_data=AugmentedBatches(inputs(train), train.labels, batch_size, images.augment),
        ignored_layers=default_ignored_layers(network),
        description=f"{model} on {data} ({len(train.classes)} classes, {channels} channel"
        f"{'s' if channels > 1 else ''}, {x_val.shape[-2]}x{x_val.shape[-1]}, "
        f"augment {images.augment})",
    )
