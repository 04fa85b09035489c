"""``compress report RUN_DIR``: re-render a run's report from its folder, and say where it is."""

from __future__ import annotations

import argparse
import sys
import webbrowser
from collections.abc import Sequence

from compressor.errors import UserInputError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, raised so the CLI decides the exit code
        raise UserInputError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="compress report",
        description="Render report.html and summary.md of a run folder from its study and "
        "artifacts (also for a run that was interrupted) and print the report's path.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a compress output folder")
    parser.add_argument(
        "--open", action="store_true", help="open the report in the default web browser"
    )
    return parser


def report_main(argv: Sequence[str]) -> int:
    """Returns the exit code; bad input raises :class:`UserInputError` (the CLI prints it)."""
    args = build_parser().parse_args(argv)
    from compressor.report.render import write_report  # matplotlib only once input is valid

    files = write_report(args.run_dir)
    print(files.html.resolve())
    if args.open and not webbrowser.open(files.html.resolve().as_uri()):
        print("compress report: no web browser found to open it", file=sys.stderr)
    return 0
