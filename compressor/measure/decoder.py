"""Running an exported decoder in ONNX Runtime: perplexity, greedy decoding, parity.

:class:`DecoderSession` drives the KV-cache graph of :mod:`compressor.actions.export_decoder`
the way a generation loop does: :meth:`~DecoderSession.prefill` runs a prompt with an empty
cache, :meth:`~DecoderSession.step` one token with the cache the previous call returned.
Perplexity is ``exp(mean next-token negative log-likelihood)`` over fixed text windows, each
window scored as one prompt (the cache starts empty, as in the PyTorch evaluation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from compressor.measure.onnx_runtime import open_session

Cache = dict[str, np.ndarray]


class DecoderSession:
    """An ORT session over a KV-cache decoder graph.

    Args:
        path: the ``model.onnx`` written by ``export_decoder``.
        threads: intra-op threads (None: ONNX Runtime's default).
        spinning: let idle threads spin (only in a process that does nothing else).
    """

    def __init__(self, path: str | Path, *, threads: int | None = None, spinning: bool = False):
        self.path = Path(path)
        self.session = open_session(self.path, threads=threads, spinning=spinning)
        inputs = {item.name: item for item in self.session.get_inputs()}
        self.input_names = set(inputs)
        self.past_names = sorted(
            (n for n in inputs if n.startswith("past_key_values.")), key=_cache_order
        )
        self.present_names = [n.replace("past_key_values.", "present.") for n in self.past_names]
        shape = inputs[self.past_names[0]].shape if self.past_names else [1, 1, 0, 1]
        self._kv_heads, self._head_dim = int(shape[1]), int(shape[3])

    def empty_cache(self, batch: int = 1) -> Cache:
        empty = np.zeros((batch, self._kv_heads, 0, self._head_dim), np.float32)
        return {name: empty for name in self.past_names}

    def run(self, ids: np.ndarray, cache: Cache) -> tuple[np.ndarray, Cache]:
        """Logits for ``ids`` (batch x new tokens) after the cached tokens, and the new cache."""
        outputs = self.session.run(["logits", *self.present_names], self.feed(ids, cache))
        return outputs[0], dict(zip(self.past_names, outputs[1:], strict=True))

    def feed(self, ids: np.ndarray, cache: Cache) -> dict[str, np.ndarray]:
        """The graph's inputs for ``ids`` after the cached tokens."""
        past = next(iter(cache.values())).shape[2] if cache else 0
        total = past + ids.shape[1]
        feed = {
            "input_ids": ids.astype(np.int64),
            "attention_mask": np.ones((ids.shape[0], total), np.int64),
            "position_ids": np.broadcast_to(
                np.arange(past, total, dtype=np.int64), ids.shape
            ).copy(),
            **cache,
        }
        return {name: value for name, value in feed.items() if name in self.input_names}

    def prefill(self, ids: np.ndarray) -> tuple[np.ndarray, Cache]:
        return self.run(ids, self.empty_cache(ids.shape[0]))

    def step(self, token: np.ndarray, cache: Cache) -> tuple[np.ndarray, Cache]:
        return self.run(token.reshape(-1, 1), cache)

    def greedy(self, prompt: Sequence[int], new_tokens: int) -> list[int]:
        """``new_tokens`` greedily decoded tokens after ``prompt``, using the cache."""
        logits, cache = self.prefill(np.asarray([prompt]))
        out = []
        for _ in range(new_tokens):
            token = int(logits[0, -1].argmax())
            out.append(token)
            logits, cache = self.step(np.asarray([token]), cache)
        return out


def _cache_order(name: str) -> tuple[int, int]:
    _, layer, kind = name.rsplit(".", 2)
    return int(layer), 0 if kind == "key" else 1


@dataclass(frozen=True)
class Likelihood:
    """Mean next-token negative log-likelihood over some windows, and its token count."""

    nll: float
    tokens: int

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll)

    @property
    def per_token(self) -> float:
        """Geometric-mean probability of the next token: 1 / perplexity, in (0, 1]."""
        return math.exp(-self.nll)


def window_nll(logits: np.ndarray | torch.Tensor, ids: np.ndarray | torch.Tensor) -> float:
    """Summed negative log-likelihood of ``ids[1:]`` under ``logits[:-1]`` (one window)."""
    logits = torch.as_tensor(np.asarray(logits) if not torch.is_tensor(logits) else logits)
    ids = torch.as_tensor(np.asarray(ids) if not torch.is_tensor(ids) else ids)
    logits, ids = logits.reshape(-1, logits.shape[-1]).float(), ids.reshape(-1)
    return float(torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="sum"))


def onnx_likelihood(session: DecoderSession, windows: Sequence[torch.Tensor]) -> Likelihood:
    """Likelihood of the windows (each ``1 x length`` token ids) under the ONNX graph."""
    total, count = 0.0, 0
    for window in windows:
        ids = np.asarray(window).reshape(1, -1)
        logits, _ = session.prefill(ids)
        total += window_nll(logits[0], ids[0])
        count += ids.shape[1] - 1
    return Likelihood(total / count, count)


@torch.no_grad()
def torch_likelihood(model: torch.nn.Module, windows: Sequence[torch.Tensor]) -> Likelihood:
    """Likelihood of the windows under a PyTorch causal LM (no cache)."""
    model.eval()
    total, count = 0.0, 0
    for window in windows:
        ids = window.reshape(1, -1)
        logits = model(input_ids=ids, use_cache=False).logits
        total += window_nll(logits[0], ids[0])
        count += ids.shape[1] - 1
    return Likelihood(total / count, count)


@torch.no_grad()
def torch_greedy(model: torch.nn.Module, prompt: Sequence[int], new_tokens: int) -> list[int]:
    """Greedy tokens from the PyTorch model (transformers' ``generate``, no sampling)."""
    ids = torch.tensor([list(prompt)])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=0,
    )
    return out[0, ids.shape[1] :].tolist()


def logits_parity(
    model: torch.nn.Module, session: DecoderSession, window: torch.Tensor
) -> dict[str, float]:
    """Cosine similarity and largest difference of the two backends' logits on one window."""
    ids = window.reshape(1, -1)
    with torch.no_grad():
        reference = model(input_ids=ids, use_cache=False).logits[0].float()
    logits = torch.from_numpy(session.prefill(ids.numpy())[0][0])
    cosine = torch.nn.functional.cosine_similarity(reference, logits, dim=-1)
    return {
        "cosine_min": float(cosine.min()),
        "max_abs_diff": float((reference - logits).abs().max()),
    }
