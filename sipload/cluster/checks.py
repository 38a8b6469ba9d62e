"""What a worker's record or snapshot must hold before the coordinator believes it.

:mod:`sipload.cluster.messages` checks the shape of a message (its fields and
their types); these functions check what is inside a snapshot, whose contents are free-form maps
on the wire (a record batch's records are checked by
:func:`sipload.stats.recordrows.check_record`, compiled: the coordinator checks one
per call).  Each returns None when the value
fits, or one line saying what does not: the coordinator then drops it, logs it
and counts it (see :meth:`Coordinator.admit`), and the run goes on.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from hdrh.histogram import HdrHistogram

from sipload.stats.histograms import MarkHistograms
from sipload.stats.mediaintervals import COUNTERS, MediaHistograms
from sipload.stats.recordrows import MAX_ITEMS, is_count, is_number, is_text

_SNAPSHOT_COUNTS = ("started", "succeeded", "failed", "active", "late", "dropped",
                    "retransmissions")
_SNAPSHOT_NUMBERS = ("t", "loop_lag_ms", "cpu", "target_rate")


def check_snapshot(s: Any) -> str | None:
    """None when ``s`` is a well-typed interval snapshot (``engine.Snapshot.to_dict``)."""
    if not isinstance(s, Mapping):
        return "a snapshot is a map"
    for key in _SNAPSHOT_COUNTS:
        if not is_count(s.get(key)):
            return f"snapshot {key}: bad value {str(s.get(key))[:40]!r}"
    for key in _SNAPSHOT_NUMBERS:
        if not is_number(s.get(key)):
            return f"snapshot {key}: bad value {str(s.get(key))[:40]!r}"
    for key in ("failures", "codes"):
        m = s.get(key)
        if not isinstance(m, Mapping) or len(m) > MAX_ITEMS or not all(
                is_text(k) and is_count(v) for k, v in m.items()):
            return f"snapshot {key}: not a map of text to counts"
    hist = s.get("histograms")
    if not isinstance(hist, Mapping) or len(hist) > MAX_ITEMS:
        return "snapshot histograms: not a map"
    for k, v in hist.items():
        if not is_text(k) or not isinstance(v, str):
            return "snapshot histograms: not a map of text to text"
    try:
        MarkHistograms.decode(dict(hist))
    except Exception:  # base64, zlib, HdrHistogram: each raises its own kind for garbage
        return "snapshot histograms: not HdrHistogram encodings"
    rss = s.get("rss_mib")
    if rss is not None and (not is_number(rss) or rss < 0):
        return f"snapshot rss_mib: bad value {str(rss)[:40]!r}"
    return (_check_media(s.get("media")) or _check_connections(s.get("connections"))
            or _check_traces(s.get("traces")))


def _check_traces(t: Any) -> str | None:
    """None when a snapshot's optional ``traces`` map fits (held and packed counts)."""
    if t is None:
        return None
    if not isinstance(t, Mapping) or set(t) != {"held", "packed"} or not all(
            is_count(v) for v in t.values()):
        return "snapshot traces: not a map of held and packed counts"
    return None


def _check_connections(c: Any) -> str | None:
    """None when a snapshot's optional ``connections`` map fits (stats.connintervals)."""
    if c is None:
        return None
    if not isinstance(c, Mapping):
        return "snapshot connections: not a map"
    for key in ("opened", "handshakes", "offered", "resumed"):
        if not is_count(c.get(key, 0)):
            return f"snapshot connections {key}: bad value {str(c.get(key))[:40]!r}"
    f = c.get("failures")
    if not isinstance(f, Mapping) or len(f) > MAX_ITEMS or not all(
            is_text(k) and is_count(v) for k, v in f.items()):
        return "snapshot connections failures: not a map of text to counts"
    h = c.get("histogram")
    if h is not None:
        try:
            HdrHistogram.decode(base64.b64decode(h))
        except Exception:  # base64, zlib, HdrHistogram: each raises its own kind
            return "snapshot connections histogram: not an HdrHistogram encoding"
    return None


def _check_media(m: Any) -> str | None:
    """None when a snapshot's optional ``media`` map fits (stats.mediaintervals)."""
    if m is None:
        return None
    if not isinstance(m, Mapping):
        return "snapshot media: not a map"
    for key in ("streams", "calls"):
        if not is_count(m.get(key)):
            return f"snapshot media {key}: bad value {str(m.get(key))[:40]!r}"
    for key in COUNTERS:  # differences of running totals: may be negative
        v = m.get(key)
        if not isinstance(v, int) or isinstance(v, bool):
            return f"snapshot media {key}: bad value {str(v)[:40]!r}"
    hist = m.get("histograms")
    if not isinstance(hist, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in hist.items()):
        return "snapshot media histograms: not a map of text to text"
    try:
        MediaHistograms.decode(dict(hist))
    except Exception:  # base64, zlib, HdrHistogram: each raises its own kind for garbage
        return "snapshot media histograms: not HdrHistogram encodings"
    return _check_media_send(m.get("send"))


def _check_media_send(send: Any) -> str | None:
    """None when the optional ``media.send`` map fits (mediapump.take_send_figures)."""
    if send is None:
        return None
    if not isinstance(send, Mapping):
        return "snapshot media send: not a map"
    for key in ("sent", "unsent", "skipped"):
        if not is_count(send.get(key)):
            return f"snapshot media send {key}: bad value {str(send.get(key))[:40]!r}"
    late = send.get("late_us")
    if late is None:
        return None
    try:
        if not isinstance(late, str):
            raise TypeError
        HdrHistogram.decode(base64.b64decode(late))
    except Exception:  # base64, zlib, HdrHistogram: each raises its own kind for garbage
        return "snapshot media send late_us: not an HdrHistogram encoding"
    return None
