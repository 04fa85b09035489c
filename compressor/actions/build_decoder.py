"""Build a decoder's fused ONNX graph with ONNX Runtime GenAI's model builder.

``onnxruntime_genai.models.builder.create_model`` does the heavy lifting: it reads a
Hugging Face folder and writes the graph ONNX Runtime's own decoder kernels are made for:
one ``GroupQueryAttention`` per layer (rotary embedding and the KV-cache update inside
it), q/k/v packed into one ``qkv_proj`` MatMul, ``SkipSimplifiedLayerNormalization`` for
every RMS norm with its residual add, and an untied ``lm_head``. On SmolLM2-135M that is
342 nodes where optimum's export has 7 426, and the fp32 graph decoded 1.20x faster than
optimum's with the same perplexity and greedy tokens (measured here, onnxruntime-genai
0.13.2, ORT 1.32). ORT's transformer optimizer cannot get there from optimum's graph:
attention does not fuse on it, only the norms do.

The graph is built in fp32 and quantized by :func:`.quantize_decoder`, so every
per-layer precision plan of the search applies to it. Its inputs and outputs are named
like optimum's (``input_ids``, ``attention_mask``, ``past_key_values.{i}.key`` ->
``logits``, ``present.{i}.key``), without ``position_ids``: the builder derives
positions from the attention mask. ``genai_config.json`` beside it lets onnxruntime-genai's
own generation loop run the artifact.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import warnings
from pathlib import Path

from torch import nn

from compressor.actions.export_decoder import GRAPH_NAME

CONFIGS = ("config.json", "generation_config.json")


def build_decoder(
    model: nn.Module, tokenizer, folder: str | Path, precision: str = "fp32", **options
) -> Path:
    """Write ``folder/model.onnx`` (fused, KV cache in and out) for ``model``.

    ``precision="int4"`` (with builder ``options`` such as ``int4_accuracy_level=4``) is
    the builder's own weight-only INT4 of every MatMul, ``lm_head`` included: the
    one-call pipeline B5 compares against. The search builds fp32 and applies its plans.

    The builder reads a saved checkpoint, so the model (pruned ones keep their config in
    sync, see :mod:`.prune_decoder`) and its tokenizer are saved to ``folder/hf`` first.
    Beside the graph: the tokenizer, ``genai_config.json`` and the model's ``config.json``.
    """
    if tokenizer is None:
        raise ValueError(
            "ORT GenAI's model builder needs the model's tokenizer (it writes it beside the "
            "graph); this task has none: build the graph without fusion"
        )
    from onnxruntime_genai.models.builder import create_model

    folder = Path(folder)
    checkpoint = folder / "hf"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    try:
        with _quiet():
            create_model(
                model_name=None,
                input_path=str(checkpoint),
                output_dir=str(folder),
                precision=precision,
                execution_provider="cpu",
                cache_dir=str(folder / "cache"),
                filename=GRAPH_NAME,
                **options,
            )
    finally:
        # The checkpoint is as large as the graph's weights; only its configs are kept.
        for name in CONFIGS:
            if (checkpoint / name).is_file():
                shutil.copyfile(checkpoint / name, folder / name)
        shutil.rmtree(checkpoint, ignore_errors=True)
        shutil.rmtree(folder / "cache", ignore_errors=True)
    return folder / GRAPH_NAME


@contextlib.contextmanager
def _quiet():
    """The builder prints every step and a progress bar; the transformers loader warns."""
    level = logging.getLogger("transformers").level
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),  # tqdm's progress bar
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.getLogger("transformers").setLevel(level)
