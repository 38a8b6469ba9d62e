"""The evidence of a conformance run: ``conformance.json``, ``junit.xml``, ``conformance.html``.

``conformance.json`` holds the run (tool version, target, transport, profile,
start time, duration, verdict counts) and one object per case: id, rfc,
section, purpose, pack, verdict, reason, duration and the ladder (every message
with its time, direction, peer, first line and full text).  The HTML report is
made from that file alone (:mod:`sipload.report.conformance_html`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sipload import __version__
from sipload.conformance.junit import JUNIT, write_junit
from sipload.conformance.model import CaseResult
from sipload.conformance.profile import Profile, profile_summary
from sipload.conformance.runner import counts

JSON_NAME = "conformance.json"


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
    junit = write_junit(out / JUNIT, results)
    html = write_conformance_html(out)
    return [js, junit, html]
