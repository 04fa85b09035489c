"""Per-layer transformer pruning: attention heads and FFN intermediate neurons.

Each encoder layer gives two groups, ``<layer>.attention`` (its heads) and ``<layer>.ffn``
(its intermediate neurons), so the search can allocate pruning layer by layer. The hidden
size (the residual stream, embeddings, LayerNorms) is never touched: torch-pruning's graph
would couple it across all layers and halve it (384 -> 192 on MiniLM at ratio 0.5).

The weight surgery is ``transformers.pytorch_utils.prune_linear_layer`` (rows of the Q/K/V
and FFN-in projections, columns of the output projections); this module chooses *which*
heads and neurons go (smallest weight magnitude, as the default channel pruner does) and
then updates the attention module's size attributes, which transformers reads in forward
(head count, all-head size, ``scaling``), so the pruned model runs with eager and SDPA
attention alike.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from compressor.actions.prune import ChannelGroup, kept_channels
from compressor.errors import UserInputError


@dataclass(frozen=True)
class Layout:
    """Where a model family keeps its layers and projections (paths inside one layer)."""

    layers: str  # the ModuleList of encoder layers, relative to the base model
    attention: str  # the module holding Q/K/V and the head-count attributes
    qkv: tuple[str, str, str]
    attention_out: str
    ffn_in: str
    ffn_out: str


BERT = Layout(
    "encoder.layer",
    "attention.self",
    ("query", "key", "value"),
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
LAYOUTS = {
    "bert": BERT,
    "roberta": BERT,
    "xlm-roberta": BERT,
    "electra": BERT,
    "distilbert": Layout(
        "transformer.layer",
        "attention",
        ("q_lin", "k_lin", "v_lin"),
        "attention.out_lin",
        "ffn.lin1",
        "ffn.lin2",
    ),
}
HEAD_COUNT_ATTRS = ("num_attention_heads", "n_heads", "num_heads")
ALL_HEAD_SIZE_ATTRS = ("all_head_size", "dim")  # DistilBERT's attention calls it `dim`
HEAD_SIZE_ATTRS = ("attention_head_size", "head_dim")


def find_transformer(model: nn.Module) -> tuple[str, nn.Module, Layout]:
    """The (first) Hugging Face model inside ``model``, its name and its layout."""
    for name, module in model.named_modules():
        config = getattr(module, "config", None)
        model_type = getattr(config, "model_type", None)
        if model_type is None or not hasattr(module, "base_model"):
            continue
        layout = LAYOUTS.get(model_type)
        if layout is None:
            raise UserInputError(
                f"transformer pruning supports {', '.join(LAYOUTS)}; not {model_type!r}"
            )
        base = module.base_model
        prefix = ".".join(p for p in (name, _relative(module, base)) if p)
        return prefix, base, layout
    raise UserInputError("no Hugging Face transformer found inside the model")


def _relative(module: nn.Module, base: nn.Module) -> str:
    if base is module:
        return ""
    return next(name for name, child in module.named_modules() if child is base)


class TransformerPruner:
    """Heads and FFN neurons of every encoder layer, searched per layer.

    Args:
        model: the model the groups are read from (a HF model or a module containing one).
        round_to: FFN neuron counts are rounded to this multiple (heads are pruned whole,
            never rounded).
        whole_if_narrow: an FFN no wider than ``round_to`` is kept whole (a measured
            multiple, see :func:`compressor.actions.prune.kept_channels`).
    """

    # What `compress inspect` says of the layers no group touches.
    LEFT_ALONE = "the hidden size (embeddings, residual stream, pooler) is kept"

    def __init__(
        self, model: nn.Module, round_to: int | None = 8, whole_if_narrow: bool = False
    ) -> None:
        self.round_to, self.whole_if_narrow = round_to, whole_if_narrow
        self.prefix, base, self.layout = find_transformer(model)
        self._layers = _get(base, self.layout.layers)

    def aligned_to(self, round_to: int) -> TransformerPruner:
        """The same pruner rounding FFN neuron counts to the measured multiple ``round_to``
        (the search gives each candidate the multiple its quantization mode's Linear kernels
        favour, ``prune.round_to: auto``); heads stay whole."""
        if round_to == self.round_to and self.whole_if_narrow:
            return self
        aligned = copy.copy(self)
        aligned.round_to, aligned.whole_if_narrow = round_to, True
        return aligned

    def kept_counts(
        self, groups: Sequence[ChannelGroup], ratios: Mapping[str, float]
    ) -> tuple[int, ...]:
        """Heads / neurons each group keeps under ``ratios``, without pruning anything."""
        return tuple(self._kept(g.name, g.channels, ratios) for g in groups)

    def _kept(self, group: str, count: int, ratios: Mapping[str, float]) -> int:
        ratio = float(ratios.get(group, 0.0))
        if group.endswith(".attention"):
            return kept_channels(count, ratio)  # whole heads: no multiple
        return kept_channels(count, ratio, self.round_to, self.whole_if_narrow)

    def _layer_name(self, index: int) -> str:
        return ".".join(p for p in (self.prefix, self.layout.layers, str(index)) if p)

    def groups(self) -> list[ChannelGroup]:
        layout, groups = self.layout, []
        for index, layer in enumerate(self._layers):
            name = self._layer_name(index)
            heads = _head_count(_get(layer, layout.attention))
            qkv = tuple(f"{name}.{layout.attention}.{q}" for q in layout.qkv)
            groups.append(
                ChannelGroup(
                    f"{name}.attention", heads, (*qkv, f"{name}.{layout.attention_out}"), qkv
                )
            )
            neurons = _get(layer, layout.ffn_in).out_features
            ffn_in = f"{name}.{layout.ffn_in}"
            groups.append(
                ChannelGroup(
                    f"{name}.ffn", neurons, (ffn_in, f"{name}.{layout.ffn_out}"), (ffn_in,)
                )
            )
        return groups

    def prune(
        self, model: nn.Module, ratios: Mapping[str, float]
    ) -> tuple[nn.Module, dict[str, int]]:
        """A pruned copy: each layer keeps its most important heads and neurons."""
        pruned = copy.deepcopy(model).eval()
        _, base, layout = find_transformer(pruned)
        kept: dict[str, int] = {}
        for index, layer in enumerate(_get(base, layout.layers)):
            name = self._layer_name(index)
            heads = _head_count(_get(layer, layout.attention))
            keep = self._kept(f"{name}.attention", heads, ratios)
            kept[f"{name}.attention"] = prune_heads(layer, layout, keep)
            neurons = _get(layer, layout.ffn_in).out_features
            keep = self._kept(f"{name}.ffn", neurons, ratios)
            kept[f"{name}.ffn"] = prune_ffn(layer, layout, keep)
        return pruned, kept


@torch.no_grad()
def prune_heads(layer: nn.Module, layout: Layout, keep: int) -> int:
    """Keep the ``keep`` heads with the largest Q/K/V/output weight norm; returns ``keep``."""
    from transformers.pytorch_utils import prune_linear_layer

    attention = _get(layer, layout.attention)
    heads = _head_count(attention)
    if keep >= heads:
        return heads
    size = _get(attention, layout.qkv[0]).out_features // heads
    out = _get(layer, layout.attention_out)
    chosen = torch.sort(torch.argsort(head_scores(layer, layout), descending=True)[:keep]).values
    index = (chosen[:, None] * size + torch.arange(size)).flatten()
    for name in layout.qkv:
        _set(attention, name, prune_linear_layer(_get(attention, name), index, dim=0))
    _set(layer, layout.attention_out, prune_linear_layer(out, index, dim=1))
    _set_size_attributes(attention, keep, size)
    return keep


@torch.no_grad()
def head_scores(layer: nn.Module, layout: Layout) -> torch.Tensor:
    """Per-head squared L2 norm of its Q/K/V rows and output-projection columns."""
    attention = _get(layer, layout.attention)
    heads = _head_count(attention)
    size = _get(attention, layout.qkv[0]).out_features // heads
    out = _get(layer, layout.attention_out)
    score = sum(
        _get(attention, name).weight.view(heads, size, -1).pow(2).sum((1, 2)) for name in layout.qkv
    )
    return score + out.weight.view(out.out_features, heads, size).pow(2).sum((0, 2))


@torch.no_grad()
def neuron_scores(layer: nn.Module, layout: Layout) -> torch.Tensor:
    """Per-neuron squared L2 norm of its FFN-in row and FFN-out column."""
    return _get(layer, layout.ffn_in).weight.pow(2).sum(1) + _get(layer, layout.ffn_out).weight.pow(
        2
    ).sum(0)


def sync_attention_heads(attention: nn.Module) -> None:
    """Set the head count and sizes from the (resized) Q projection: after loading a pruned
    checkpoint into the original architecture, where the weights were resized but the
    attributes transformers reads in forward were not."""
    size = getattr(attention, "attention_head_size", None)
    query = next((getattr(attention, n) for n in ("query", "q_lin") if hasattr(attention, n)), None)
    if isinstance(size, int) and isinstance(query, nn.Linear):
        # the weight, not out_features: the Linear itself may not be re-synced yet
        _set_size_attributes(attention, query.weight.shape[0] // size, size)


def _set_size_attributes(attention: nn.Module, heads: int, size: int) -> None:
    # transformers reads these in forward to split and merge heads; head size is unchanged.
    for attr in HEAD_COUNT_ATTRS:
        if isinstance(getattr(attention, attr, None), int):
            setattr(attention, attr, heads)
    for attr in ALL_HEAD_SIZE_ATTRS:
        if isinstance(getattr(attention, attr, None), int):
            setattr(attention, attr, heads * size)
    for attr in HEAD_SIZE_ATTRS:
        if isinstance(getattr(attention, attr, None), int):
            setattr(attention, attr, size)
    if hasattr(attention, "scaling"):
        attention.scaling = size**-0.5


@torch.no_grad()
def prune_ffn(layer: nn.Module, layout: Layout, keep: int) -> int:
    """Keep the ``keep`` intermediate neurons with the largest in + out weight norm."""
    from transformers.pytorch_utils import prune_linear_layer

    ffn_in, ffn_out = _get(layer, layout.ffn_in), _get(layer, layout.ffn_out)
    if keep >= ffn_in.out_features:
        return ffn_in.out_features
    index = torch.sort(torch.argsort(neuron_scores(layer, layout), descending=True)[:keep]).values
    _set(layer, layout.ffn_in, prune_linear_layer(ffn_in, index, dim=0))
    _set(layer, layout.ffn_out, prune_linear_layer(ffn_out, index, dim=1))
    return keep


def _head_count(attention: nn.Module) -> int:
    return next(getattr(attention, a) for a in HEAD_COUNT_ATTRS if hasattr(attention, a))


def _get(module: nn.Module, path: str) -> nn.Module:
    return module.get_submodule(path) if path else module


def _set(module: nn.Module, path: str, value: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(_get(module, parent), name, value)
