"""``junit.xml`` for a conformance run: one ``<testcase>`` per case.

``classname`` is the pack, ``name`` the case ID followed by its RFC section
(``UAS-INV-004 [RFC 3261 §13.3.1.4]``), and ``<properties>`` carry the RFC, the
section, the purpose and the verdict, for tools that read them.  Verdicts map
to JUnit as CI servers expect: ``fail`` → ``<failure>``, ``error`` →
``<error>``, ``not_applicable`` and ``inconclusive`` → ``<skipped>`` (with the
reason, so neither reads as a pass), ``warn`` → a passed case whose
``<system-out>`` starts with ``WARNING`` and the SHOULD not followed.  A
failure's message ends with the MUST broken, quoted (``MUST (RFC 3261 §8.2.1):
"..."``).  Built with ElementTree, which escapes
every attribute and text taken from the wire.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from sipload.conformance.model import PACKS, CaseResult, Verdict

JUNIT = "junit.xml"
_LADDER_LIMIT = 20_000


def _ladder_text(result: CaseResult) -> str:
    lines = [f"{e.t:9.3f}s {'->' if e.direction == 'out' else '<-'} {e.peer}  {e.first_line}"
             for e in result.ladder]
    text = "\n".join(lines)
    return text if len(text) <= _LADDER_LIMIT else text[:_LADDER_LIMIT] + "\n..."


def _clean(text: str) -> str:
    """Text with the characters XML 1.0 cannot carry replaced (wire bytes may hold NUL)."""
    return "".join(c if c in "\t\n\r" or 0x20 <= ord(c) < 0xD800 or 0xE000 <= ord(c) < 0xFFFE
                   else "\ufffd" for c in text)


def build_junit(results: Sequence[CaseResult], suite_name: str = "sipload-conformance"
                ) -> ET.Element:
    """The ``<testsuites>`` element: one suite per pack that has cases."""
    root = ET.Element("testsuites", name=suite_name)
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    time_total = 0.0
    for pack in PACKS:
        mine = [r for r in results if r.case.pack == pack]
        if not mine:
            continue
        suite = ET.SubElement(root, "testsuite", name=pack)
        n = {"tests": len(mine), "failures": 0, "errors": 0, "skipped": 0}
        for r in mine:
            c = r.case
            tc = ET.SubElement(suite, "testcase", classname=pack,
                               name=f"{c.id} [{c.reference}]", time=f"{r.duration:.3f}")
            props = ET.SubElement(tc, "properties")
            for key, value in (("rfc", c.rfc), ("section", c.section),
                               ("purpose", c.purpose), ("verdict", r.verdict.value),
                               ("level", r.level), ("rule", str(r.rule or ""))):
                ET.SubElement(props, "property", name=key, value=_clean(value))
            reason = _clean(r.reason if r.rule is None else f"{r.reason} — {r.rule}")
            if r.verdict == Verdict.FAIL:
                n["failures"] += 1
                el = ET.SubElement(tc, "failure", message=reason, type="fail")
                el.text = _clean(_ladder_text(r))
            elif r.verdict == Verdict.ERROR:
                n["errors"] += 1
                el = ET.SubElement(tc, "error", message=reason, type="error")
                el.text = _clean(_ladder_text(r))
            elif r.verdict in (Verdict.NOT_APPLICABLE, Verdict.INCONCLUSIVE):
                n["skipped"] += 1
                ET.SubElement(tc, "skipped", message=f"{r.verdict.value}: {reason}")
            else:
                out = ET.SubElement(tc, "system-out")
                warning = "WARNING: " if r.verdict == Verdict.WARN else ""
                out.text = _clean(f"{warning}{reason}\n{_ladder_text(r)}")
            time_total += r.duration
        suite.set("time", f"{sum(r.duration for r in mine):.3f}")
        for key, count in n.items():
            suite.set(key, str(count))
            total[key] += count
    for key, count in total.items():
        root.set(key, str(count))
    root.set("time", f"{time_total:.3f}")
    return root


def write_junit(path: str | Path, results: Sequence[CaseResult]) -> Path:
    """Write ``junit.xml``; returns its path."""
    out = Path(path)
    tree = ET.ElementTree(build_junit(results))
    ET.indent(tree)
    tree.write(out, encoding="utf-8", xml_declaration=True)
    return out
