"""``report.html``: one self-contained page per run.

Everything is inline: CSS in a ``<style>`` element, charts as PNG data URIs,
ladders as inline SVG; the page fetches nothing (no ``http(s)://`` ``src`` or
``href``) and runs no script.  Templates are Jinja2 with autoescape on, so every
string from the wire or the run files (labels, details, call-ids, the command,
the scenario text) is escaped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import (
    BytecodeCache,
    Environment,
    FileSystemBytecodeCache,
    PackageLoader,
    StrictUndefined,
)
from jinja2.bccache import Bucket

from sipload.report.analysis import analyse_path
from sipload.report.charts import all_charts, media_charts
from sipload.report.ladder import ladders
from sipload.report.summary import build_summary, read_summary
from sipload.stats.msround import fmt_ms

REPORT = "report.html"

HEADLINE_MARKS = ("answer", "pdd", "call")


class _QuietCache(FileSystemBytecodeCache):
    """Jinja2's cache of compiled templates in its per-user temporary directory (mode
    0700, checked), which never fails a report: an unreadable or unwritable entry only
    means compiling the template again.  Compiling report.html.j2 costs every run ~50 ms
    of CPU; an entry is keyed by the template's name and checked against its source."""

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # a truncated or foreign file: marshal raises its own kinds
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def _bytecode_cache() -> BytecodeCache | None:
    try:
        return _QuietCache()
    except (OSError, RuntimeError):  # no safe per-user directory: compile each time
        return None


def environment() -> Environment:
    """The Jinja2 environment of the report templates (autoescape on)."""
    env = Environment(loader=PackageLoader("sipload.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      bytecode_cache=_bytecode_cache())
    env.filters["ms"] = _ms
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    return env


def _ms(value: Any) -> str:
    return "–" if value is None else fmt_ms(float(value), grouped=True)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{float(value) * 100:.3f}%"


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{float(value):,.{digits}f}"


def _plan_rows(plan: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(key, value, is a default) for each plan entry: what the user set first, then
    the values the run took by default (the plan's ``defaults`` names them)."""
    raw = plan.get("defaults")
    defaults = {str(k) for k in raw} if isinstance(raw, list) else set()
    rows: list[tuple[str, str, bool]] = []
    for key, value in plan.items():
        if key == "defaults":
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        rows.append((str(key), text, key in defaults))
    rows.sort(key=lambda r: r[2])  # stable: the plan's order within each group
    return rows


def _media_shown(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The summary's media object when media flowed (a stream sent or received)."""
    m = summary.get("media")
    if not isinstance(m, dict) or not (m.get("sent") or m.get("received")):
        return None
    return m


def render_report(path: Path | str, summary: dict[str, Any] | None = None) -> str:
    """The report page of a run directory as a string (see :func:`write_report`)."""
    a = analyse_path(path)
    if summary is None:
        summary = read_summary(path) or build_summary(path)
    headline = [(m, summary["latency"][m]) for m in HEADLINE_MARKS if m in summary["latency"]]
    if not headline:
        headline = list(summary["latency"].items())[:2]
    page: str = environment().get_template("report.html.j2").render(
        s=summary, headline=headline, charts=all_charts(a, summary["rate"]["target"]),
        ladders=ladders(a.samples), media=_media_shown(summary), media_charts=media_charts(a.media),
        worst=a.media.worst, plan_rows=_plan_rows(a.files.plan),
        scenario_text=a.files.scenario_text, events=a.files.events[:200],
        events_more=max(0, len(a.files.events) - 200))
    return page


def write_report(path: Path | str, summary: dict[str, Any] | None = None) -> Path:
    """Write ``report.html`` into the run directory.

    Args:
        path: the run directory.
        summary: the run's summary; by default ``summary.json`` (built when missing).

    Returns:
        The path of the report.

    Raises:
        RunDirError: ``path`` is not a run directory.
    """
    out = Path(path) / REPORT
    tmp = out.with_name(REPORT + ".tmp")
    tmp.write_text(render_report(path, summary), encoding="utf-8")
    tmp.replace(out)
    return out
