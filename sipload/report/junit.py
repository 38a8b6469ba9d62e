"""``junit.xml``: thresholds (and later conformance cases) as JUnit test cases.

One ``<testsuite>`` per class of cases inside ``<testsuites>``; each threshold is
a ``<testcase classname="thresholds" name="answer.p95<200ms">``, failed ones
carry a ``<failure>`` whose message gives the measured value.  Other callers
(conformance runs) pass their own :class:`JUnitCase` list.  The XML is built
with ElementTree, which escapes every attribute and text.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JUNIT = "junit.xml"


@dataclass(frozen=True, slots=True)
class JUnitCase:
    """One test case."""

    classname: str  #: the suite it belongs to ("thresholds", a conformance pack ...)
    name: str  #: the case, e.g. the threshold as written
    failure: str | None = None  #: None when it passed; else the failure message
    detail: str = ""  #: longer text for the failure body / system-out
    time: float = 0.0  #: seconds


def threshold_cases(summary: Mapping[str, Any]) -> list[JUnitCase]:
    """One case per threshold verdict in a summary."""
    out: list[JUnitCase] = []
    for v in summary.get("thresholds", []) or []:
        message = str(v.get("message", ""))
        out.append(JUnitCase(classname="thresholds", name=str(v.get("threshold", "")),
                             failure=None if v.get("passed") else message,
                             detail=message))
    return out


def junit_xml(cases: Iterable[JUnitCase], *, name: str = "sipload") -> bytes:
    """The JUnit XML document for ``cases``, grouped into suites by classname."""
    root = ET.Element("testsuites", name=name)
    suites: dict[str, list[JUnitCase]] = {}
    for case in cases:
        suites.setdefault(case.classname, []).append(case)
    if not suites:
        suites["thresholds"] = []
    total = failures = 0
    for classname, group in suites.items():
        failed = sum(1 for c in group if c.failure is not None)
        suite = ET.SubElement(root, "testsuite", name=classname, tests=str(len(group)),
                              failures=str(failed), errors="0", skipped="0",
                              time=f"{sum(c.time for c in group):.3f}")
        for c in group:
            tc = ET.SubElement(suite, "testcase", classname=c.classname, name=c.name,
                               time=f"{c.time:.3f}")
            if c.failure is not None:
                f = ET.SubElement(tc, "failure", message=c.failure, type=c.classname)
                f.text = c.detail or c.failure
            elif c.detail:
                ET.SubElement(tc, "system-out").text = c.detail
        total += len(group)
        failures += failed
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("errors", "0")
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def write_junit(path: Path | str, summary: Mapping[str, Any],
                cases: Iterable[JUnitCase] = ()) -> Path:
    """Write ``junit.xml`` into the run directory.

    Args:
        path: the run directory.
        summary: the run's summary; each of its thresholds becomes a test case.
        cases: more cases (conformance runs), each in the suite of its classname.

    Returns:
        The path of the file written.
    """
    out = Path(path) / JUNIT
    out.write_bytes(junit_xml([*threshold_cases(summary), *cases]))
    return out
