"""Writing and reading what a run produces: atomic files, pruned models, result.json.

A pruned model is stored as safetensors (tensors only, no pickle). Its structure is
recovered from the tensor shapes: the loader builds the original architecture and resizes
each layer to the saved shapes before a strict ``load_state_dict``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    A crash leaves either the old file or no file, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the mode a plain open() would, so
        # a serving process running as another user can read the artifact.
        tmp.chmod(0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    # Read, not set-and-restore: os.umask() is process-wide and the heartbeat thread writes.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def write_json(path: str | Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


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
