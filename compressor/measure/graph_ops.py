"""What an ONNX artifact's graph is made of: its nodes by operator type, and among them
the ones only a fusion or a quantization writes, so a run records what those steps did
rather than what they were asked to do (ORT's optimizer fused only the RMS norms of
optimum's SmolLM2 graph; ORT GenAI's builder writes one GroupQueryAttention per layer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compressor.actions.artifact import INT8_OPS
from compressor.actions.fuse import FUSED_OPS, op_counts

# Operators that hold quantized weights or compute on quantized values.
QUANTIZED_OPS = (*INT8_OPS, "MatMulNBits")


@dataclass(frozen=True)
class GraphOps:
    """Node counts of one graph: ``ops`` maps each operator type to its nodes, most first."""

    nodes: int
    ops: dict[str, int]

    @property
    def fused(self) -> dict[str, int]:
        return {op: count for op, count in self.ops.items() if op in FUSED_OPS}

    @property
    def quantized(self) -> dict[str, int]:
        return {op: count for op, count in self.ops.items() if op in QUANTIZED_OPS}

    def as_dict(self) -> dict:
        return {
            "nodes": self.nodes,
            "fused": self.fused,
            "quantized": self.quantized,
            "ops": self.ops,
        }

    def __str__(self) -> str:
        return (
            f"{self.nodes} nodes; fused: {_listed(self.fused)}; "
            f"quantized: {_listed(self.quantized)}"
        )


def _listed(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {op}" for op, count in counts.items()) or "none"


def graph_ops(graph: str | Path) -> GraphOps:
    """The node counts of the ONNX file ``graph``."""
    counts = op_counts(graph)
    ordered = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    return GraphOps(nodes=sum(counts.values()), ops=ordered)
