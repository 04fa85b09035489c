"""Export a PyTorch model to a single-file ONNX graph, checked by ``onnx.checker``.

Exporter choice: the legacy TorchScript exporter (``torch.onnx.export(..., dynamo=False)``,
opset 17). On torch 2.13 it is deprecated but present, takes ~0.4 s for a CNN, writes one
file, and its BERT graphs are the ones ONNX Runtime's transformer optimizer recognises
(attention fusion fires). The dynamo exporter needs onnxscript, targets opset 20, writes
external ``.data`` files by default, takes 5-9 s, and attention fusion does not fire on its
output (measured, ../shared/STACK.md).

BatchNorm is exported as its own node (``TrainingMode.PRESERVE`` on an eval-mode model), so
folding it into the convolution is an explicit, searchable action (:mod:`.fuse`) instead of
something the exporter always does silently.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
from torch import nn

OPSET = 17


def input_names(count: int) -> list[str]:
    """The graph's input names, in the order of the model's positional arguments."""
    return ["input"] if count == 1 else [f"input_{index}" for index in range(count)]


def export_onnx(
    model: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    path: str | Path,
    *,
    fold_batchnorm: bool = False,
) -> Path:
    """Write ``model`` to ``path`` (one file, batch dimension dynamic) and check it.

    Args:
        model: the model to export; exported in eval mode.
        example_inputs: the positional inputs of one forward pass.
        path: where the ``.onnx`` file goes.
        fold_batchnorm: let the exporter fold BatchNorm into convolutions (its EVAL mode).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = input_names(len(example_inputs))
    dynamic = {
        name: _dynamic_axes(tensor) for name, tensor in zip(names, example_inputs, strict=True)
    }
    dynamic["output"] = {0: "batch"}
    mode = torch.onnx.TrainingMode.EVAL if fold_batchnorm else torch.onnx.TrainingMode.PRESERVE
    model = model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice, by choice
        torch.onnx.export(
            model,
            tuple(example_inputs),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            training=mode,
            input_names=names,
            output_names=["output"],
            dynamic_axes=dynamic,
        )
    onnx.checker.check_model(str(path), full_check=True)
    return path


def nodes_of_modules(graph_path: str | Path, modules: Sequence[str]) -> list[str]:
    """ONNX node names that belong to the named PyTorch modules (e.g. ``fc``, ``conv1``)."""
    wanted = [module.strip(".") for module in modules if module.strip(".")]
    found = []
    for node in onnx.load(str(graph_path), load_external_data=False).graph.node:
        owner = module_of_node(node.name)
        if any(owner == name or owner.startswith(name + ".") for name in wanted):
            found.append(node.name)
    return found


def module_of_node(node_name: str) -> str:
    """The dotted module path of a node the legacy exporter named.

    Its scopes repeat the parent's last name in the child's: ``/layer2/layer2.0/shortcut/
    shortcut.0/Conv`` is module ``layer2.0.shortcut.0``.
    """
    dotted = ""
    for part in node_name.strip("/").split("/")[:-1]:
        last = dotted.rsplit(".", 1)[-1]
        if dotted and part.startswith(last + "."):
            dotted += part[len(last) :]
        else:
            dotted = f"{dotted}.{part}" if dotted else part
    return dotted


def _dynamic_axes(tensor: torch.Tensor) -> dict[int, str]:
    # Token inputs (integer ids, masks) vary in length from batch to batch; image inputs keep
    # their fixed spatial size, which lets ONNX Runtime plan convolutions ahead.
    if not tensor.is_floating_point() and tensor.dim() >= 2:
        return {0: "batch", 1: "sequence"}
    return {0: "batch"}
