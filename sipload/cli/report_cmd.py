"""``sipload report`` and ``sipload compare``: reports rebuilt from run-directory files.

``sipload report RUN_DIR [--threshold T ...]`` rebuilds ``summary.json``,
``report.html`` and ``junit.xml`` from the run's files; thresholds given here are
checked with the scenario's own (from plan.json).  It exits as ``sipload run`` did
(summary.json's ``exit_code``): 0 when the run's gate passed and every threshold is
met, 1 when calls failed beyond ``--allow-failures`` or a threshold failed, 3 when no
call got any answer or the run could not complete; 2 on a usage error (a bad
threshold, not a run directory).

``sipload compare RUN_A RUN_B [--tolerance 10%] [--out DIR]`` compares run B
against baseline run A, prints the table, writes ``compare.json`` and
``compare.html`` into DIR (default: RUN_B), and exits 1 when a metric regressed
beyond the tolerance, 0 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="rebuild summary.json, report.html and junit.xml "
                                      "from a run directory")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory")
    p.add_argument("--threshold", action="append", default=[], metavar="T",
                   help="a pass/fail threshold, e.g. 'answer.p95<200ms', 'asr>=0.99', "
                        "'failed.rate<0.5%%' (repeatable; added to the scenario's)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the verdicts")
    p.set_defaults(func=run_report)

    c = sub.add_parser("compare", help="compare run B against baseline run A")
    c.add_argument("run_a", metavar="RUN_A", help="the baseline run directory")
    c.add_argument("run_b", metavar="RUN_B", help="the candidate run directory")
    c.add_argument("--tolerance", default="10%",
                   help="relative change allowed before a regression (default 10%%)")
    c.add_argument("--out", metavar="DIR", help="where compare.html and compare.json go "
                                                "(default: RUN_B)")
    c.set_defaults(func=run_compare)


def _error(command: str, message: str) -> int:
    print(f"sipload {command}: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_report(args: argparse.Namespace) -> int:
    from sipload.report import build_summary, write_junit, write_report
    from sipload.report.analysis import analyse_path
    from sipload.report.data import RunDirError
    from sipload.report.thresholds import ThresholdError, parse_threshold

    run_dir = Path(args.run_dir)
    try:
        marks = analyse_path(run_dir).marks
        parsed = [parse_threshold(t, marks) for t in args.threshold]
        summary = build_summary(run_dir, thresholds=parsed)
    except RunDirError as e:
        return _error("report", str(e))
    except ThresholdError as e:
        return _error("report", f"bad threshold: {e}")
    report = write_report(run_dir, summary)
    junit = write_junit(run_dir, summary)
    if not args.quiet:
        c = summary["calls"]
        asr = summary["asr"]
        print(f"{c['attempted']} calls attempted, {c['succeeded']} succeeded, "
              f"{c['failed']} failed, {c['in_flight_at_stop']} in flight at stop, "
              f"{c['lost_with_worker']} lost with a worker; ASR "
              + ("-" if asr is None else f"{asr:.4%}"))
        if summary["generator"]["limited"]:
            print("generator-limited: " + "; ".join(summary["generator"]["limited_reasons"]))
        print(f"wrote {run_dir / 'summary.json'}, {report}, {junit}")
    for v in summary["thresholds"]:
        print(("PASS " if v["passed"] else "FAIL ") + v["threshold"] + ": " + v["message"])
    if not summary.get("complete", True):
        print("INCOMPLETE: " + str(summary.get("incomplete_reason", "")))
    gate = summary["gate"]
    print(("PASS " if gate["verdict"] == "passed" else "FAIL ") + "run: " + gate["message"])
    code: int = summary["exit_code"]
    return code


def run_compare(args: argparse.Namespace) -> int:
    from sipload.report.compare import (
        compare_runs,
        format_comparison,
        parse_tolerance,
        write_comparison,
    )
    from sipload.report.data import RunDirError
    from sipload.report.thresholds import ThresholdError

    try:
        tolerance = parse_tolerance(args.tolerance)
    except ValueError:
        return _error("compare", f"bad --tolerance {args.tolerance!r} (e.g. 10% or 0.1)")
    try:
        result = compare_runs(Path(args.run_a), Path(args.run_b), tolerance)
    except (RunDirError, ThresholdError) as e:
        return _error("compare", str(e))
    out = Path(args.out) if args.out else Path(args.run_b)
    j, h = write_comparison(result, out)
    print(format_comparison(result), end="")
    print(f"wrote {j}, {h}")
    return EXIT_FAILED if result["regressed"] else EXIT_OK
