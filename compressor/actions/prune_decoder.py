"""Structured pruning of a decoder-only (Llama-style) language model: depth, MLP, heads.

Three moves, each a plain weight surgery on a copy (``transformers.pytorch_utils.
prune_linear_layer`` does the slicing), and a :class:`DecoderPlan` that names them:

- **depth**: whole decoder layers removed (the residual stream simply skips them); the
  kept layers are renumbered so the KV cache still has one slot per layer;
- **MLP width**: the same number of intermediate neurons in every layer (gate / up rows,
  down columns), the smallest ``|gate|^2 + |up|^2 + |down|^2`` going first, rounded to a
  multiple of ``round_to`` (widths that are multiples of 32 keep the GEMMs on their fast
  paths);
- **query heads under GQA**: in every key/value group the same number of query heads is
  kept (Q rows and output-projection columns by magnitude); key/value heads stay, so the
  KV cache and ``repeat_kv`` keep their shape.

Every layer is pruned alike so the result is again a plain config-described model
(``num_attention_heads``, ``intermediate_size``, ``num_hidden_layers``): the exporter builds
its KV-cache inputs from the config. torch-pruning 1.6.1 is not used for the heads: with
``num_heads={q: 9, k: 3, v: 3}`` and ratio 2/3 its GQA path silently pruned nothing
(measured on a 9/3-head tiny Llama; its global GQA branch is torch-pruning #516), and the
MLP coupling is known, so its graph trace would only add time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import nn

from compressor.errors import UserInputError


@dataclass(frozen=True)
class DecoderPlan:
    """Which structure a decoder loses.

    Attributes:
        drop_layers: indices of the decoder layers removed.
        mlp_ratio: fraction of each layer's MLP neurons removed, in [0, 1).
        head_ratio: fraction of the query heads of each key/value group removed, in [0, 1);
            rounded down to whole heads per group (9 heads over 3 groups: steps of 1/3).
    """

    drop_layers: tuple[int, ...] = ()
    mlp_ratio: float = 0.0
    head_ratio: float = 0.0

    def __post_init__(self) -> None:
        for field_name in ("mlp_ratio", "head_ratio"):
            value = getattr(self, field_name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{field_name} must be in [0, 1); got {value}")
        if len(set(self.drop_layers)) != len(self.drop_layers):
            raise ValueError(f"drop_layers repeats a layer: {self.drop_layers}")

    @property
    def is_identity(self) -> bool:
        return not self.drop_layers and self.mlp_ratio == 0 and self.head_ratio == 0


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder's layer list (``model.model.layers`` in Llama, Qwen2, Mistral, SmolLM)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise UserInputError(
            "decoder pruning expects a Llama-style causal LM (model.model.layers); "
            f"got {type(model).__name__}"
        )
    return layers


def prune_decoder(model: nn.Module, plan: DecoderPlan, round_to: int = 32) -> nn.Module:
    """A pruned copy of ``model`` (eval mode); ``model`` itself is not touched."""
    pruned = copy.deepcopy(model).eval()
    if plan.drop_layers:
        remove_layers(pruned, plan.drop_layers)
    if plan.head_ratio:
        prune_query_heads(pruned, plan.head_ratio)
    if plan.mlp_ratio:
        prune_mlp(pruned, plan.mlp_ratio, round_to)
    return pruned


def remove_layers(model: nn.Module, drop: tuple[int, ...]) -> None:
    """Remove the decoder layers ``drop`` in place; the rest are renumbered 0..n-1."""
    layers = decoder_layers(model)
    if any(not 0 <= index < len(layers) for index in drop):
        raise UserInputError(f"layers {drop} are not all within 0..{len(layers) - 1}")
    if len(drop) >= len(layers):
        raise UserInputError("removing every decoder layer leaves no model")
    kept = [layer for index, layer in enumerate(layers) if index not in set(drop)]
    for new_index, layer in enumerate(kept):
        # the attention module's cache slot; the exported past/present inputs follow it
        layer.self_attn.layer_idx = new_index
    model.model.layers = nn.ModuleList(kept)
    config = model.config
    if getattr(config, "layer_types", None):
        config.layer_types = [t for i, t in enumerate(config.layer_types) if i not in set(drop)]
    config.num_hidden_layers = len(kept)


def head_ratio_steps(config) -> tuple[Fraction, ...]:
    """The head ratios :func:`prune_query_heads` applies exactly: ``k / per_group`` whole
    query heads of each key/value group, at least one kept (3 per group: 0, 1/3, 2/3)."""
    per_group = config.num_attention_heads // (
        getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    )
    return tuple(Fraction(removed, per_group) for removed in range(per_group))


@torch.no_grad()
def prune_query_heads(model: nn.Module, ratio: float) -> int:
    """Keep the same number of query heads in every KV group of every layer; returns it."""
    config = model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    per_group = heads // kv_heads
    keep = per_group - int(per_group * ratio + 1e-9)
    if keep == per_group:
        return keep
    keep = max(1, keep)
    head_dim = head_dim_of(config)
    for layer in decoder_layers(model):
        attention = layer.self_attn
        index = _kept_head_rows(attention, kv_heads, per_group, keep, head_dim)
        _prune_linear(attention, "q_proj", index, dim=0)
        _prune_linear(attention, "o_proj", index, dim=1)
        attention.num_key_value_groups = keep  # repeat_kv repeats each KV head this often
    config.head_dim = head_dim  # no longer hidden_size / num_attention_heads
    config.num_attention_heads = kv_heads * keep
    return keep


def _kept_head_rows(
    attention: nn.Module, groups: int, per_group: int, keep: int, head_dim: int
) -> torch.Tensor:
    q = attention.q_proj.weight.view(groups, per_group, head_dim, -1)
    o = attention.o_proj.weight.view(-1, groups, per_group, head_dim)
    score = q.pow(2).sum((2, 3)) + o.pow(2).sum((0, 3))  # (groups, per_group)
    chosen = torch.sort(torch.topk(score, keep, dim=1).indices, dim=1).values
    heads = (chosen + torch.arange(groups)[:, None] * per_group).flatten()
    return (heads[:, None] * head_dim + torch.arange(head_dim)).flatten()


@torch.no_grad()
def prune_mlp(model: nn.Module, ratio: float, round_to: int = 32) -> int:
    """Keep the same number of MLP neurons in every layer (a multiple of ``round_to``)."""
    width = model.config.intermediate_size
    keep = kept_width(width, ratio, round_to)
    if keep == width:
        return keep
    for layer in decoder_layers(model):
        mlp = layer.mlp
        score = (
            mlp.gate_proj.weight.pow(2).sum(1)
            + mlp.up_proj.weight.pow(2).sum(1)
            + mlp.down_proj.weight.pow(2).sum(0)
        )
        index = torch.sort(torch.topk(score, keep).indices).values
        _prune_linear(mlp, "gate_proj", index, dim=0)
        _prune_linear(mlp, "up_proj", index, dim=0)
        _prune_linear(mlp, "down_proj", index, dim=1)
        mlp.intermediate_size = keep
    model.config.intermediate_size = keep
    return keep


def kept_width(width: int, ratio: float, round_to: int = 32) -> int:
    """Neurons kept of ``width`` at ``ratio``, rounded to the nearest multiple of ``round_to``
    (never below one multiple, never above ``width``)."""
    keep = width * (1.0 - ratio)
    if round_to and width >= round_to:
        keep = max(round_to, round(keep / round_to) * round_to)
    return int(min(width, max(1, round(keep))))


def head_dim_of(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _prune_linear(parent: nn.Module, name: str, index: torch.Tensor, dim: int) -> None:
    from transformers.pytorch_utils import prune_linear_layer

    setattr(parent, name, prune_linear_layer(getattr(parent, name), index, dim=dim))
