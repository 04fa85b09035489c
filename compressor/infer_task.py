"""Which task a run is, when ``--task`` is not given: read from ``--model`` and ``--data``.

Inferred only when the inputs leave one reading (a factory or pickled model with an image
folder is image classification; a Hugging Face folder says in ``config.json`` whether it is
a sequence classifier, a causal LM or a bare encoder); otherwise one line names the
``--task`` to pass. Kept free of torch imports: the config module calls it.
"""

from __future__ import annotations

import json
from pathlib import Path

from compressor.errors import UserInputError

DEFAULT_TASK = "digits"
HF_PREFIX = "hf:"
TEXT_FILES = ("train.tsv", "test.tsv")


def infer_task(model: str | None, data: Path | None) -> str:
    """The task for these inputs, or :class:`UserInputError` naming the ``--task`` to pass."""
    if model is None and data is None:
        return DEFAULT_TASK
    if model is not None and model.startswith(HF_PREFIX):
        return _hf_task(Path(model[len(HF_PREFIX) :]), data)
    if model is not None:
        if data is not None and data.is_dir() and (data / "train").is_dir():
            return "image-classification"
        raise UserInputError(
            f"cannot tell the task of --model {model} without --data DIR holding train/ and "
            "test/ image folders; pass --task image-classification --data DIR"
        )
    if data.is_file():
        return "sentence-similarity"  # a pair file with the default encoder
    raise UserInputError(
        f"cannot tell the task from --data {data} alone; pass --task (resnet56-cifar10 or "
        "minilm-stsb for the shared data folder) or --model with your model"
    )


def _hf_task(path: Path, data: Path | None) -> str:
    architectures = _architectures(path)
    if any(name.endswith("ForSequenceClassification") for name in architectures):
        return "text-classification"
    if any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures):
        return _causal_lm_task(path)
    if data is not None and data.is_file():
        return "sentence-similarity"
    if data is not None and all((data / name).is_file() for name in TEXT_FILES):
        raise UserInputError(
            f"{path} is a bare encoder ({', '.join(architectures) or 'no architectures'}), not a "
            "sequence classifier: text-classification needs an AutoModelForSequenceClassification "
            "folder; pass --task sentence-similarity --data PAIRS.tsv for an embedding model"
        )
    raise UserInputError(
        f"cannot tell the task of --model hf:{path}; pass --task text-classification "
        "(--data DIR with train.tsv and test.tsv) or --task sentence-similarity "
        "(--data PAIRS.tsv)"
    )


def _causal_lm_task(path: Path) -> str:
    from compressor.tasks import task_names  # imports torch: only on this path

    if "causal-lm" in task_names():
        return "causal-lm"
    raise UserInputError(
        f"hf:{path} is a causal language model, and no task for those is available in this "
        f"version; tasks: {', '.join(task_names())}"
    )


def _architectures(path: Path) -> list[str]:
    config = path / "config.json"
    if not config.is_file():
        raise UserInputError(
            f"--model hf:{path} is not a Hugging Face model folder (no config.json)"
        )
    try:
        return list(json.loads(config.read_text()).get("architectures") or [])
    except (OSError, ValueError, AttributeError) as exc:
        raise UserInputError(f"{config} could not be read ({type(exc).__name__})") from None
