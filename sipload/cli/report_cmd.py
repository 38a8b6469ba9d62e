"""``sipload report`` and ``sipload compare``: reports rebuilt from run-directory files.

``sipload report RUN_DIR [--threshold T ...]`` rebuilds ``summary.json``,
``report.html`` and ``junit.xml`` from the run's files; thresholds given here are
checked with the scenario's own (from plan.json).  It exits as ``sipload run`` did
(summary.json's ``exit_code``): 0 when the run's gate passed and every threshold is
met, 1 when calls failed beyond ``--allow-failures`` or a threshold failed, 3 when no
call got any answer or the run could not complete; 2 on a usage error (a bad
threshold, not a run directory).

``sipload compare RUN_A RUN_B [--tolerance 10%] [--min-delta 1ms ...] [--metric M ...]
[--tail-samples 10] [--out DIR]`` compares run B against baseline run A, prints
the table (every value with its unit), writes ``compare.json`` and
``compare.html`` into DIR when ``--out`` is given (never into either run), and
exits 1 when a judged metric regressed beyond both the tolerance and its floor, 0
otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sipload.cluster import collector
from sipload.exitcodes import EXIT_FAILED, EXIT_OK, EXIT_USAGE


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
    c.add_argument("--min-delta", action="append", default=[], metavar="FLOOR",
                   help="an absolute floor below which no change counts: 2ms (latencies), "
                        "0.5%% (ratios, in points), 5/s (rates), 3 (counts); repeatable "
                        "(defaults 1ms, 0.1%%, 1/s, 1)")
    c.add_argument("--metric", action="append", default=[], metavar="METRIC",
                   help="judge only this metric (repeatable), e.g. answer.p95, asr, "
                        "failed.rate; the others are shown")
    c.add_argument("--tail-samples", type=int, default=10, metavar="N",
                   help="a percentile is judged only when both runs have N samples beyond "
                        "it (default 10: p99 needs 1,000 calls)")
    c.add_argument("--out", metavar="DIR", help="write compare.json and compare.html here "
                                                "(nothing is written into either run)")
    c.set_defaults(func=run_compare)


def _error(command: str, message: str) -> int:
    print(f"sipload {command}: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_report(args: argparse.Namespace) -> int:
    with collector.paused():  # bounded work: its garbage waits for the end
        return _report(args)


def _report(args: argparse.Namespace) -> int:
    from sipload.report import build_summary, write_junit, write_report
    from sipload.report.analysis import analyse_path
    from sipload.report.connections import detail_lines
    from sipload.report.data import RunDirError
    from sipload.report.thresholds import ThresholdError, parse_threshold
    from sipload.stats.rundir import pyarrow_without_pandas

    pyarrow_without_pandas()  # as in sipload run: the report needs no pandas (0.3 s)
    run_dir = Path(args.run_dir)
    try:
        with collector.collecting():  # the analysis's garbage: hdrh's cycles (see run_cmd)
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
        for line in detail_lines(summary):
            print(line)
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
        CompareError,
        compare_runs,
        format_comparison,
        parse_min_delta,
        parse_tolerance,
        write_comparison,
    )
    from sipload.report.data import RunDirError
    from sipload.report.thresholds import ThresholdError

    try:
        tolerance = parse_tolerance(args.tolerance)
    except ValueError:
        return _error("compare", f"bad --tolerance {args.tolerance!r} (e.g. 10% or 0.1)")
    if args.tail_samples < 1:
        return _error("compare", "--tail-samples: must be 1 or more")
    try:
        floors = dict(parse_min_delta(t) for t in args.min_delta)
        result = compare_runs(Path(args.run_a), Path(args.run_b), tolerance, floors=floors,
                              metrics=args.metric, tail_samples=args.tail_samples)
    except (RunDirError, ThresholdError, CompareError) as e:
        return _error("compare", str(e))
    print(format_comparison(result), end="")
    if args.out:
        j, h = write_comparison(result, Path(args.out))
        print(f"wrote {j}, {h}")
    return EXIT_FAILED if result["regressed"] else EXIT_OK
