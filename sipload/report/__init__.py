"""Reports from a run directory: pandas frames, summary.json, report.html, junit.xml.

Reads the files a run leaves (see :mod:`sipload.stats.rundir`) and nothing else: it
imports no engine, cluster, user agent or scenario code.

Public API::

    load_run(path) -> RunData                  # DataFrames for notebooks
    build_summary(path, *, thresholds=(), command="") -> dict   # writes summary.json
    write_report(path) -> Path                 # report.html, self-contained
    write_junit(path, summary) -> Path         # junit.xml, one testcase per threshold
    thresholds.parse_threshold(text, marks=...) / thresholds.evaluate(...)
    compare.compare_runs(a, b, tolerance=0.10) -> dict
"""

from __future__ import annotations

from sipload.report.data import STANDARD_MARKS, RunData, RunDirError, load_run
from sipload.report.html import write_report
from sipload.report.junit import JUnitCase, write_junit
from sipload.report.summary import build_summary, validate_summary
from sipload.report.thresholds import Threshold, ThresholdError, Verdict

__all__ = [
    "STANDARD_MARKS",
    "JUnitCase",
    "RunData",
    "RunDirError",
    "Threshold",
    "ThresholdError",
    "Verdict",
    "build_summary",
    "load_run",
    "validate_summary",
    "write_junit",
    "write_report",
]
