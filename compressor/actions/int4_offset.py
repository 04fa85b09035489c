"""INT4 blocks with a float offset, run on ONNX Runtime's integer ``MatMulNBits`` kernel.

Each block of ``block_size`` weights along the input dimension is stored the way llama.cpp's
Q4_1 stores it: ``w = scale * q + offset`` with ``q`` in 0..15, ``offset`` = the block's
minimum and ``scale`` = its range / 15, both floats. ORT's own asymmetric INT4 keeps an
*integer* zero point per block instead, which rounds the offset to a multiple of the scale
(an error of up to half a step, shared by the whole block); ORT does accept float zero
points (what HQQ writes), but runs them on a slow path that dequantizes every weight at
every call (B5: 0.27x the fp32 decode speed).

So the float offset is split off the kernel: ``MatMulNBits`` (MLAS's INT4 kernel, INT8
compute at ``accuracy_level=4``) computes ``x @ (scale * (q - 8))``, and the rest,
``sum_blocks(x) @ (offset + 8 * scale)``, is a small fp32 MatMul of each input's block sums
(one ``MatMul`` with a 0/1 block matrix per distinct input, shared by the linears reading
it) plus an ``Add``. Measured on SmolLM2-135M (ORT GenAI's fused graph, ``lm_head`` block
INT8, 2026-12-01): test perplexity 11.58 against 11.55 fp32, 14.06 with integer zero
points and 15.63 symmetric, at 1.2-1.45x the decode time of the symmetric INT4 graph: the
420 small extra ops (~5-10 us each on 2 cores) weigh on a 135M model's 8 ms step; HQQ's
float zero points on ORT's own path take ~12x that time.

SmolLM2's weights *are* Q4_1 blocks (its GGUF), so on it this layout is lossless; on an
original fp16 / fp32 model min/max blocks are plain round to nearest and gain only the
offset rounding over integer zero points.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

LEVELS = 15  # 4 bits
MIDPOINT = 8  # the zero point MatMulNBits assumes when none is given


def offsets_name(packed: str) -> str:
    """The float offsets' initializer beside the packed codes ``packed`` (``<weight>_Q4``)."""
    return f"{packed.removesuffix('_Q4')}_offsets"


@dataclass(frozen=True)
class OffsetBlocks:
    """One ``[K, N]`` weight as MatMulNBits blocks plus a float offset per block.

    Attributes:
        packed: ``[N, blocks, block_size / 2]`` uint8, two 4-bit codes per byte (low nibble
            first), MatMulNBits' layout.
        scales: ``[N * blocks]`` step of each block.
        offsets: ``[blocks, N]``: what ``x``'s block sums are multiplied by
            (the block minimum + ``MIDPOINT`` steps, undoing the kernel's implicit zero point).
    """

    packed: np.ndarray
    scales: np.ndarray
    offsets: np.ndarray


def offset_blocks(weight: np.ndarray, block_size: int) -> OffsetBlocks:
    """Min/max blocks of ``weight`` (``[K, N]``, the MatMul's right operand)."""
    rows, cols = weight.shape
    pad = (-rows) % block_size
    # Edge padding keeps each block's min and max; padded rows meet no input.
    padded = np.pad(weight.astype(np.float32), ((0, pad), (0, 0)), mode="edge")
    blocks = padded.reshape(-1, block_size, cols)  # [blocks, size, N]
    low, high = blocks.min(axis=1), blocks.max(axis=1)
    step = (high - low) / LEVELS
    step = np.where(step > 0, step, 1.0).astype(np.float32)  # a constant block: all codes 0
    codes = np.rint((blocks - low[:, None, :]) / step[:, None, :])
    codes = np.clip(codes, 0, LEVELS).astype(np.uint8).transpose(2, 0, 1)  # [N, blocks, size]
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return OffsetBlocks(
        packed=np.ascontiguousarray(packed),
        scales=np.ascontiguousarray(step.T).reshape(-1),
        offsets=(low + MIDPOINT * step).astype(np.float32),
    )


def float_offset_int4(
    graph: onnx.ModelProto,
    nodes: Iterable[str],
    block_size: int = 32,
    accuracy_level: int | None = 4,
) -> onnx.ModelProto:
    """Rewrite the weight MatMuls ``nodes`` of ``graph`` as offset INT4 blocks, in place.

    Each becomes ``Add(MatMulNBits(x), MatMul(block_sums(x), offsets))``, keeping the
    MatMul's output name; ``block_sums(x)`` is computed once per distinct input.
    """
    initializers = {init.name: init for init in graph.graph.initializer}
    wanted = set(nodes)
    missing = wanted - {node.name for node in graph.graph.node}
    if missing:
        raise ValueError(f"no MatMul named {sorted(missing)[0]!r} in the graph")
    rewritten: list[onnx.NodeProto] = []
    added: list[onnx.TensorProto] = []
    block_sums: dict[str, str] = {}
    for node in graph.graph.node:
        if node.name not in wanted:
            rewritten.append(node)
            continue
        x, name = node.input
        weight = numpy_helper.to_array(initializers[name])
        rows, cols = weight.shape
        dtype = weight.dtype
        if f"{name}_Q4" not in {init.name for init in added}:  # a weight shared by two MatMuls
            blocks = offset_blocks(weight, block_size)
            added += [
                numpy_helper.from_array(blocks.packed, f"{name}_Q4"),
                numpy_helper.from_array(blocks.scales.astype(dtype), f"{name}_scales"),
                numpy_helper.from_array(blocks.offsets.astype(dtype), offsets_name(f"{name}_Q4")),
            ]
        if x not in block_sums:
            block_sums[x] = f"{x}/block_sums"
            matrix = _block_matrix(rows, block_size, dtype)
            added.append(numpy_helper.from_array(matrix, f"{x}/blocks"))
            rewritten.append(
                helper.make_node(
                    "MatMul", [x, f"{x}/blocks"], [block_sums[x]], name=f"{node.name}/BlockSums"
                )
            )
        attributes = dict(K=rows, N=cols, bits=4, block_size=block_size)
        if accuracy_level is not None:
            attributes["accuracy_level"] = accuracy_level
        rewritten += [
            helper.make_node(
                "MatMulNBits",
                [x, f"{name}_Q4", f"{name}_scales"],
                [f"{node.output[0]}/int4"],
                name=f"{node.name}_Q4",
                domain="com.microsoft",
                **attributes,
            ),
            helper.make_node(
                "MatMul",
                [block_sums[x], offsets_name(f"{name}_Q4")],
                [f"{node.output[0]}/offset"],
                name=f"{node.name}/Offsets",
            ),
            helper.make_node(
                "Add",
                [f"{node.output[0]}/int4", f"{node.output[0]}/offset"],
                [node.output[0]],
                name=f"{node.name}/AddOffsets",
            ),
        ]
    del graph.graph.node[:]
    graph.graph.node.extend(rewritten)
    used = {name for node in rewritten for name in node.input}
    kept = [init for init in list(graph.graph.initializer) + added if init.name in used]
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(kept)
    if not any(opset.domain == "com.microsoft" for opset in graph.opset_import):
        graph.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return graph


def _block_matrix(rows: int, block_size: int, dtype) -> np.ndarray:
    """``[rows, blocks]`` 0/1: ``x @ it`` sums ``x`` block by block."""
    blocks = -(-rows // block_size)
    matrix = np.zeros((rows, blocks), dtype=dtype)
    matrix[np.arange(rows), np.arange(rows) // block_size] = 1
    return matrix
