"""Does pruning make a static-INT8 ResNet-56 faster? Channel widths vs ORT's INT8 kernels.

    python -m benchmarks.int8_widths [--data DIR] [--round-to none 4 8 16] [--rounds 8]

B1 found the full search's pruned INT8 artifact (0.49x FLOPs) no faster than the unpruned
INT8 model. This isolates the widths: torch-pruning's uniform pruner (the B1 baseline,
``benchmarks.searching.torch_pruning``) at the B1 FLOPs budget with each ``round_to``, every
model quantized the same way (static_ort + fusion, ``compressor.search.artifact``), each
timed against the unpruned INT8 artifact in interleaved rounds at batch 1 and 64. A copy of
the unpruned INT8 artifact timed against itself shows the noise. No accuracy is measured.
Results: ``benchmarks/results/int8-widths-<date>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from torch import nn

from benchmarks.common import markdown_table, write_results
from benchmarks.searching import settings_for, torch_pruning
from benchmarks.tasks import cifar_task, task_config
from benchmarks.timing import TimingPlan, time_onnx
from compressor.actions.artifact import DeploySpec
from compressor.measure.flops import count_flops
from compressor.search.candidate import make_artifact

CONTROL = "unpruned INT8 (a copy: noise)"


def conv_widths(model: nn.Module) -> list[int]:
    return sorted({m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)})


def measure(data: Path | None, round_tos: list[int | None], rounds: int) -> dict:
    # Small subsets: calibration and BN statistics only need a few batches here.
    task = cifar_task(data, val_images=300, test_images=500, train_images=1280)
    config = task_config("resnet56-cifar10")
    settings = settings_for(task, config)
    spec = DeploySpec("static_ort", True)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-int8-widths-") as folder:
        work = Path(folder)
        unpruned = make_artifact(settings, task.model, spec, work / "unpruned-int8.onnx").path
        artifacts = {CONTROL: shutil.copy(unpruned, work / "control.onnx")}
        rows[CONTROL] = {"flops_ratio": 1.0, "widths": conv_widths(task.model)}
        for round_to in round_tos:
            model, ratio = torch_pruning(
                task,
                settings.flops_budget,
                global_pruning=False,
                round_to=round_to,
                max_ratio=config.prune.max_ratio,
                calibration=settings.calibration,
                calibration_samples=config.search.calibration_samples,
            )
            name = f"tp uniform, round_to {round_to}"
            rows[name] = {
                "pruning_ratio": ratio,
                "flops_ratio": count_flops(model, task.example_inputs) / settings.baseline_flops,
                "widths": conv_widths(model),
            }
            artifacts[name] = make_artifact(settings, model, spec, work / f"rt{round_to}.onnx").path
            print(name, rows[name], flush=True)
        timed = time_onnx(artifacts, unpruned, task.example_inputs, (1, 64), TimingPlan(2, rounds))
    for name, row in rows.items():
        row["latency"] = timed[name]
    return {"rows": rows, "unpruned_int8": timed["baseline"], "rounds": rounds}


def markdown(data: dict) -> str:
    table = markdown_table(
        ["model (all static_ort + fused INT8)", "FLOPs", "conv widths", "b1 p50 ms",
         "b1 vs unpruned INT8", "b64 p50 ms", "b64 vs unpruned INT8"],
        [
            [name, f"{row['flops_ratio']:.3f}x", " ".join(map(str, row["widths"])),
             f"{row['latency'][1]['p50_ms']:.3f}",
             f"{1 / row['latency'][1]['ratio_to_baseline']:.2f}x",
             f"{row['latency'][64]['p50_ms']:.2f}",
             f"{1 / row['latency'][64]['ratio_to_baseline']:.2f}x"]
            for name, row in data["rows"].items()
        ],
    )  # fmt: skip
    return "# Pruned vs unpruned static-INT8 ResNet-56 (ONNX Runtime)\n\n" + table + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="default ../shared/data")
    parser.add_argument("--round-to", nargs="+", default=["none", "4", "8", "16"])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    round_tos = [None if value == "none" else int(value) for value in args.round_to]
    data = measure(args.data, round_tos, args.rounds)
    text = markdown(data)
    print(text)
    print("written:", *write_results("int8-widths", data, text))


if __name__ == "__main__":
    main()
