"""Does timing several decoder artifacts in one process bias their decode ratios?

compressor's measurement worker holds every model it compares in one process, each with its
own ONNX Runtime session and thread pool (spinning on). When B5's finalists were timed
together, every plan read 5-15 % slower against fp32 than in two-model comparisons. This
check times the same artifacts two ways *in the same interleaved rounds*, so that machine
load hits both alike:

- ``sep``: one process per model, as each would be deployed;
- ``shared``: one process holding all the models, as the measurement worker does.

Each slot (process, model) runs a burst of ``--runs`` decode steps (one token after a
128-token prompt, the KV cache of that prompt as context) per round, in alternating order;
the per-round median of each model is divided by the first model's (the baseline) from the
same process layout. Idle processes wait on a pipe, so their threads sleep.

    python -m benchmarks.decode_processes --rounds 40 fp32=PATH builder=PATH plan=PATH
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

PROMPT_TOKENS = 128


def _worker(paths: dict[str, str], conn, runs: int, threads: int, inputs: str) -> None:
    import torch

    torch.set_num_threads(threads)  # the worker's loaders size ORT's pool from it
    from compressor.measure.latency_worker import LOADERS, time_once

    # The measurement worker's own decode step (``onnx-decode``: one token after the
    # prompt, its KV cache as context), so this times exactly what the worker times.
    steps = {name: LOADERS.get("onnx-decode")(path, inputs, "cpu") for name, path in paths.items()}
    for step in steps.values():
        for _ in range(5):  # warm-up
            step()
    conn.send("ready")
    while (name := conn.recv()) is not None:
        times = [time_once(steps[name], "cpu") for _ in range(runs)]
        conn.send(statistics.median(times) * 1e3)


def compare_layouts(models: dict[str, str], rounds: int, runs: int, threads: int) -> dict:
    """Per layout and model: median ms of the per-round medians, and the median per-round
    ratio to the first model in the same layout."""
    context = multiprocessing.get_context("spawn")
    layouts = {f"sep:{name}": {name: path} for name, path in models.items()}
    layouts["shared"] = dict(models)
    # Ids below 256 exist in every vocabulary; the content hardly moves a decode step's time.
    prompt = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, PROMPT_TOKENS)))
    folder = tempfile.TemporaryDirectory(prefix="decode-processes-")
    inputs = str(Path(folder.name) / "inputs.pt")
    torch.save((prompt,), inputs)  # the worker's inputs file: a tuple of tensors
    processes = {}
    for layout, paths in layouts.items():
        ours, theirs = context.Pipe()
        process = context.Process(target=_worker, args=(paths, theirs, runs, threads, inputs))
        process.start()
        processes[layout] = (ours, process)
    for ours, _ in processes.values():
        if ours.recv() != "ready":
            raise RuntimeError("a timing process failed to start")
    slots = [(f"sep:{name}", name) for name in models] + [("shared", name) for name in models]
    medians: dict[tuple[str, str], list[float]] = {slot: [] for slot in slots}
    try:
        for index in range(rounds):
            for layout, name in slots if index % 2 == 0 else slots[::-1]:
                pipe = processes[layout][0]
                pipe.send(name)
                medians[(layout, name)].append(pipe.recv())
    finally:
        for ours, process in processes.values():
            ours.send(None)
            process.join()
        folder.cleanup()
    baseline = next(iter(models))
    result = {}
    for kind in ("sep", "shared"):
        for name in models:
            slot = (f"sep:{name}" if kind == "sep" else "shared", name)
            base = (f"sep:{baseline}" if kind == "sep" else "shared", baseline)
            ratios = [a / b for a, b in zip(medians[slot], medians[base], strict=True)]
            result[f"{kind} {name}"] = {
                "ms": statistics.median(medians[slot]),
                "ratio": statistics.median(ratios),
            }
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", nargs="+", help="NAME=PATH of a decoder .onnx; the first is the baseline"
    )
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--runs", type=int, default=15, help="decode steps per burst")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    models = dict(item.split("=", 1) for item in args.models)
    result = compare_layouts(models, args.rounds, args.runs, args.threads)
    for key, value in result.items():
        print(f"{key:24s} {value['ms']:7.2f} ms  ratio {value['ratio']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
