"""The ``sipload`` command line: one sub-command per module in this package.

Exit codes (documented in the README): 0 success / all thresholds met,
1 a check failed (invalid message, threshold, conformance case), 2 usage or
input error (scenario, flag, CSV), 3 the run could not run.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
import threading
from collections.abc import Sequence

from sipload import __version__
from sipload._native import describe
from sipload.cluster import collector
from sipload.exitcodes import EXIT_OK, EXIT_USAGE

#: The module (in this package) of each sub-command, in the order ``--help`` lists
#: them.  A command line naming one imports that module only: ``sipload run`` starts
#: without the conformance cases or the report's libraries.
COMMANDS: dict[str, str] = {
    "parse": "parse_cmd", "validate": "scenario_cmd", "schema": "scenario_cmd",
    "import-sipp": "scenario_cmd", "report": "report_cmd", "compare": "report_cmd",
    "trace": "trace_cmd", "run": "run_cmd", "uas": "uas_cmd", "worker": "worker_cmd",
    "keys": "worker_cmd", "conformance": "conformance_cmd",
}

#: The commands after which :func:`program` ends the process without tearing the
#: interpreter down: they close what they write before they return.
QUICK_EXIT = frozenset({"run", "report"})


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line (the flag and what was wrong), exit 2, before anything runs."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser: every sub-command, or only ``command``'s module."""
    parser = _Parser(prog="sipload", description="SIP load generator and conformance tester")
    version = f"sipload {__version__}, {describe()}"
    parser.add_argument("--version", action="version", version=version)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(
        COMMANDS.values()))
    for name in modules:
        importlib.import_module(f"sipload.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), None)
    with collector.paused():  # importing the command's modules: no garbage to find
        parser = build_parser(command)
        args = parser.parse_args(words)
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


def program() -> None:
    """The ``sipload`` program (``python -m sipload``, the console script): :func:`main`,
    then the process ends with its exit code.

    After a command of :data:`QUICK_EXIT` (``run``, ``report``) it ends with ``os._exit``
    once the ``atexit`` handlers have run and the output is flushed: tearing down an
    interpreter that has imported matplotlib, pyarrow and numpy (a collection of the
    charts' garbage, then every module's objects freed one by one) costs 0.1-0.2 s of
    CPU, a tenth of a short run's, and leaves nothing behind that the kernel does not
    free anyway.  Such a command runs in a paused stretch of :mod:`sipload.cluster.collector`
    (its run collects inside it), so that nothing collects between its end and the exit.
    Not while another thread runs (the interpreter would wait for it)."""
    words = sys.argv[1:]
    command = next((w for w in words if not w.startswith("-")), None)
    if command not in QUICK_EXIT:
        raise SystemExit(main(words))
    with collector.paused():
        code = main(words)
        if threading.active_count() == 1:
            atexit._run_exitfuncs()
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):  # closed, or a reader that went away
                    pass
            os._exit(code)
    raise SystemExit(code)
