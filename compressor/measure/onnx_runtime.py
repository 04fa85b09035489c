"""ONNX Runtime sessions, and the wrapper that lets a user's ``evaluate(model)`` run one.

:class:`OnnxModule` is an ``nn.Module`` whose ``forward`` takes torch tensors and returns
torch tensors, so ``evaluate(model)`` written for the PyTorch model scores the deployable
artifact unchanged -- and quantization error counts in the reward. ``.eval()`` / ``.train()``
are accepted and do nothing; it has no parameters to train.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn


def providers_for(device: str) -> list[str]:
    """Execution providers for ``device``: CUDA first when asked for and available."""
    if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(
    path: str | Path, *, device: str = "cpu", threads: int | None = None, spinning: bool = False
) -> ort.InferenceSession:
    """An inference session with a fixed intra-op thread count and full graph optimization.

    Spinning is off by default: an idle session's spin-waiting threads would steal the cores
    the measurement process times on (measured up to 7x distortion on 2 cores). The
    measurement process itself turns it on, as a deployed server would run.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=providers_for(device))


class OnnxModule(nn.Module):
    """An ONNX artifact callable like the PyTorch model it was exported from.

    Args:
        path: the ``.onnx`` file.
        device: "cpu" or "cuda" (outputs always come back as CPU tensors).
        threads: intra-op threads (None: ONNX Runtime's default).
    """

    def __init__(
        self, path: str | Path, *, device: str = "cpu", threads: int | None = None
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.session = open_session(self.path, device=device, threads=threads)
        self.input_names = [item.name for item in self.session.get_inputs()]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = self.session.run(None, self.feed(inputs))
        tensors = tuple(torch.from_numpy(np.asarray(out)) for out in outputs)
        return tensors[0] if len(tensors) == 1 else tensors

    def feed(self, inputs: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
        """The session feed for positional ``inputs``."""
        if len(inputs) != len(self.input_names):
            raise TypeError(
                f"{self.path.name} takes {len(self.input_names)} inputs, got {len(inputs)}"
            )
        return {
            name: tensor.detach().cpu().numpy()
            for name, tensor in zip(self.input_names, inputs, strict=True)
        }
