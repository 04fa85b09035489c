"""``compress``: the command line, a thin layer over :func:`compressor.api.run_task`.

Arguments map 1:1 onto :class:`~compressor.config.CompressConfig` keys; a ``--config`` YAML
file supplies the rest, and options given on the command line override it. Bad input ends
with one line on stderr and exit code 2, before anything is written.

``compress worker --storage URL --study NAME`` joins a study that ``compress`` started in a
shared storage and runs its trials (:mod:`compressor.worker`).
``compress report RUN_DIR`` (:mod:`compressor.report.command`) re-renders a run's report.
``compress inspect`` (:mod:`compressor.inspection`) shows what a run would prune, without
searching.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from compressor.actions.importance import IMPORTANCES
from compressor.actions.quantize import QUANTIZATIONS
from compressor.config import AUGMENTATIONS, DEVICES, CompressConfig, load_config_file
from compressor.credentials import mask
from compressor.errors import CompressorError, UserInputError
from compressor.registry import Registry
from compressor.reward import REWARDS
from compressor.search.samplers import SAMPLERS

# (command-line destination, config path) for every option that overrides a config key.
OVERRIDES = (
    ("task", ("task",)),
    ("target_flops", ("target_flops",)),
    ("target_latency", ("target_latency",)),
    ("target_size", ("target_size",)),
    ("max_accuracy_drop", ("max_accuracy_drop",)),
    ("output", ("output",)),
    ("trials", ("search", "trials")),
    ("time_budget", ("search", "time_budget")),
    ("trial_timeout", ("search", "trial_timeout")),
    ("seed", ("search", "seed")),
    ("references", ("search", "references")),
    ("depth", ("prune", "depth")),
    ("depth_units", ("prune", "depth_units")),
    ("sampler", ("search", "sampler")),
    ("reward", ("search", "reward")),
    ("importance", ("prune", "importance")),
    ("round_to", ("prune", "round_to")),
    ("ignore_layers", ("prune", "ignore_layers")),
    ("strict_groups", ("prune", "strict_groups")),
    ("device", ("measure", "device")),
    ("threads", ("measure", "threads")),
    ("epochs", ("recovery", "epochs")),
    ("quantization", ("deploy", "quantization")),
    ("keep_fp32", ("deploy", "keep_fp32")),
    ("export", ("deploy", "export")),
    # Task inputs (real models, issue 5).
    ("data", ("data",)),
    ("model", ("model",)),
    ("weights", ("weights",)),
    ("trust_pickle", ("trust_pickle",)),
    # Image folders as users have them (issue 17).
    ("channels", ("images", "channels")),
    ("image_size", ("images", "size")),
    ("mean", ("images", "mean")),
    ("std", ("images", "std")),
    ("augment", ("images", "augment")),
    # Scale-out (issue 9): the study's storage and name.
    ("storage", ("search", "storage")),
    ("study", ("search", "study")),
)


def round_to_arg(value: str) -> int | str:
    """``--round-to``: a positive integer or ``auto`` (the range is checked by ``PruneConfig``)."""
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or auto; got {value!r}"
        ) from None


def _choices(registry: Registry, text: str) -> dict[str, Any]:
    """``choices`` and a help text listing each registered choice with its description."""
    listed = "; ".join(f"{entry.name}: {entry.description}" for entry in registry)
    return {"choices": registry.names(), "help": f"{text} ({listed})"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, raised so main() decides the exit code
        raise UserInputError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="compress",
        description="Search pruning plans for a trained model within a FLOPs budget, scored by "
        "accuracy x delta(FLOPs, measured latency); recover and save the best.",
        epilog="compress report RUN_DIR [--open]: re-render a run's report.html "
        "(also of an interrupted run) and print its path. compress inspect [OPTIONS] [--json]: "
        "show the model's prunable groups, the layers left alone and the reachable FLOPs, "
        "without searching.",
    )
    parser.add_argument("--config", help="YAML config file (command-line options override it)")
    parser.add_argument("--task", help="built-in task (default: digits, the embedded default)")
    parser.add_argument(
        "--target-flops",
        dest="target_flops",
        help="FLOPs budget: a ratio of the original (0 < x <= 1) or a count "
        "such as 12M or 1.5G (default 0.5, or searched when only "
        "--target-latency is given)",
    )
    parser.add_argument(
        "--target-latency",
        dest="target_latency",
        help="latency budget of the artifact: a ratio of the fp32 baseline "
        "artifact's latency (0.5) or milliseconds (2.5ms)",
    )
    parser.add_argument(
        "--target-size",
        dest="target_size",
        type=float,
        metavar="MB",
        help="weight-size budget in MB (task causal-lm)",
    )
    parser.add_argument(
        "--trials",
        type=int,
        help="number of candidates to score (default 30; causal-lm: 8)",
    )
    parser.add_argument(
        "--time-budget",
        dest="time_budget",
        type=float,
        help="stop the search after this many seconds",
    )
    parser.add_argument(
        "--max-accuracy-drop",
        dest="max_accuracy_drop",
        metavar="PTS",
        help="choose the fastest variant whose validation accuracy is within PTS points of "
        "the unpruned model's (with or without FLOPs / latency targets)",
    )
    parser.add_argument(
        "--no-references",
        dest="references",
        action="store_const",
        const=False,
        help="do not score the unpruned model's fp32 / fused / INT8 pipelines as trials",
    )
    parser.add_argument(
        "--no-depth",
        dest="depth",
        action="store_const",
        const=False,
        help="never remove whole residual blocks / encoder layers",
    )
    parser.add_argument(
        "--depth-units",
        dest="depth_units",
        metavar="GLOB",
        help="only blocks / layers whose name matches this glob may be removed "
        "(e.g. 'layer*.*'; default: the task's declared units, else those found)",
    )
    parser.add_argument("--seed", type=int, help="seed for the sampler (default 0)")
    parser.add_argument("--output", help="output folder (default runs/<timestamp>)")
    parser.add_argument("--sampler", **_choices(SAMPLERS, "the search's sampler (default tpe)"))
    parser.add_argument("--reward", **_choices(REWARDS, "the reward R (default soft)"))
    parser.add_argument(
        "--importance", **_choices(IMPORTANCES, "channel importance criterion (default magnitude)")
    )
    parser.add_argument(
        "--round-to",
        dest="round_to",
        type=round_to_arg,
        metavar="N|auto",
        help="round kept channel counts to this multiple (1 = no rounding; default 8); "
        "auto: the multiple this machine's kernels favour for each candidate's quantization "
        "mode (measured once, ~10 s, cached)",
    )
    parser.add_argument(
        "--ignore-layers",
        dest="ignore_layers",
        nargs="+",
        metavar="MODULE",
        help="module names whose output channels are never pruned",
    )
    parser.add_argument(
        "--strict-groups",
        dest="strict_groups",
        action="store_const",
        const=True,
        help="stop with an error when pruning a group breaks the model's forward "
        "(default: such groups are excluded from the search and listed)",
    )
    parser.add_argument("--device", choices=DEVICES, help="where latency is measured")
    parser.add_argument("--threads", type=int, help="intra-op threads for latency measurement")
    parser.add_argument("--epochs", type=int, help="recovery fine-tuning epochs (default 3)")
    parser.add_argument(
        "--trial-timeout",
        dest="trial_timeout",
        type=float,
        help="seconds; a slower trial fails with that reason",
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--resume",
        action="store_const",
        const="resume",
        dest="existing",
        help="continue the run in --output even if the config changed",
    )
    existing.add_argument(
        "--overwrite",
        action="store_const",
        const="overwrite",
        dest="existing",
        help="discard the run in --output and start over",
    )
    parser.add_argument(
        "--quantization",
        nargs="+",
        **_choices(QUANTIZATIONS, "quantization modes the search may choose (default: all)"),
    )
    parser.add_argument(
        "--keep-fp32",
        dest="keep_fp32",
        nargs="+",
        metavar="MODULE",
        help="module names never quantized (e.g. conv1 fc)",
    )
    parser.add_argument(
        "--no-export",
        dest="export",
        action="store_const",
        const=False,
        help="score the PyTorch model instead of its ONNX artifact",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress output: print only the final table"
    )
    _add_study_arguments(parser)
    # Task inputs (real models, issue 5).
    parser.add_argument(
        "--data",
        help="the task's data: the shared data folder for built-in "
        "tasks (default ../shared/data), an ImageFolder directory "
        "or a sentence-pair TSV file for your own model",
    )
    parser.add_argument(
        "--model",
        help="your model: pkg.module:factory (a Python factory "
        "returning the model, or (model, example_inputs)), "
        "hf:PATH (a local Hugging Face folder) or a pickled model FILE.pt (with --trust-pickle)",
    )
    parser.add_argument(
        "--weights",
        help="weights for --model pkg.module:factory: a .safetensors file or a torch state dict",
    )
    parser.add_argument(
        "--trust-pickle",
        dest="trust_pickle",
        action="store_const",
        const=True,
        help="allow --model FILE.pt, a whole model saved with torch.save(model): unpickling "
        "runs code from the file, so only for files from a source you trust",
    )
    _add_image_arguments(parser)
    return parser


def _add_image_arguments(parser: argparse.ArgumentParser) -> None:
    images = parser.add_argument_group("image folders (--data DIR)")
    images.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        help="decode images as 1 (grayscale) or 3 (RGB) channels (default: what the model's "
        "first convolution takes)",
    )
    images.add_argument(
        "--image-size",
        dest="image_size",
        type=int,
        metavar="PIXELS",
        help="resize every image to PIXELS x PIXELS (default: the first train image's size)",
    )
    for name in ("mean", "std"):
        images.add_argument(
            f"--{name}",
            type=float,
            nargs="+",
            metavar="X",
            help=f"normalisation {name} per channel, 1 or 3 values on the [0, 1] scale "
            "(default ImageNet's)",
        )
    images.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        help="augmentation of recovery batches (default: none for your data, crop+flip "
        "for resnet56-cifar10)",
    )


def _add_study_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--storage",
        required=required,
        help="the study's database: any Optuna RDB URL, e.g. postgresql://user@host/db "
        "(password in PGPASSWORD or ~/.pgpass)"
        + ("" if required else "; default: sqlite:///OUTPUT/study.db"),
    )
    parser.add_argument("--study", help="the study's name in the storage (default compress)")


def build_worker_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="compress worker",
        description="Join a study started by `compress --storage URL --study NAME` and run "
        "its trials until the study's budget (--trials) is spent.",
    )
    _add_study_arguments(parser, required=True)
    parser.add_argument(
        "--threads", type=int, help="intra-op threads of this worker (default: the study's)"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=600.0,
        help="seconds to wait for the study to be started (default 600)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    return parser


def worker_main(argv: Sequence[str]) -> int:
    """``compress worker``; the same exit codes as :func:`main`."""
    return _guarded("compress worker", lambda: _run_worker(argv))


def _run_worker(argv: Sequence[str]) -> int:
    args = build_worker_parser().parse_args(argv)
    if args.threads is not None and args.threads < 1:
        raise UserInputError(f"--threads must be a positive integer; got {args.threads}")
    from compressor.worker import run_worker  # heavy imports only once the input is valid

    study = args.study or "compress"
    scored = run_worker(
        args.storage, study, threads=args.threads, wait=args.wait, verbose=not args.quiet
    )
    print(f"compress worker: scored {scored} trials of study {study!r}")
    return 0


def config_from_args(args: argparse.Namespace) -> CompressConfig:
    """Config file (if any) with the given command-line options written over it."""
    data: dict[str, Any] = load_config_file(args.config) if args.config else {}
    for dest, path in OVERRIDES:
        value = getattr(args, dest)
        if value is None:
            continue
        section = data
        for key in path[:-1]:
            section = section.setdefault(key, {})
            if not isinstance(section, dict):
                raise UserInputError(f"config section {key!r} must be a mapping")
        section[path[-1]] = value
    if (
        "target_latency" in data or "max_accuracy_drop" in data or "target_size" in data
    ) and "target_flops" not in data:
        data["target_flops"] = None  # no FLOPs target: the FLOPs level is searched
    try:
        return CompressConfig.from_dict(data)
    except TypeError as exc:  # a value of the wrong type that dataclass init refused
        raise UserInputError(f"invalid config: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 done, 1 failed run, 2 bad input, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        return worker_main(argv[1:])
    if argv[:1] == ["inspect"]:
        return _guarded("compress inspect", lambda: _run_inspect(argv[1:]))
    if argv[:1] == ["report"]:
        from compressor.report.command import report_main

        return _guarded("compress", lambda: report_main(argv[1:]))
    return _guarded("compress", lambda: _run_compress(argv))


def _run_compress(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    if config.task == "causal-lm":  # decoder LMs: their own study (issue 16)
        from compressor.decoder_pipeline import run_causal_lm

        existing = args.existing or "auto"
        print(run_causal_lm(config, trials=args.trials, verbose=not args.quiet, existing=existing))
        return 0
    if config.target_size is not None:
        raise UserInputError("--target-size applies to --task causal-lm only")
    if config.decoder.space_options():
        raise UserInputError("the config's decoder section applies to --task causal-lm only")
    from compressor.api import run_task  # heavy imports only once the input is valid

    print(run_task(config, verbose=not args.quiet, existing=args.existing or "auto"))
    return 0


def _run_inspect(argv: Sequence[str]) -> int:
    parser = build_parser()
    parser.prog = "compress inspect"
    parser.description = (
        "Show, without searching, what compress would work with: FLOPs and parameters, the "
        "prunable groups and what each couples, the layers left alone and why, the reachable "
        "FLOPs range. Takes the options of compress; search options are ignored."
    )
    parser.add_argument("--json", action="store_true", help="print the record as JSON")
    args = parser.parse_args(argv)
    config = config_from_args(args)
    from compressor.inspection import inspect_task  # heavy imports once the input is valid
    from compressor.logs import console_output

    verbose = not (args.json or args.quiet)
    with console_output(verbose):
        inspection = inspect_task(config, verbose=verbose)
    if args.json:
        import json

        print(json.dumps(inspection.to_json(), indent=2))
    else:
        print(inspection)
    return 0


def _guarded(prog: str, action: Callable[[], int]) -> int:
    """Run ``action``; what it raises becomes one line on stderr (passwords masked) and the
    exit code."""
    try:
        return action()
    except UserInputError as exc:
        print(mask(f"{prog}: error: {exc}"), file=sys.stderr)
        return 2
    except CompressorError as exc:
        print(mask(f"{prog}: failed: {exc}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
