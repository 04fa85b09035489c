"""One command per benchmark:

    python -m benchmarks resnet56            [--quick] [--data DIR]   # B1
    python -m benchmarks minilm              [--quick] [--data DIR]   # B2
    python -m benchmarks minilm --max-accuracy-drop 1                 # B2b
    python -m benchmarks search-efficiency   [--quick] [--data DIR]   # B3
    python -m benchmarks peak                [--quick]                # B4
    python -m benchmarks proxy               [--quick] [--data DIR] [--plans N]   # proxies
    python -m benchmarks stability           [--runs N]               # `make demo` x N
    python -m benchmarks smollm              [--quick] [--trials N]   # B5
    python -m benchmarks recovery            [--quick] [--data DIR]   # fine-tune vs distill

Each writes ``benchmarks/results/<name>-<date>.json`` and ``.md`` (``--results DIR``
elsewhere), with the machine, thread count, library versions, duration and load average.
``--quick`` is the smoke-test size (minutes, small subsets); the numbers it gives are not
the benchmark's.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from compressor.cli import round_to_arg

BENCHMARKS = {
    "resnet56": "benchmarks.resnet56",
    "minilm": "benchmarks.minilm",
    "search-efficiency": "benchmarks.search_efficiency",
    "peak": "benchmarks.peak",
    "proxy": "benchmarks.proxy",
    "stability": "benchmarks.stability",
    "smollm": "benchmarks.smollm",
    "recovery": "benchmarks.recovery_methods",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="smoke-test size (minutes)")
    parser.add_argument("--data", default=None, help="shared data folder (default ../shared/data)")
    parser.add_argument("--results", type=Path, default=None, help="default benchmarks/results")
    parser.add_argument("--threads", type=int, default=None, help="default: the meter's")
    parser.add_argument(
        "--task",
        default=None,
        help="resnet56: resnet56-cifar10 (default) or digits (smoke test without data); "
        "search-efficiency: comma-separated tasks (default digits,resnet56-cifar10)",
    )
    parser.add_argument("--trials", type=int, default=None, help="search trials per method")
    parser.add_argument(
        "--large-batch", type=int, default=64, help="resnet56: the second batch size timed"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="search-efficiency")
    parser.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=None,
        help="resnet56 (B1b) and minilm (B2b): no FLOPs target; our search takes the fastest "
        "variant within this many points of the baseline's validation metric (resnet56: "
        "against the unpruned fp32 / INT8 rows only; minilm: every row); results named "
        "<name>-drop<PTS>-<date>",
    )
    parser.add_argument(
        "--round-to",
        type=round_to_arg,  # the CLI's; PruneConfig rejects values below 1
        default=None,
        help="resnet56: prune.round_to of every search (a multiple, or auto: the one this "
        "CPU's kernels favour per quantization mode); default the task's",
    )
    parser.add_argument(
        "--samplers", nargs="+", default=None, help="search-efficiency: samplers (default all)"
    )
    parser.add_argument("--runs", type=int, default=None, help="stability: demo runs (3)")
    parser.add_argument(
        "--plan-range", default=None, help="proxy: score plans FIRST:LAST only (split runs)"
    )
    parser.add_argument("--plans", type=int, default=None, help="proxy: plans per task (16)")
    parser.add_argument(
        "--recovery-steps",
        type=int,
        default=None,
        help="proxy: the recovery budget every plan is ranked after (default the task's)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> tuple[Path, Path]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model here is a local file

    from benchmarks.common import Session, machine_markdown, write_results
    from compressor.errors import UserInputError
    from compressor.measure.latency import default_threads

    session = Session(args.threads or default_threads())
    module = importlib.import_module(BENCHMARKS[args.benchmark])
    try:
        data, markdown = module.run(args, session)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    record = session.record(argv)
    data = {"benchmark": args.benchmark, "run": record, **data}
    markdown += "\n" + machine_markdown(record)
    # A run restricted to other tasks than the default gets its own file name, so smoke
    # tests and partial reruns never overwrite the benchmark's own result.
    task = f"-{args.task.replace(',', '+')}" if args.task else ""
    drop = getattr(args, "max_accuracy_drop", None)
    task += f"-drop{drop:g}" if drop is not None else ""
    round_to = getattr(args, "round_to", None)
    task += f"-round{round_to}" if round_to is not None else ""
    steps = getattr(args, "recovery_steps", None)
    task += f"-rec{steps}" if steps is not None else ""
    name = args.benchmark + task + ("-quick" if args.quick else "")
    paths = write_results(name, data, markdown, args.results)
    print(markdown)
    print(f"written {paths[0]} and {paths[1]}")
    return paths


if __name__ == "__main__":
    main()
