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

The names are imported on first use (PEP 562): ``sipload run`` checks its thresholds
with :mod:`sipload.report.thresholds` at start-up, and pandas, matplotlib and jinja2
are imported only when a report is made.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sipload.report.data import RunData, RunDirError, load_run
    from sipload.report.html import write_report
    from sipload.report.junit import JUnitCase, write_junit
    from sipload.report.summary import build_summary, validate_summary
    from sipload.report.thresholds import STANDARD_MARKS, Threshold, ThresholdError, Verdict

_WHERE = {
    "STANDARD_MARKS": "thresholds", "JUnitCase": "junit", "RunData": "data",
    "RunDirError": "data", "Threshold": "thresholds", "ThresholdError": "thresholds",
    "Verdict": "thresholds", "build_summary": "summary", "load_run": "data",
    "validate_summary": "summary", "write_junit": "junit", "write_report": "html",
}

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


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"sipload.report.{module}"), name)
