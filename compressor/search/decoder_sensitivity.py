"""What a decoder can lose most cheaply, measured once before the search.

- **Layers**: ShortGPT's Block Influence (Men et al., 2024): ``1 - cos(h_in, h_out)`` of
  each layer's residual stream, averaged over the tokens of one window; the layers that
  change the stream least are removed first. One forward pass for all layers.
- **Precision**: each linear family (``q_proj`` ... ``down_proj``, ``lm_head``) quantized
  alone, simulated in PyTorch the way ONNX Runtime computes it, and the rise of the
  window's negative log-likelihood recorded. INT8 is ``quantize_dynamic``'s arithmetic
  (weights per output channel, symmetric; activations per tensor, asymmetric uint8: the
  per-tensor activation scale is what hurts ``down_proj``, whose inputs hold outliers);
  INT4 is block-wise RTN of the weights with an integer zero point per block (ORT's
  ``rtn-asym``, the study's INT4 default): the families that lose most to it are the ones to
  keep higher. Simulation costs one forward pass per family instead of one graph
  quantization each (~70 s apiece on SmolLM2 here).
- **Units for float offsets**: each layer's linears, one unit at a time (``q/k/v`` together,
  as ORT GenAI packs them), simulated at that INT4 and scored by the KL divergence of the
  model's next-token distribution from the fp32 one (HAWQ-style sensitivity, one forward pass
  per unit: ~0.6 s each for SmolLM2's 150 on 256 tokens). KL, not the NLL rise: the rise of
  one unit is within the window's noise (negative for a third of SmolLM2's units), the KL
  is never negative. Float offsets go to the top of this ranking: on SmolLM2 (lm_head INT4)
  the top 30 units gave test perplexity 12.45, against 12.71 for the 30 ``down_proj``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from compressor.actions.prune_decoder import decoder_layers
from compressor.measure.decoder import torch_likelihood

FAMILIES = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "lm_head",
)


# A unit of the offsets ranking: the linears one graph node computes in a fused layer.
UNITS = {
    "q_proj": ("q_proj", "k_proj", "v_proj"),
    "o_proj": ("o_proj",),
    "gate_proj": ("gate_proj",),
    "up_proj": ("up_proj",),
    "down_proj": ("down_proj",),
}


@torch.no_grad()
def layer_influence(model: nn.Module, window: torch.Tensor) -> list[float]:
    """Block Influence of every decoder layer on ``window`` (higher = more important)."""
    streams: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(index: int):
        def record(module, args, kwargs, output):
            before = args[0] if args else kwargs["hidden_states"]
            after = output[0] if isinstance(output, tuple) else output
            streams[index] = (before, after)

        return record

    handles = [
        layer.register_forward_hook(hook(index), with_kwargs=True)
        for index, layer in enumerate(decoder_layers(model))
    ]
    try:
        model(input_ids=window, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return [
        float((1 - nn.functional.cosine_similarity(*streams[index], dim=-1)).mean())
        for index in range(len(streams))
    ]


def removal_order(influence: list[float]) -> list[int]:
    """Layer indices, least influential first (the order depth pruning removes them)."""
    return sorted(range(len(influence)), key=lambda index: influence[index])


def family_of(name: str) -> str | None:
    last = name.rsplit(".", 1)[-1]
    return last if last in FAMILIES else None


@torch.no_grad()
def precision_sensitivity(
    model: nn.Module, windows, precision: str, block_size: int = 32
) -> dict[str, float]:
    """NLL rise (nats per token, >= 0) when each linear family alone is at ``precision``."""
    base = torch_likelihood(model, windows).nll
    rises = {}
    for family in FAMILIES:
        with simulated(model, {family}, precision, block_size):
            rises[family] = max(0.0, torch_likelihood(model, windows).nll - base)
    return rises


@torch.no_grad()
def unit_sensitivity(
    model: nn.Module, window: torch.Tensor, block_size: int = 32
) -> dict[str, float]:
    """KL(fp32 || unit at INT4) per token for every unit ``layers.<i>.<unit>`` (see UNITS)."""
    reference = _log_probs(model, window)
    kl = {}
    for index, layer in enumerate(decoder_layers(model)):
        linears = {name.rsplit(".", 1)[-1]: m for name, m in layer.named_modules()}
        for unit, families in UNITS.items():
            modules = [linears[f] for f in families if isinstance(linears.get(f), nn.Linear)]
            handles = [
                m.register_forward_hook(_quantized_output(m, "int4", block_size)) for m in modules
            ]
            try:
                log_probs = _log_probs(model, window)
            finally:
                for handle in handles:
                    handle.remove()
            divergence = (reference.exp() * (reference - log_probs)).sum(-1).mean()
            kl[f"layers.{index}.{unit}"] = max(0.0, float(divergence))
    return kl


def unit_modules(unit: str) -> tuple[str, ...]:
    """The scoped names (``layers.3.q_proj`` ...) a unit's offsets are planned under."""
    scope, _, name = unit.rpartition(".")
    return tuple(f"{scope}.{family}" for family in UNITS[name])


def offset_units_of(offsets: tuple[str, ...] | list[str]) -> list[str]:
    """``offsets`` as units, for reports: a layer's q/k/v collapse into ``layers.<i>.qkv``;
    names that are not a whole unit stay as they are."""
    names = set(offsets)
    units: list[str] = []
    for name in offsets:
        scope, _, family = name.rpartition(".")
        whole = next(
            (
                unit
                for unit, families in UNITS.items()
                if family in families and all(f"{scope}.{f}" in names for f in families)
            ),
            None,
        )
        label = f"{scope}.{'qkv' if whole == 'q_proj' else whole}" if whole and scope else name
        if label not in units:
            units.append(label)
    return units


def _log_probs(model: nn.Module, window: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(model(input_ids=window, use_cache=False).logits.float(), dim=-1)


def most_sensitive(rises: dict[str, float]) -> list[str]:
    """Families, most sensitive first."""
    return sorted(rises, key=lambda family: -rises[family])


@contextlib.contextmanager
def simulated(
    model: nn.Module, families: set[str], precision: str, block_size: int = 32
) -> Iterator[None]:
    """Within the block, the families' linears compute as ``precision`` would in ORT.

    The quantized output replaces the layer's own through a forward hook, so a weight tied
    to the embedding (``lm_head``) stays fp32 where the embedding reads it.
    """
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and family_of(name) in families:
            handles.append(
                module.register_forward_hook(_quantized_output(module, precision, block_size))
            )
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _quantized_output(module: nn.Linear, precision: str, block_size: int):
    if precision == "int8":
        weight = _int8_weight(module.weight.detach())
    else:
        weight = _int4_weight(module.weight.detach(), block_size)

    def hook(layer, args, output):
        x = _int8_activation(args[0]) if precision == "int8" else args[0]
        return nn.functional.linear(x, weight, layer.bias)

    return hook


def _int8_weight(weight: torch.Tensor) -> torch.Tensor:
    scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
    return (weight / scale).round().clamp(-127, 127) * scale


def _int8_activation(x: torch.Tensor) -> torch.Tensor:
    low, high = x.min().clamp(max=0), x.max().clamp(min=0)
    scale = (high - low).clamp(min=1e-12) / 255
    zero = (-low / scale).round()
    return ((x / scale + zero).round().clamp(0, 255) - zero) * scale


def _int4_weight(weight: torch.Tensor, block_size: int) -> torch.Tensor:
    # MLAS's asymmetric blocks: the range includes 0, the zero point is an integer 0..15.
    rows, cols = weight.shape
    pad = (-cols) % block_size
    blocks = nn.functional.pad(weight, (0, pad)).view(rows, -1, block_size)
    low = blocks.amin(dim=-1, keepdim=True).clamp(max=0)
    high = blocks.amax(dim=-1, keepdim=True).clamp(min=0)
    scale = ((high - low) / 15).clamp(min=1e-12)
    zero = (-low / scale).round().clamp(0, 15)
    quantized = ((blocks / scale).round() + zero).clamp(0, 15)
    return ((quantized - zero) * scale).view(rows, -1)[:, :cols]
