"""Tiny randomly initialised BERT / DistilBERT built from a config (no download), and a
matching word-level tokenizer folder, for the fast transformer tests."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

WORDS = (
    "a",
    "man",
    "woman",
    "is",
    "are",
    "playing",
    "guitar",
    "piano",
    "eating",
    "food",
    "the",
    "dog",
    "cat",
    "runs",
    "sleeps",
    "on",
    "grass",
    "sofa",
    "child",
    "plays",
    "ball",
)


def tiny_config(kind: str = "bert", layers: int = 2, **extra):
    """The config of a 2-layer, 32-wide, 4-head BERT or DistilBERT over :data:`WORDS`."""
    from transformers import BertConfig, DistilBertConfig

    shared = {"vocab_size": len(WORDS) + 5, "max_position_embeddings": 64, **extra}
    if kind == "bert":
        return BertConfig(
            hidden_size=32,
            num_hidden_layers=layers,
            num_attention_heads=4,
            intermediate_size=64,
            **shared,
        )
    return DistilBertConfig(dim=32, n_layers=layers, n_heads=4, hidden_dim=64, **shared)


def tiny_bert(attn: str = "eager", layers: int = 2, seed: int = 0):
    from transformers import BertModel

    torch.manual_seed(seed)
    config = tiny_config("bert", layers)
    return BertModel._from_config(config, attn_implementation=attn).eval()


def tiny_distilbert(attn: str = "eager", seed: int = 0):
    from transformers import DistilBertModel

    torch.manual_seed(seed)
    return DistilBertModel._from_config(tiny_config("distilbert"), attn_implementation=attn).eval()


def save_word_tokenizer(path: Path):
    """A word-level BERT tokenizer over :data:`WORDS`, saved into ``path``."""
    from transformers import BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab))
    tokenizer.save_pretrained(path)
    return tokenizer


def save_tiny_bert_folder(path: Path) -> Path:
    """A local Hugging Face folder (config, weights, tokenizer) for ``--model hf:PATH``."""
    save_word_tokenizer(path)
    tiny_bert().save_pretrained(path)
    return path


def write_pairs(path: Path, count: int = 24) -> Path:
    """``sentence1<TAB>sentence2<TAB>score`` lines built from the tiny vocabulary."""
    generator = torch.Generator().manual_seed(0)
    lines = []
    for _ in range(count):
        a = " ".join(WORDS[i] for i in torch.randint(0, len(WORDS), (6,), generator=generator))
        b = " ".join(WORDS[i] for i in torch.randint(0, len(WORDS), (6,), generator=generator))
        lines.append(f"{a}\t{b}\t{float(torch.rand(1, generator=generator)) * 5:.2f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def save_tiny_classifier_folder(
    path: Path, kind: str = "bert", data: Path | None = None, count: int = 64, pairs: bool = False
) -> Path:
    """A local ``AutoModelForSequenceClassification`` folder (random init, labels neg / pos)
    with its tokenizer.

    With ``data``, also writes ``data/train.tsv`` and ``data/test.tsv`` (``text<TAB>label``,
    or ``text_a<TAB>text_b<TAB>label`` with ``pairs``) labelled by the model itself, its
    classifier bias shifted so the labels are balanced: the unpruned model scores 100 %, so
    a compressed model's accuracy is its agreement with the original.
    """
    from transformers import BertForSequenceClassification, DistilBertForSequenceClassification

    tokenizer = save_word_tokenizer(path)
    torch.manual_seed(0)
    config = tiny_config(kind, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    classes = {"bert": BertForSequenceClassification}
    model = classes.get(kind, DistilBertForSequenceClassification)(config).eval()
    if data is not None:
        _write_labelled_texts(model, tokenizer, data, count, pairs)
    model.save_pretrained(path)
    return path


@torch.no_grad()
def _write_labelled_texts(model, tokenizer, folder: Path, count: int, pairs: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(1)
    accepted = inspect.signature(model.forward).parameters

    def sentence() -> str:
        return " ".join(WORDS[i] for i in torch.randint(0, len(WORDS), (6,), generator=generator))

    def margins(rows):
        encoded = tokenizer(*zip(*rows, strict=True), padding=True, return_tensors="pt")
        logits = model(**{k: v for k, v in encoded.items() if k in accepted}).logits
        return logits[:, 1] - logits[:, 0]

    splits = {
        split: [(sentence(), sentence()) if pairs else (sentence(),) for _ in range(n)]
        for split, n in (("train", count), ("test", count // 2))
    }
    # Logits of unit scale (the initialisation's are ~0.01: distillation targets would all be
    # uniform), then the bias that makes the argmax split the train texts in half.
    model.classifier.weight *= 100.0
    model.classifier.bias[1] -= margins(splits["train"]).median() + 1e-4
    for split, rows in splits.items():
        labels = ["pos" if m > 0 else "neg" for m in margins(rows)]
        lines = ["\t".join((*row, label)) for row, label in zip(rows, labels, strict=True)]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")


def save_tiny_sentence_folder(path: Path) -> Path:
    """A sentence-transformers folder (tiny BERT, mean pooling, L2 normalisation), the
    layout of all-MiniLM-L6-v2's checkpoint."""
    from sentence_transformers import SentenceTransformer, models

    bert = save_tiny_bert_folder(path.parent / f"{path.name}-bert")
    modules = [models.Transformer(str(bert)), models.Pooling(32, "mean"), models.Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(path))
    return path
