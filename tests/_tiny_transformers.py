"""Tiny randomly initialised BERT / DistilBERT built from a config (no download), and a
matching word-level tokenizer folder, for the fast transformer tests."""

from __future__ import annotations

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


def tiny_bert(attn: str = "eager", layers: int = 2, seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=64,
        vocab_size=len(WORDS) + 5,
        max_position_embeddings=64,
    )
    return BertModel._from_config(config, attn_implementation=attn).eval()


def tiny_distilbert(attn: str = "eager", seed: int = 0):
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(seed)
    config = DistilBertConfig(
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=64,
        vocab_size=len(WORDS) + 5,
        max_position_embeddings=64,
    )
    return DistilBertModel._from_config(config, attn_implementation=attn).eval()


def save_tiny_bert_folder(path: Path) -> Path:
    """A local Hugging Face folder (config, weights, tokenizer) for ``--model hf:PATH``."""
    from transformers import BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(path)
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
