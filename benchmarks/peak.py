"""B4, distance to the limit: this CPU's peak GEMM throughput in ONNX Runtime, fp32 and INT8,
and the fraction of it each artifact of B1 / B2 achieves (FLOPs per call / latency / peak).

One-node ONNX graphs (``onnx.helper``), timed by the same measurement worker and thread count
as every artifact: ``MatMul`` fp32 against ``MatMulInteger`` (uint8 x int8 -> int32, the
kernel dynamic quantization runs) and ``QLinearMatMul`` (the static QDQ kernel), square
sizes, the largest throughput over the sizes taken as the peak.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from benchmarks.common import fmt, latest_result, markdown_table
from compressor.config import MeasureConfig
from compressor.measure.latency import LatencyMeter

KERNELS = ("MatMul fp32", "MatMulInteger u8s8", "QLinearMatMul u8s8")


def gemm_graph(kind: str, size: int, path: Path) -> Path:
    """A one-node graph multiplying an input (size x size) by a constant (size x size)."""
    rng = np.random.default_rng(0)
    if kind == "MatMul fp32":
        weight = numpy_helper.from_array(rng.standard_normal((size, size), np.float32), "B")
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        inputs, output, inits = TensorProto.FLOAT, TensorProto.FLOAT, [weight]
    else:
        weight = numpy_helper.from_array(rng.integers(-127, 128, (size, size), dtype=np.int8), "B")
        scalar = numpy_helper.from_array
        if kind == "MatMulInteger u8s8":
            inits = [
                weight,
                scalar(np.array(128, np.uint8), "a_zp"),
                scalar(np.array(0, np.int8), "b_zp"),
            ]
            node = helper.make_node("MatMulInteger", ["A", "B", "a_zp", "b_zp"], ["Y"])
            output = TensorProto.INT32
        else:
            inits = [
                weight,
                scalar(np.array(0.02, np.float32), "a_s"),
                scalar(np.array(128, np.uint8), "a_zp"),
                scalar(np.array(0.01, np.float32), "b_s"),
                scalar(np.array(0, np.int8), "b_zp"),
                scalar(np.array(4.0, np.float32), "y_s"),
                scalar(np.array(128, np.uint8), "y_zp"),
            ]
            node = helper.make_node(
                "QLinearMatMul", ["A", "a_s", "a_zp", "B", "b_s", "b_zp", "y_s", "y_zp"], ["Y"]
            )
            output = TensorProto.UINT8
        inputs = TensorProto.UINT8
    graph = helper.make_graph(
        [node],
        "gemm",
        [helper.make_tensor_value_info("A", inputs, [size, size])],
        [helper.make_tensor_value_info("Y", output, [size, size])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def measure_peak(sizes: list[int], threads: int, rounds: int, runs: int) -> dict:
    """GFLOP/s (GOP/s for INT8) of each kernel at each size; the fp32 graph is the baseline
    every INT8 graph is timed against, interleaved."""
    points = []
    with tempfile.TemporaryDirectory(prefix="bench-peak-") as folder:
        for size in sizes:
            graphs = {
                k: gemm_graph(k, size, Path(folder) / f"{i}-{size}.onnx")
                for i, k in enumerate(KERNELS)
            }
            fp32_input = torch.randn(size, size)
            int8_input = torch.randint(0, 256, (size, size), dtype=torch.uint8)
            config = MeasureConfig(
                threads=threads, batch_size=size, rounds=rounds, runs_per_round=runs, max_seconds=20
            )
            ops = 2.0 * size**3
            with LatencyMeter(config, (fp32_input,)) as meter:
                meter.set_baseline(graphs["MatMul fp32"])
                fp32 = meter.compare(graphs["MatMul fp32"])
            points.append(_point("MatMul fp32", size, ops, fp32.candidate.p50_ms))
            for kind in KERNELS[1:]:
                with LatencyMeter(config, (int8_input,)) as meter:
                    meter.set_baseline(graphs[kind])
                    result = meter.compare(graphs[kind])
                points.append(_point(kind, size, ops, result.candidate.p50_ms))
    peak = {
        "fp32": max(p["gops"] for p in points if p["kernel"] == "MatMul fp32"),
        "int8": max(p["gops"] for p in points if p["kernel"] != "MatMul fp32"),
    }
    return {"points": points, "peak_gops": peak}


def _point(kernel: str, size: int, ops: float, p50_ms: float) -> dict:
    return {"kernel": kernel, "size": size, "p50_ms": p50_ms, "gops": ops / (p50_ms * 1e-3) / 1e9}


def achieved(point: dict, peak_gops: dict) -> float:
    """Fraction of the peak one artifact reaches: FLOPs per call / median latency / peak."""
    gops = point["flops_per_call"] / (point["p50_ms"] * 1e-3) / 1e9
    return gops / peak_gops[point["precision"]]


def artifact_fractions(peak_gops: dict, folder: Path | None = None) -> list[dict]:
    """Achieved fractions of every artifact in the latest B1 and B2 results (if any)."""
    rows = []
    for name in ("resnet56", "minilm"):
        result = latest_result(name, folder)
        if result is None:
            continue
        for point in result.get("peak_points", []):
            gops = point["flops_per_call"] / (point["p50_ms"] * 1e-3) / 1e9
            rows.append(
                {**point, "benchmark": name, "gops": gops, "fraction": achieved(point, peak_gops)}
            )
    return rows


def run(args, session) -> tuple[dict, str]:
    sizes = [256, 512] if args.quick else [512, 1024, 2048]
    rounds, runs = (2, 3) if args.quick else (6, 5)
    measured = measure_peak(sizes, session.threads, rounds, runs)
    fractions = artifact_fractions(measured["peak_gops"], args.results)
    data = {**measured, "artifacts": fractions, "quick": args.quick}
    table = markdown_table(
        ["kernel", "size", "p50 ms", "GFLOP/s (GOP/s)"],
        [
            [p["kernel"], p["size"], fmt(p["p50_ms"], ".3f"), fmt(p["gops"], ".1f")]
            for p in measured["points"]
        ],
    )
    peak = measured["peak_gops"]
    markdown = (
        "# B4: distance to the limit\n\n"
        f"Peak through ONNX Runtime on this CPU: **fp32 {peak['fp32']:.1f} GFLOP/s, "
        f"INT8 {peak['int8']:.1f} GOP/s** ({peak['int8'] / peak['fp32']:.2f}x).\n\n" + table
    )
    if fractions:
        markdown += (
            "\nAchieved by each artifact (latest B1/B2 results; "
            "FLOPs per call / p50 / peak of its precision):\n\n"
        )
        markdown += markdown_table(
            ["benchmark", "artifact", "setting", "precision", "GFLOP/s", "fraction of peak"],
            [
                [
                    r["benchmark"],
                    r["name"],
                    r["setting"],
                    r["precision"],
                    fmt(r["gops"], ".1f"),
                    f"{r['fraction']:.1%}",
                ]
                for r in fractions
            ],
        )
    return data, markdown
