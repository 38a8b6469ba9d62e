"""``sipload trace RUN_DIR [--call-id ID | --failed]``: traced calls as ladders, in the terminal.

What SIPp's ``-trace_msg``/``-trace_err`` log as the run goes, per call and
after the fact: for each call the run traced (``sipload run --trace``), its
result and failure, the message it failed on, then each message with its time
since the call started, direction, transport, addresses and full text.  Message
text is made printable first (:func:`sipload.report.wire.show`): a hostile
peer's escape sequences never reach the terminal.

Exit 0 when calls were printed, 1 when no traced call matched, 2 when RUN_DIR
is not a run directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from sipload.exitcodes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from sipload.report.wire import CallTrace, Key, cause, iter_traces, show, why
from sipload.sip.peek import call_id_of
from sipload.stats.msround import fmt_ms
from sipload.stats.rundir import CALLS, TRACES, read_calls


def register(sub: Any) -> None:
    p = sub.add_parser("trace", help="print the traced calls of a run as ladders with "
                                     "message text")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--call-id", metavar="ID", help="only the call that used this Call-ID")
    which.add_argument("--failed", action="store_true", help="only failed calls")
    p.set_defaults(func=run)


def _records(path: Path) -> dict[Key, dict[str, Any]]:
    table = read_calls(path).select(["worker", "call_number", "result", "failure", "detail",
                                     "actual_start", "end", "call_id"])
    return {(int(r["worker"]), int(r["call_number"])): r for r in table.to_pylist()}


def _uses(trace: CallTrace, call_id: str) -> bool:
    needle = call_id.encode("utf-8", "surrogateescape")
    return any(needle in m.data and call_id_of(m.data) == call_id for m in trace.messages)


def print_call(key: Key, trace: CallTrace, rec: dict[str, Any] | None, out: TextIO) -> None:
    """One call: its header, the message it failed on, then each message."""
    worker, number = key
    start = float(rec["actual_start"]) if rec else (trace.messages[0].t if trace.messages
                                                    else 0.0)
    if rec is None:
        out.write(f"call {number} (worker {worker}): no record\n")
    else:
        result = str(rec["result"])
        head = f"call {number} (worker {worker}): {result}"
        if rec["failure"]:
            head += f": {rec['failure']} - {show(str(rec['detail']).encode())}"
        out.write(head + "\n")
        culprit = cause(trace.messages, str(rec["failure"]), float(rec["end"]))
        if culprit is not None:
            out.write(f"  failed on: {why(culprit)}\n")
    call_ids = dict.fromkeys(c for m in trace.messages if (c := call_id_of(m.data)))
    out.write(f"  call-id {', '.join(show(c.encode()) for c in call_ids) or '?'}; "
              f"{len(trace.messages)} messages"
              + (f", {trace.dropped} more not kept" if trace.dropped else "") + "\n\n")
    for m in trace.messages:
        arrow = f"-- {m.label} -->"
        src, dst = (f"sipload {m.local}", f"{m.remote}") if m.outgoing else \
            (f"{m.remote}", f"sipload {m.local}")
        out.write(f"  +{fmt_ms((m.t - start) * 1000.0):>10} ms  {src} {arrow} {dst}  "
                  f"{m.transport.upper()} ({m.length} bytes)\n")
        for line in m.text.rstrip("\n").split("\n"):
            out.write(f"      {line}\n")
        out.write("\n")


def run(args: argparse.Namespace) -> int:
    path = Path(args.run_dir)
    if not path.is_dir() or not (path / CALLS).exists():
        print(f"sipload trace: {path}: not a run directory (no {CALLS})", file=sys.stderr)
        return EXIT_USAGE
    if not (path / TRACES).exists():
        print(f"sipload trace: {path}: the run kept no traces (it ran with --trace none, or "
              "before sipload traced)", file=sys.stderr)
        return EXIT_FAILED
    try:
        shown = _print_matching(path, args)
    except BrokenPipeError:  # the reader (head, less) went away: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python's own advice for EPIPE
        return EXIT_OK
    if not shown:
        what = (f"with Call-ID {args.call_id!r}" if args.call_id is not None
                else "that failed" if args.failed else "at all")
        print(f"sipload trace: {path}: no traced call {what}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _print_matching(path: Path, args: argparse.Namespace) -> int:
    records = _records(path)
    shown = 0
    for key, trace in iter_traces(path):
        rec = records.get(key)
        if args.failed and (rec is None or rec["result"] != "failed"):
            continue
        if args.call_id is not None and not (
                (rec is not None and rec["call_id"] == args.call_id)
                or _uses(trace, args.call_id)):
            continue
        print_call(key, trace, rec, sys.stdout)
        shown += 1
    sys.stdout.flush()
    return shown
