"""The ``sipload`` command line: one sub-command per module in this package.

Exit codes (documented in the README): 0 success / all thresholds met,
1 a check failed (invalid message, threshold, conformance case), 2 usage or
input error (scenario, flag, CSV), 3 the run could not run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sipload import __version__
from sipload._native import describe
from sipload.cli import (
    conformance_cmd,
    parse_cmd,
    report_cmd,
    run_cmd,
    scenario_cmd,
    trace_cmd,
    uas_cmd,
    worker_cmd,
)
from sipload.exitcodes import EXIT_OK, EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line (the flag and what was wrong), exit 2, before anything runs."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sipload", description="SIP load generator and conformance tester")
    version = f"sipload {__version__}, {describe()}"
    parser.add_argument("--version", action="version", version=version)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    parse_cmd.register(sub)
    scenario_cmd.register(sub)
    report_cmd.register(sub)
    trace_cmd.register(sub)
    run_cmd.register(sub)
    uas_cmd.register(sub)
    worker_cmd.register(sub)
    conformance_cmd.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (``sipload schema | head``): what it read is all it
        # wanted; no traceback, and no second error when Python flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK
    return code
