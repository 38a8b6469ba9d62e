"""The evidence of a conformance run: ``conformance.json``, ``junit.xml``, ``conformance.html``.

``conformance.json`` holds the run (tool version, target, transport, profile,
start time, duration, verdict counts) and one object per case: id, rfc,
section, purpose, pack, verdict, reason, duration and the ladder (every message
with its time, direction, peer, first line and full text).  The HTML report is
made from that file alone (:mod:`sipload.report.conformance_html`).

``junit.xml`` is written by the one JUnit writer (:mod:`sipload.report.junit`): one
``<testcase>`` per case, ``classname`` the pack, ``name`` the case ID followed by its
RFC section (``UAS-INV-004 [RFC 3261 §13.3.1.4]``), and ``<properties>`` carrying the
RFC, the section, the purpose, the verdict, the level and the rule.  Verdicts map to
JUnit as CI servers expect: ``fail`` → ``<failure>``, ``error`` → ``<error>`` (both
with the ladder as text), ``not_applicable`` and ``inconclusive`` → ``<skipped>`` (with
the reason, so neither reads as a pass), ``warn`` → a passed case whose
``<system-out>`` starts with ``WARNING`` and the SHOULD not followed.  A failure's
message ends with the MUST broken, quoted (``MUST (RFC 3261 §8.2.1): "..."``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sipload import __version__
from sipload.conformance.model import PACKS, CaseResult, Verdict
from sipload.conformance.profile import Profile, profile_summary
from sipload.conformance.runner import counts
from sipload.report.junit import JUNIT, JUnitCase, write_cases

JSON_NAME = "conformance.json"
JUNIT_SUITES = "sipload-conformance"
_LADDER_LIMIT = 20_000
_OUTCOME = {Verdict.FAIL: "failure", Verdict.ERROR: "error",
            Verdict.NOT_APPLICABLE: "skipped", Verdict.INCONCLUSIVE: "skipped"}


def default_out_dir(base: str | Path = "reports") -> Path:
    return Path(base) / f"{time.strftime('%Y%m%d-%H%M%S')}-conformance"


def run_document(results: Sequence[CaseResult], profile: Profile, *, target: str,
                 transport: str, started: float, duration: float) -> dict[str, Any]:
    return {
        "tool": "sipload", "version": __version__, "kind": "conformance",
        "target": target, "transport": transport, "profile": profile_summary(profile),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration": round(duration, 3), "counts": counts(results),
        "cases": [r.to_dict() for r in results],
    }


def write_evidence(out_dir: str | Path, document: dict[str, Any],
                   results: Sequence[CaseResult]) -> list[Path]:
    """Write the three files into ``out_dir`` (made if needed); returns their paths."""
    from sipload.report.conformance_html import write_conformance_html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js = out / JSON_NAME
    js.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    junit = write_cases(out / JUNIT, junit_cases(results), name=JUNIT_SUITES)
    html = write_conformance_html(out)
    return [js, junit, html]


def _ladder_text(result: CaseResult) -> str:
    lines = [f"{e.t:9.3f}s {'->' if e.direction == 'out' else '<-'} {e.peer}  {e.first_line}"
             for e in result.ladder]
    text = "\n".join(lines)
    return text if len(text) <= _LADDER_LIMIT else text[:_LADDER_LIMIT] + "\n..."


def junit_cases(results: Sequence[CaseResult]) -> list[JUnitCase]:
    """One JUnit case per result, pack by pack in the catalogue's order (module docstring)."""
    out: list[JUnitCase] = []
    for pack in PACKS:
        for r in results:
            c = r.case
            if c.pack != pack:
                continue
            reason = r.reason if r.rule is None else f"{r.reason} — {r.rule}"
            outcome = _OUTCOME.get(r.verdict, "pass")
            if outcome == "skipped":
                message, detail = f"{r.verdict.value}: {reason}", ""
            elif outcome == "pass":
                warning = "WARNING: " if r.verdict == Verdict.WARN else ""
                message, detail = "", f"{warning}{reason}\n{_ladder_text(r)}"
            else:
                message, detail = reason, _ladder_text(r)
            props = (("rfc", c.rfc), ("section", c.section), ("purpose", c.purpose),
                     ("verdict", r.verdict.value), ("level", r.level),
                     ("rule", str(r.rule or "")))
            out.append(JUnitCase(pack, f"{c.id} [{c.reference}]",
                                 failure=message if outcome != "pass" else None,
                                 detail=detail, time=r.duration, outcome=outcome,
                                 properties=props))
    return out
