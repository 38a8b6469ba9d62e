"""A run's media: the summary's ``media`` object, media over time, the worst calls.

Theory of operation
-------------------
1. Every figure of the ``media`` summary object comes from the calls' records
   (the ``media_*`` columns of ``calls.arrows``; one stream per call, the first
   leg with media): sums for the packet counts, and percentiles over the calls
   for jitter, MOS, R, the far end's loss and jitter and the round-trip time.
   Percentiles are numpy's default (linear interpolation between the closest
   ranks), so ``numpy.percentile`` over the same ``load_run`` columns gives the
   same numbers (values in milliseconds are then rounded to the microsecond, as
   every time sipload shows: :mod:`sipload.stats.msround`).
2. Which calls count for what:

   * a *stream* is a call whose record has media figures (``media_sent`` not null);
   * ``jitter_ms`` (the RFC 3550 A.8 estimate at the call's end, per call) and
     ``loss_rate`` count streams that expected at least one packet;
     ``loss_rate`` = the sum of ``lost`` / the sum of ``expected`` (packets,
     not an average of the calls' rates);
   * ``mos`` and ``r_factor`` count calls with a known MOS (>= 1: something was
     expected);
   * ``remote`` counts calls that got an RTCP report about our stream
     (``media_remote_lost`` >= 0); ``rtt_ms`` calls that could compute one.

   * ``srtp`` counts the streams protected with SRTP (``media_srtp`` is the suite's
     tag length, 80 or 32; 0 for plain RTP), by suite, and sums the SRTP/SRTCP
     packets refused for failed authentication or as replays.

   ``stray`` is the exception: datagrams that belonged to no call (an unknown SSRC
   from an address no call's SDP named) have no record, so the workers count them
   in their interval snapshots and the summary adds those up.
3. Over time (the report's charts) comes from the interval snapshots' ``media``
   maps (:mod:`sipload.stats.mediaintervals`): packets sent, received and lost
   per second from the workers' running totals (every stream), and jitter and
   MOS percentiles per second from the merged histograms of the calls that ended
   in that second.
4. A run where no call carried media has ``media: null`` in its summary and no
   media section in its report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from sipload.report.columns import Columns, numbers
from sipload.stats.mediaintervals import COUNTERS, MediaHistograms
from sipload.stats.msround import ms

WORST_CALLS = 10
"""How many of the worst calls the report lists."""

Floats = npt.NDArray[np.float64]

SUMS = ("sent", "received", "expected", "lost", "duplicates", "out_of_order", "malformed",
        "foreign", "ssrc_changes", "pt_changes", "events")
"""Per-call counts the summary adds up."""

SRTP_SUITES = (("AES_CM_128_HMAC_SHA1_80", 80), ("AES_CM_128_HMAC_SHA1_32", 32))
"""The SRTP suites, by the tag length ``media_srtp`` records."""

WORST_COLUMNS = ("mos", "loss_rate", "lost", "expected", "received", "sent", "jitter_ms",
                 "max_jitter_ms", "longest_gap_ms", "remote_fraction_lost",
                 "remote_jitter_ms", "rtt_ms")


@dataclass
class MediaAnalysis:
    """Everything the summary and the report say about a run's media."""

    summary: dict[str, Any] | None = None  #: the summary's ``media`` object (None: no media)
    mos: Floats = field(default_factory=lambda: np.zeros(0))  #: every known per-call MOS
    per_second: Columns = field(default_factory=Columns)
    #: second, streams (running at the second's last snapshot), sent, received, expected,
    #: lost, loss_rate, jitter_p50, jitter_p95, mos_p50, mos_p5 (the last four from the
    #: histograms of the calls that ended that second)
    worst: list[dict[str, Any]] = field(default_factory=list)
    #: the worst calls: call_number, worker, call_id, result, failure and WORST_COLUMNS


def _column(calls: pa.Table, name: str) -> Floats:
    col = f"media_{name}"
    if col not in calls.column_names or len(calls) == 0:
        return np.full(len(calls), np.nan)
    return numbers(calls.column(col)).astype(np.float64)


def _pct(values: Floats, p: float) -> float | None:
    return float(np.percentile(values, p)) if len(values) else None


def _spread(values: Floats, *, in_ms: bool = True) -> dict[str, float | None]:
    """p50, p95 and max; milliseconds rounded to the microsecond (stats.msround)."""
    out = {"p50": _pct(values, 50), "p95": _pct(values, 95),
           "max": float(values.max()) if len(values) else None}
    return {k: (ms(v) if in_ms and v is not None else v) for k, v in out.items()}


def _max_ms(values: Floats) -> float | None:
    return ms(float(values.max())) if len(values) else None


def media_summary(calls: pa.Table) -> tuple[dict[str, Any] | None, Floats]:
    """The summary's ``media`` object (see the module docstring) and the known MOS
    values; (None, empty) when no call carried media."""
    sent = _column(calls, "sent")
    has = ~np.isnan(sent)
    if not has.any():
        return None, np.zeros(0)
    col = {name: _column(calls, name)[has] for name in (
        *SUMS, "jitter_ms", "max_jitter_ms", "longest_gap_ms", "mos", "r_factor",
        "remote_lost", "remote_fraction_lost", "remote_jitter_ms", "rtt_ms")}
    out: dict[str, Any] = {"streams": int(has.sum())}
    for name in SUMS:
        out[name] = int(np.nansum(col[name]))
    out["loss_rate"] = out["lost"] / out["expected"] if out["expected"] else None
    receiving = col["expected"] > 0
    out["receiving"] = int(receiving.sum())
    out["jitter_ms"] = _spread(col["jitter_ms"][receiving])
    out["max_jitter_ms"] = _max_ms(col["max_jitter_ms"][receiving])
    out["longest_gap_ms"] = _max_ms(col["longest_gap_ms"][receiving])
    known = col["mos"] >= 1.0
    mos = col["mos"][known]
    r = col["r_factor"][known]
    out["mos"] = {"count": int(known.sum()), "min": float(mos.min()) if len(mos) else None,
                  "p5": _pct(mos, 5), "p50": _pct(mos, 50),
                  "mean": float(mos.mean()) if len(mos) else None}
    out["r_factor"] = {"min": float(r.min()) if len(r) else None, "p50": _pct(r, 50)}
    reported = col["remote_lost"] >= 0
    fraction = col["remote_fraction_lost"][reported & (col["remote_fraction_lost"] >= 0)]
    rjitter = col["remote_jitter_ms"][reported & (col["remote_jitter_ms"] >= 0)]
    rtt = col["rtt_ms"][col["rtt_ms"] >= 0]
    out["remote"] = {"streams": int(reported.sum()),
                     "lost": int(col["remote_lost"][reported].sum()),
                     "fraction_lost": _spread(fraction, in_ms=False), "jitter_ms": _spread(rjitter)}
    out["rtt_ms"] = _spread(rtt)
    bits = _column(calls, "srtp")[has]
    out["srtp"] = {
        "streams": int((bits > 0).sum()),
        "suites": {name: int((bits == tag).sum()) for name, tag in SRTP_SUITES},
        "auth_failures": int(np.nansum(_column(calls, "srtp_auth_failures")[has])),
        "replay_failures": int(np.nansum(_column(calls, "srtp_replay_failures")[has])),
    }
    return out, mos


def _worst(calls: pa.Table, limit: int = WORST_CALLS) -> list[dict[str, Any]]:
    """The calls with media, worst first: lowest MOS (unknown counts as 0), then the
    highest loss rate, then the highest jitter."""
    sent = _column(calls, "sent")
    idx = np.flatnonzero(~np.isnan(sent))
    if not len(idx):
        return []
    mos = _column(calls, "mos")[idx]
    mos = np.where(mos >= 1.0, mos, 0.0)
    loss = np.nan_to_num(_column(calls, "loss_rate")[idx])
    jitter = np.nan_to_num(_column(calls, "jitter_ms")[idx])
    order = np.lexsort((-jitter, -loss, mos))[:limit]
    chosen = [int(i) for i in idx[order]]
    names = ["call_number", "worker", "call_id", "result", "failure",
             *(f"media_{c}" for c in WORST_COLUMNS)]
    rows = calls.select([n for n in names if n in calls.column_names]).take(
        pa.array(chosen, pa.int64())).to_pylist()
    return [{(k[6:] if k.startswith("media_") else k): v for k, v in r.items()} for r in rows]


def media_per_second(intervals: list[dict[str, Any]], seconds: list[int]) -> Columns:
    """Media per whole second over all workers (see MediaAnalysis.per_second); no
    columns when no snapshot has media."""
    rows: dict[int, dict[str, Any]] = {}
    hists: dict[int, MediaHistograms] = {}
    running: dict[tuple[int, Any], int] = {}
    for snap, sec in zip(intervals, seconds, strict=True):
        m = snap.get("media")
        if not isinstance(m, dict):
            continue
        row = rows.setdefault(sec, {"second": sec, "streams": 0,
                                    **{c: 0 for c in COUNTERS}})
        for c in COUNTERS:
            v = m.get(c)
            if isinstance(v, int) and not isinstance(v, bool):
                row[c] += v
        v = m.get("streams")
        if isinstance(v, int) and not isinstance(v, bool):
            running[(sec, snap.get("worker"))] = v  # a worker's last word in that second
        h = m.get("histograms")
        if isinstance(h, dict) and h:
            try:
                decoded = MediaHistograms.decode(h)
            except Exception:  # a corrupt snapshot must not stop the report
                continue
            mine = hists.get(sec)
            if mine is None:
                hists[sec] = decoded
            else:
                mine.merge(decoded)
    if not rows:
        return Columns()
    for (sec, _), n in running.items():
        rows[sec]["streams"] += n
    out = []
    for sec in sorted(rows):
        row = rows[sec]
        row["loss_rate"] = row["lost"] / row["expected"] if row["expected"] > 0 else np.nan
        h = hists.get(sec)
        for key, value in (("jitter_p50", h.jitter_ms(50) if h else None),
                           ("jitter_p95", h.jitter_ms(95) if h else None),
                           ("mos_p50", h.mos_at(50) if h else None),
                           ("mos_p5", h.mos_at(5) if h else None)):
            row[key] = np.nan if value is None else value
        out.append(row)
    return Columns({name: np.array([row[name] for row in out]) for name in out[0]})


def stray_packets(intervals: list[dict[str, Any]]) -> int:
    """Datagrams the workers' RTP/RTCP ports got that belonged to no call (the
    snapshots' ``media.stray``, summed)."""
    total = 0
    for snap in intervals:
        m = snap.get("media")
        v = m.get("stray") if isinstance(m, dict) else None
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            total += v
    return total


def analyse_media(calls: pa.Table, intervals: list[dict[str, Any]],
                  seconds: list[int]) -> MediaAnalysis:
    """The media of a run (see the module docstring).

    Args:
        calls: the calls table (CALL_SCHEMA).
        intervals: the snapshots, in file order.
        seconds: for each snapshot, the whole second it belongs to.
    """
    summary, mos = media_summary(calls)
    if summary is None:
        return MediaAnalysis()
    summary["stray"] = stray_packets(intervals)
    return MediaAnalysis(summary=summary, mos=mos,
                         per_second=media_per_second(intervals, seconds), worst=_worst(calls))


def media_line(summary: dict[str, Any]) -> str:
    """One line of the summary's media figures ("" when no call carried media)."""
    m = summary.get("media")
    if not isinstance(m, dict):
        return ""
    loss = "-" if m.get("loss_rate") is None else f"{m['loss_rate']:.3%}"
    jitter = m.get("jitter_ms", {}).get("p95")
    mos = m.get("mos", {})
    return (f"media: {m['streams']} streams, RTP sent {m['sent']} received {m['received']} "
            f"lost {m['lost']} ({loss}), jitter p95 "
            + ("-" if jitter is None else f"{jitter:.3f} ms")
            + ", MOS " + ("-" if mos.get("p5") is None else
                          f"p5 {mos['p5']:.2f} p50 {mos['p50']:.2f} min {mos['min']:.2f}")
            + _srtp_words(m.get("srtp")))


def _srtp_words(srtp: Any) -> str:
    """", SRTP n streams, a auth failures, r replays" (only when there is SRTP to tell)."""
    if not isinstance(srtp, dict) or not (srtp.get("streams") or srtp.get("auth_failures")
                                          or srtp.get("replay_failures")):
        return ""
    return (f", SRTP {srtp.get('streams', 0)} streams, {srtp.get('auth_failures', 0)} "
            f"auth failures, {srtp.get('replay_failures', 0)} replays")
