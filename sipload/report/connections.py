"""TCP/TLS connections of a run: the ``connections`` section of summary.json and its line.

The figures are the interval snapshots' ``connections`` maps added up
(:mod:`sipload.stats.connintervals`): client connections opened, TLS handshakes
completed and resumed, handshake time percentiles (stamped at the socket), TLS failures
by reason.  The mode (``--connections``), whether resumption was offered and whether
certificates were verified come from the plan.  None for a run with no stream transport.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sipload.stats.connintervals import ConnectionTotals


def connections_summary(intervals: Iterable[Mapping[str, Any]],
                        plan: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``connections`` section (see summary.schema.json), or None without TCP/TLS."""
    totals = ConnectionTotals()
    for snap in intervals:
        c = snap.get("connections")
        if isinstance(c, Mapping):
            totals.add(c)
    transport = str(plan.get("transport") or "")
    if not totals.seen and transport not in ("tcp", "tls", "ws", "wss"):
        return None
    secure = transport in ("tls", "wss")
    failures = dict(sorted(totals.failures.items()))
    out: dict[str, Any] = {
        "transport": transport,
        "mode": str(plan.get("connections") or "shared"),
        "opened": totals.opened,
        "tls": None,
    }
    if secure:
        out["tls"] = {
            "verified": not bool(plan.get("tls_insecure")),
            "resumption": str(plan.get("tls_resumption") or "on"),
            "handshakes": totals.handshakes,
            "offered": totals.offered,
            "resumed": totals.resumed,
            "resumed_rate": (totals.resumed / totals.handshakes) if totals.handshakes
            else None,
            "handshake_ms": totals.handshake_ms(),
            "failures": {"count": sum(failures.values()), "by_reason": failures},
        }
    return out


def connections_line(summary: Mapping[str, Any]) -> str:
    """One line for ``sipload run``/``report``: connections, TLS handshakes and failures."""
    c = summary.get("connections")
    if not isinstance(c, Mapping):
        return ""
    text = f"connections: {c.get('mode')} {c.get('transport')}, opened {c.get('opened')}"
    tls = c.get("tls")
    if isinstance(tls, Mapping):
        text += (f"; tls handshakes {tls.get('handshakes')}, resumed {tls.get('resumed')} of "
                 f"{tls.get('offered')} offered")
        hs = tls.get("handshake_ms")
        if isinstance(hs, Mapping):
            text += f" (p50 {hs.get('p50')} ms, p99 {hs.get('p99')} ms)"
        failures = tls.get("failures") or {}
        if failures.get("count"):
            reasons = ", ".join(f"{k} {v}" for k, v in (failures.get("by_reason") or {}).items())
            text += f"; tls failures {failures['count']} ({reasons})"
        if not tls.get("verified", True):
            text += "; WARNING: certificates not verified (--tls-insecure)"
    return text


def detail_lines(summary: dict[str, Any]) -> list[str]:
    """The lines ``sipload run`` and ``sipload report`` print under the call counts: the
    media figures and the connections, each only when the run had any."""
    from sipload.report.media import media_line

    return [line for line in (media_line(summary), connections_line(summary)) if line]
