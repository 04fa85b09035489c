"""Text classification: a fine-tuned ``AutoModelForSequenceClassification`` on TSV files.

``--model hf:PATH`` is any local sequence-classification folder (BERT, DistilBERT, RoBERTa,
ELECTRA, ...) with its tokenizer; ``--data DIR`` holds ``train.tsv`` and ``test.tsv`` (and
optionally ``dev.tsv``; otherwise a fixed 10 % of ``train.tsv``, at most 2 000 lines, is held
out for the search) with ``text<TAB>label`` or ``text_a<TAB>text_b<TAB>label`` lines; a first
line whose last column is ``label`` is a header. Labels are the model's label names
(``config.label2id``) or output indices (``0``, ``1``, ...).

The metric is accuracy; the search prunes attention heads and FFN neurons per layer (the
same :class:`~compressor.actions.pruner.Pruner` as the sentence encoder), and recovery
distils the unpruned model's logits (KL at T = 4 mixed with cross-entropy on the labels)
on the train split.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from compressor.config import RecoveryConfig
from compressor.errors import UserInputError
from compressor.logs import LOGGER
from compressor.progress import Steps, progress_mode
from compressor.tasks.base import Task, register_task
from compressor.tasks.sentence_similarity import MAX_LEN, example_inputs

SPLIT_FILES = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
HOLDOUT = 2000  # at most this many train lines held out for the search without dev.tsv
BATCH_SIZE = 32
ADAMW_LR = 5e-5  # recovery's rate unless recovery.lr is set


@dataclass(frozen=True)
class LabelledTexts:
    """One split: texts (or text pairs) and their label strings, as read from the file."""

    path: Path
    first: tuple[str, ...]
    second: tuple[str, ...] | None  # the second text of each pair, None for single texts
    labels: tuple[str, ...]
    lines: tuple[int, ...]  # line numbers, for error messages

    def subset(self, index: Sequence[int]) -> LabelledTexts:
        def pick(column):
            return None if column is None else tuple(column[i] for i in index)

        return LabelledTexts(
            self.path, pick(self.first), pick(self.second), pick(self.labels), pick(self.lines)
        )


def read_tsv(path: Path) -> LabelledTexts:
    """``text<TAB>label`` or ``text_a<TAB>text_b<TAB>label`` lines (one layout per file)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path} does not exist")
    rows, width = [], None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if width is None and fields[-1].strip().lower() == "label":
            width = len(fields)  # a header line
            continue
        width = width or len(fields)
        if len(fields) not in (2, 3) or len(fields) != width:
            raise UserInputError(
                f"{path}:{number}: expected 'text<TAB>label' or 'text_a<TAB>text_b<TAB>label' "
                f"(the same columns on every line); got {len(fields)} columns"
            )
        rows.append((number, fields))
    if not rows:
        raise UserInputError(f"{path} holds no examples (text<TAB>label lines)")
    pairs = width == 3
    return LabelledTexts(
        path,
        tuple(fields[0] for _, fields in rows),
        tuple(fields[1] for _, fields in rows) if pairs else None,
        tuple(fields[-1].strip() for _, fields in rows),
        tuple(number for number, _ in rows),
    )


def label_ids(split: LabelledTexts, label2id: dict[str, int], outputs: int) -> torch.Tensor:
    """Class indices of ``split``'s labels: the model's label names, else output indices."""
    ids = []
    for label, line in zip(split.labels, split.lines, strict=True):
        if label in label2id:
            ids.append(label2id[label])
        elif label.isdigit() and int(label) < outputs:
            ids.append(int(label))
        else:
            names = ", ".join(sorted(label2id, key=label2id.get))
            raise UserInputError(
                f"{split.path}:{line}: label {label!r} has no output in the model "
                f"({outputs} outputs: {names}, or 0..{outputs - 1})"
            )
    return torch.tensor(ids, dtype=torch.int64)


class SequenceClassifier(nn.Module):
    """A Hugging Face sequence classifier as one module: token ids, mask (and for BERT-style
    text pairs, segment ids) in, logits out — what tracing, ONNX export, FLOPs counting and
    timing need."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        segments = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **segments).logits

    def takes_segments(self) -> bool:
        """Whether the wrapped model reads segment ids (BERT does, DistilBERT does not)."""
        return "token_type_ids" in inspect.signature(self.model.forward).parameters


def load_classifier(path: Path) -> SequenceClassifier:
    """``AutoModelForSequenceClassification.from_pretrained`` on a local folder, offline."""
    from transformers import AutoModelForSequenceClassification

    path = Path(path)
    if not (path / "config.json").is_file():
        raise UserInputError(f"{path} is not a Hugging Face model folder (no config.json)")
    model = AutoModelForSequenceClassification.from_pretrained(
        path, local_files_only=True, attn_implementation="sdpa"
    )
    return SequenceClassifier(model).eval()


def tokenize(
    tokenizer,
    split: LabelledTexts,
    labels: torch.Tensor,
    segments: bool = False,
    progress: str = "off",
):
    """Length-sorted batches ``((input_ids, attention_mask[, token_type_ids]), labels)``
    (little padding); segment ids only for text pairs into a model that reads them."""
    second = split.second or ("",) * len(split.first)
    order = sorted(range(len(split.first)), key=lambda i: len(split.first[i]) + len(second[i]))
    total = (len(order) + BATCH_SIZE - 1) // BATCH_SIZE
    batches = []
    with Steps(
        f"tokenizing {split.path.name}", total, mode=progress, every=max(1, total // 10)
    ) as steps:
        for start in range(0, len(order), BATCH_SIZE):
            index = order[start : start + BATCH_SIZE]
            encoded = tokenizer(
                [split.first[i] for i in index],
                [split.second[i] for i in index] if split.second else None,
                padding=True,
                truncation=True,
                max_length=MAX_LEN,
                return_tensors="pt",
            )
            inputs = (encoded["input_ids"], encoded["attention_mask"])
            if segments and split.second and "token_type_ids" in encoded:
                inputs += (encoded["token_type_ids"],)
            batches.append((inputs, labels[index]))
            steps.advance()
    return batches


@torch.no_grad()
def batch_accuracy(model: nn.Module, batches) -> float:
    """Share of examples whose top logit is the label."""
    model.eval()
    correct = total = 0
    for inputs, labels in batches:
        correct += int((model(*inputs).argmax(-1) == labels).sum())
        total += len(labels)
    return correct / total


def text_splits(data: Path) -> dict[str, LabelledTexts]:
    """``train`` / ``dev`` / ``test``; without ``dev.tsv`` a fixed share of train."""
    data = Path(data)
    missing = [
        name for key, name in SPLIT_FILES.items() if key != "dev" and not (data / name).is_file()
    ]
    if not data.is_dir() or missing:
        raise UserInputError(
            f"--data {data} must be a folder holding train.tsv and test.tsv (optionally "
            "dev.tsv) with text<TAB>label lines"
        )
    splits = {
        key: read_tsv(data / name) for key, name in SPLIT_FILES.items() if (data / name).is_file()
    }
    if "dev" not in splits:
        train = splits["train"]
        holdout = max(1, min(HOLDOUT, len(train.labels) // 10))
        order = torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(0))
        splits["train"], splits["dev"] = (
            train.subset(order[holdout:].tolist()),
            train.subset(order[:holdout].tolist()),
        )
    if len(set(splits["train"].labels)) < 2:
        raise UserInputError(
            f"{data / 'train.tsv'} has one class only ({splits['train'].labels[0]}); "
            "classification needs examples of at least two labels"
        )
    return splits


def _label_map(config) -> dict[str, int]:
    return {str(name): int(index) for name, index in (config.label2id or {}).items()}


@register_task("text-classification")
def text_classification_task(
    model: str | None = None, data: str | Path | None = None, verbose: bool = True
) -> Task:
    """Your sequence classifier (``--model hf:PATH``) on ``--data DIR`` with TSV splits."""
    if model is None or data is None or not model.startswith("hf:"):
        raise UserInputError(
            "task text-classification needs --model hf:PATH (an "
            "AutoModelForSequenceClassification folder) and --data DIR (train.tsv, test.tsv)"
        )
    from transformers import AutoTokenizer

    from compressor.actions.prune_transformer import TransformerPruner
    from compressor.distill import distill, logits_kd_loss

    path = Path(model[3:])
    splits = text_splits(Path(data))
    network = load_classifier(path)
    config = network.model.config
    label2id = _label_map(config)
    labels = {key: label_ids(split, label2id, config.num_labels) for key, split in splits.items()}
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    segments = splits["train"].second is not None and network.takes_segments()
    mode = progress_mode(verbose)
    batches = {
        key: tokenize(tokenizer, split, labels[key], segments, mode)
        for key, split in splits.items()
    }
    example = example_inputs(tokenizer.vocab_size)
    if segments:  # the second half of the example is the second text
        example += (torch.arange(example[0].shape[1]).ge(example[0].shape[1] // 2).long()[None],)

    def recover(student, teacher, recovery, progress=True):
        # The configured default rate is SGD's for CNNs; AdamW on a transformer diverges at
        # it, so an untouched default becomes the usual BERT fine-tuning rate.
        lr = ADAMW_LR if recovery.lr == RecoveryConfig().lr else recovery.lr
        before, kept = batch_accuracy(student, batches["dev"]), copy.deepcopy(student)
        student = distill(
            student,
            teacher,
            batches["train"],
            logits_kd_loss(),
            epochs=recovery.epochs,
            steps=recovery.steps,
            lr=lr,
            optimizer="adamw",
            progress=progress,
        )
        after = batch_accuracy(student, batches["dev"])
        if after < before:  # a short run can land worse than it started: keep the start
            LOGGER.info(
                f"recovery lowered dev accuracy ({before:.2%} -> {after:.2%}); kept the "
                "variant before recovery (raise recovery.steps or recovery.lr)"
            )
            return kept
        return student

    return Task(
        name="text-classification",
        model=network,
        example_inputs=example,
        evaluate=lambda m: batch_accuracy(m, batches["dev"]),
        evaluate_test=lambda m: batch_accuracy(m, batches["test"]),
        train_data=batches["train"],
        description=f"{path} on {data} ({config.num_labels} labels, "
        f"{len(splits['train'].labels)} train / {len(splits['dev'].labels)} dev / "
        f"{len(splits['test'].labels)} test)",
        pruner=TransformerPruner(network),
        recover=recover,
    )
