"""``junit.xml``: the one JUnit writer, for load runs' thresholds and conformance cases.

One ``<testsuite>`` per class of cases inside ``<testsuites>``, in the order the
classes first appear.  A load run's thresholds are ``<testcase classname="thresholds"
name="answer.p95<200ms">``; a failed one carries a ``<failure>`` whose message gives
the measured value.  A conformance run passes its own :class:`JUnitCase` list (one per
case, its pack as the classname, see :mod:`sipload.conformance.evidence`).  Outcomes
map as CI servers expect: ``failure`` → ``<failure>``, ``error`` → ``<error>``,
``skipped`` → ``<skipped>`` with its message, a pass with a text → ``<system-out>``.
The XML is built with ElementTree, which escapes every attribute and text; characters
XML 1.0 cannot carry at all (wire bytes may hold NUL) are replaced.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JUNIT = "junit.xml"

OUTCOMES = ("pass", "failure", "error", "skipped")


@dataclass(frozen=True, slots=True)
class JUnitCase:
    """One test case."""

    classname: str  #: the suite it belongs to ("thresholds", a conformance pack ...)
    name: str  #: the case, e.g. the threshold as written
    failure: str | None = None  #: None when it passed; else the message (of the outcome)
    detail: str = ""  #: longer text for the failure body / system-out
    time: float = 0.0  #: seconds
    outcome: str = ""  #: one of OUTCOMES; "" means "failure" when failure is set, else "pass"
    properties: tuple[tuple[str, str], ...] = ()  #: (name, value) pairs for tools that read them

    @property
    def kind(self) -> str:
        """The outcome, with the default applied."""
        if self.outcome:
            return self.outcome
        return "pass" if self.failure is None else "failure"


def clean(text: str) -> str:
    """Text with the characters XML 1.0 cannot carry replaced by U+FFFD."""
    return "".join(c if c in "\t\n\r" or 0x20 <= ord(c) < 0xD800 or 0xE000 <= ord(c) < 0xFFFE
                   else "\ufffd" for c in text)


def threshold_cases(summary: Mapping[str, Any]) -> list[JUnitCase]:
    """One case per threshold verdict in a summary."""
    out: list[JUnitCase] = []
    for v in summary.get("thresholds", []) or []:
        message = str(v.get("message", ""))
        out.append(JUnitCase(classname="thresholds", name=str(v.get("threshold", "")),
                             failure=None if v.get("passed") else message,
                             detail=message))
    return out


def junit_element(cases: Iterable[JUnitCase], *, name: str = "sipload",
                  empty_suite: str | None = "thresholds") -> ET.Element:
    """The ``<testsuites>`` element for ``cases``, grouped into suites by classname.

    Args:
        cases: the cases, in order.
        name: the ``<testsuites>`` name.
        empty_suite: with no case at all, one empty suite of this name (None: none).
    """
    root = ET.Element("testsuites", name=name)
    suites: dict[str, list[JUnitCase]] = {}
    for case in cases:
        suites.setdefault(case.classname, []).append(case)
    if not suites and empty_suite is not None:
        suites[empty_suite] = []
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    time_total = 0.0
    for classname, group in suites.items():
        counts = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
        counts["tests"] = len(group)
        suite = ET.SubElement(root, "testsuite", name=classname)
        for c in group:
            tc = ET.SubElement(suite, "testcase", classname=c.classname, name=clean(c.name),
                               time=f"{c.time:.3f}")
            if c.properties:
                props = ET.SubElement(tc, "properties")
                for key, value in c.properties:
                    ET.SubElement(props, "property", name=key, value=clean(value))
            kind = c.kind
            message = clean(c.failure or "")
            if kind in ("failure", "error"):
                counts["failures" if kind == "failure" else "errors"] += 1
                el = ET.SubElement(tc, kind, message=message,
                                   type=c.classname if c.outcome == "" else kind)
                el.text = clean(c.detail or c.failure or "")
            elif kind == "skipped":
                counts["skipped"] += 1
                ET.SubElement(tc, "skipped", message=message)
            elif c.detail:
                ET.SubElement(tc, "system-out").text = clean(c.detail)
        suite_time = sum(c.time for c in group)
        time_total += suite_time
        suite.set("tests", str(counts["tests"]))
        suite.set("failures", str(counts["failures"]))
        suite.set("errors", str(counts["errors"]))
        suite.set("skipped", str(counts["skipped"]))
        suite.set("time", f"{suite_time:.3f}")
        for key, count in counts.items():
            totals[key] += count
    for key, count in totals.items():
        root.set(key, str(count))
    root.set("time", f"{time_total:.3f}")
    ET.indent(root)
    return root


def junit_xml(cases: Iterable[JUnitCase], *, name: str = "sipload",
              empty_suite: str | None = "thresholds") -> bytes:
    """The JUnit XML document for ``cases`` (see :func:`junit_element`)."""
    root = junit_element(cases, name=name, empty_suite=empty_suite)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def write_junit(path: Path | str, summary: Mapping[str, Any],
                cases: Iterable[JUnitCase] = ()) -> Path:
    """Write ``junit.xml`` into the run directory.

    Args:
        path: the run directory.
        summary: the run's summary; each of its thresholds becomes a test case.
        cases: more cases, each in the suite of its classname.

    Returns:
        The path of the file written.
    """
    out = Path(path) / JUNIT
    out.write_bytes(junit_xml([*threshold_cases(summary), *cases]))
    return out


def write_cases(path: Path | str, cases: Iterable[JUnitCase], *, name: str) -> Path:
    """Write ``cases`` alone (no thresholds) as the JUnit file ``path``; returns it."""
    out = Path(path)
    out.write_bytes(junit_xml(cases, name=name, empty_suite=None))
    return out
