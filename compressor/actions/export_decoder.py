"""Export a causal language model to one ONNX graph with a KV cache.

optimum-onnx does the heavy lifting: ``onnx_export_from_model(model, folder,
task="text-generation-with-past")`` writes ``model.onnx`` whose inputs are ``input_ids``,
``attention_mask``, ``position_ids`` and ``past_key_values.{i}.key/value`` and whose outputs
are ``logits`` and ``present.{i}.key/value``. The same graph serves both phases: an empty
past (length 0) makes it a plain prompt pass (prefill, perplexity), a one-token input with
the previous ``present`` tensors is one decode step. Its model configs also patch the
``torch.vmap`` mask code that breaks the legacy exporter on transformers >= 4.53.

The model's config must describe it (pruned models keep theirs in sync, see
:mod:`.prune_decoder`): the exporter sizes the dummy cache tensors from it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnx
from torch import nn

GRAPH_NAME = "model.onnx"


def export_decoder(model: nn.Module, folder: str | Path) -> Path:
    """Write ``folder/model.onnx`` (KV cache in and out) for ``model``; return its path."""
    from optimum.exporters.onnx import onnx_export_from_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    use_cache = model.config.use_cache
    model.config.use_cache = True  # the graph takes and returns the KV cache
    try:
        with _quiet():
            onnx_export_from_model(
                model, folder, task="text-generation-with-past", do_validation=False
            )
    finally:
        # The caller's model goes on scoring whole windows: with the cache switched on its
        # outputs would carry one (torch-pruning's tracer then fails on them).
        model.config.use_cache = use_cache
    path = folder / GRAPH_NAME
    onnx.checker.check_model(str(path))
    return path


@contextlib.contextmanager
def _quiet():
    """The exporter logs every step and warns about tied weights on every call."""
    names = ("optimum", "transformers", "torch.onnx")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def cache_layout(graph: str | Path) -> tuple[int, int, int]:
    """``(layers, kv_heads, head_dim)`` of the graph's ``past_key_values`` inputs."""
    inputs = onnx.load(str(graph), load_external_data=False).graph.input
    past = [i for i in inputs if i.name.startswith("past_key_values.")]
    if not past:
        raise ValueError(f"{graph} has no past_key_values inputs (exported without a cache?)")
    dims = past[0].type.tensor_type.shape.dim
    return len(past) // 2, dims[1].dim_value, dims[3].dim_value
