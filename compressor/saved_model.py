"""Saving and reloading a compressed model (tensors only, no pickle).

A pruned model is stored as safetensors (tensors only, no pickle). Its structure is
recovered from the tensor shapes: the loader builds the original architecture and resizes
each layer to the saved shapes before a strict ``load_state_dict``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from compressor.run_folder import atomic_path

REMOVED_UNITS_KEY = "compressor.removed_units"


def save_model(model: nn.Module, path: str | Path, removed_units: Sequence[str] = ()) -> None:
    """Save the (pruned) model's tensors to a safetensors file, atomically.

    ``removed_units`` (depth pruning, in the unpruned model's numbering) go into the file's
    metadata: the tensor shapes say how wide each layer is, not which layers are gone.
    """
    from safetensors.torch import save_file

    state = {
        name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()
    }
    metadata = {REMOVED_UNITS_KEY: json.dumps(list(removed_units))}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def load_model(base_model: nn.Module, path: str | Path) -> nn.Module:
    """Rebuild a saved variant: ``base_model`` (the original architecture) without the removed
    units recorded in the file, resized to the file's tensors.

    ``base_model`` is modified in place and returned; pass a fresh instance.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    from compressor.actions.depth import remove_units

    with safe_open(str(path), framework="pt") as file:
        metadata = file.metadata() or {}
    remove_units(base_model, json.loads(metadata.get(REMOVED_UNITS_KEY, "[]")), inplace=True)
    state = load_file(str(path))
    for name, tensor in state.items():
        module_name, _, attr = name.rpartition(".")
        module = base_model.get_submodule(module_name)
        current = getattr(module, attr)
        if isinstance(current, nn.Parameter):
            setattr(module, attr, nn.Parameter(torch.empty_like(tensor), current.requires_grad))
        elif isinstance(current, torch.Tensor):
            module.register_buffer(attr, torch.empty_like(tensor))
    for module in base_model.modules():
        _sync_shape_attributes(module)
    base_model.load_state_dict(state, strict=True)
    return base_model.eval()


def _sync_shape_attributes(module: nn.Module) -> None:
    """Make a layer's size attributes agree with its (resized) weight tensors."""
    if isinstance(module, nn.modules.conv._ConvNd):
        module.out_channels = module.weight.shape[0]
        module.in_channels = module.weight.shape[1] * module.groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        module.num_features = (
            module.running_mean.shape[0]
            if module.running_mean is not None
            else module.weight.shape[0]
        )
    elif isinstance(module, nn.LayerNorm) and module.weight is not None:
        module.normalized_shape = tuple(module.weight.shape)
    elif isinstance(getattr(module, "attention_head_size", None), int):  # transformers attention
        from compressor.actions.prune_transformer import sync_attention_heads

        sync_attention_heads(module)


def load_compressed(output_dir: str | Path, base_model: nn.Module | None = None) -> nn.Module:
    """Load the compressed model a run wrote to ``output_dir``.

    ``base_model`` is a fresh instance of the original architecture; for a built-in task it
    can be omitted (the task's model factory, recorded in ``result.json``, is used).
    """
    output_dir = Path(output_dir)
    if base_model is None:
        from compressor.tasks import get_task_factory

        result = json.loads((output_dir / "result.json").read_text())
        base_model = get_task_factory(result["environment"]["task"])()
    return load_model(base_model, output_dir / "model.safetensors")
