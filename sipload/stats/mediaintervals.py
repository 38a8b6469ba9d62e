"""One worker's media per interval: packet counters and histograms of jitter and MOS.

Each interval snapshot of a worker whose calls carry RTP holds a ``media`` map
(see :meth:`MediaIntervals.snapshot`):

* ``streams``: the RTP streams running when the snapshot was taken;
* ``calls``: the calls with media whose record was made in the interval;
* ``sent``, ``received``, ``expected``, ``lost``: packets over the interval, the
  difference of the worker's running totals (every stream, stopped and running:
  the shell passes them in), so the intervals of a run add up to its totals.
  ``lost`` may be negative in an interval where late packets filled an earlier
  gap (RFC 3550 A.3 counts loss as expected minus received);
* ``stray``: datagrams that arrived on the worker's RTP/RTCP ports in the interval and
  belonged to no call (an unknown SSRC from an address no call's SDP named): dropped,
  counted here since no call's record can hold them;
* ``histograms``: ``jitter_ms`` and ``mos`` of the calls ended in the interval,
  as HdrHistograms (base64 of the compressed encoding, as the latency ones).

Why HdrHistogram again: the histograms of all workers and seconds merge by
addition (see :mod:`sipload.stats.histograms`).  Jitter is recorded in
microseconds (1 µs to 1 h, 3 significant digits); MOS in hundredths (100 to 500),
exact at that resolution, which is finer than the E-model's meaning.  A call
whose MOS is not known (no packet expected) has no MOS entry.

Sans-IO: the shell hands in per-call figures and totals; nothing here reads a clock.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from hdrh.histogram import HdrHistogram

from sipload.stats.histograms import (
    HIGHEST_US,
    LOWEST_US,
    encode_histogram,
    new_histogram,
    reset_histogram,
)

MOS_SCALE = 100
"""MOS is recorded in hundredths."""
MOS_LOWEST = 1
MOS_HIGHEST = 500

COUNTERS = ("sent", "received", "expected", "lost")
"""The packet counters of a snapshot's ``media`` map, in this order in a totals tuple."""

HISTOGRAMS = ("jitter_ms", "mos")


def new_mos_histogram() -> HdrHistogram:
    return HdrHistogram(MOS_LOWEST, MOS_HIGHEST, 3)


def new_media_histogram(name: str) -> HdrHistogram:
    """An empty histogram with the layout of ``name`` (``jitter_ms`` or ``mos``)."""
    return new_mos_histogram() if name == "mos" else new_histogram()


class MediaHistograms:
    """Per-call jitter (µs) and MOS (hundredths) of some calls; merge by addition."""

    __slots__ = ("jitter", "mos")

    def __init__(self) -> None:
        self.jitter = new_histogram()
        self.mos = new_mos_histogram()

    def record(self, figures: Mapping[str, float]) -> None:
        """Add one call's media figures (``sipload.media.call.FIELDS``)."""
        jitter = figures.get("jitter_ms", -1.0)
        if figures.get("expected", 0.0) > 0 and jitter >= 0:
            us = round(jitter * 1000.0)
            self.jitter.record_value(min(max(us, LOWEST_US), HIGHEST_US))
        mos = figures.get("mos", -1.0)
        if mos >= 1.0:
            self.mos.record_value(min(max(round(mos * MOS_SCALE), MOS_LOWEST),
                                      MOS_HIGHEST))

    def reset(self) -> None:
        """Empty both, kept for the next interval (see :func:`reset_histogram`)."""
        for h in (self.jitter, self.mos):
            if h.get_total_count():
                reset_histogram(h)

    def merge(self, other: MediaHistograms) -> None:
        self.jitter.add(other.jitter)
        self.mos.add(other.mos)

    def encode(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, h in (("jitter_ms", self.jitter), ("mos", self.mos)):
            if h.get_total_count():
                out[name] = encode_histogram(h)
        return out

    @staticmethod
    def decode(data: Mapping[str, str]) -> MediaHistograms:
        """The histograms of a snapshot's ``media.histograms`` map.

        Raises:
            ValueError and the errors of base64/zlib/hdrh on garbage (the
            coordinator's checks catch them).
        """
        out = MediaHistograms()
        for name, text in data.items():
            if name not in HISTOGRAMS:
                raise ValueError(f"unknown media histogram {name!r}")
            h = HdrHistogram.decode(base64.b64decode(text))
            (out.mos if name == "mos" else out.jitter).add(h)
        return out

    def jitter_ms(self, percentile: float) -> float | None:
        if not self.jitter.get_total_count():
            return None
        return float(self.jitter.get_value_at_percentile(percentile)) / 1000.0

    def mos_at(self, percentile: float) -> float | None:
        if not self.mos.get_total_count():
            return None
        return float(self.mos.get_value_at_percentile(percentile)) / MOS_SCALE


class MediaIntervals:
    """The ``media`` map of each snapshot of one worker (see the module docstring)."""

    __slots__ = ("_base", "_calls", "_hist", "_stray")

    def __init__(self) -> None:
        self._base: tuple[int, ...] = (0,) * len(COUNTERS)
        self._stray = 0
        self._calls = 0
        self._hist = MediaHistograms()

    def call(self, figures: Mapping[str, float]) -> None:
        """A call with media ended (its record is made)."""
        if not figures:
            return
        self._calls += 1
        self._hist.record(figures)

    def snapshot(self, totals: tuple[int, int, int, int], streams: int,
                 stray: int = 0) -> dict[str, Any]:
        """The interval's map; starts the next interval.

        Args:
            totals: the worker's running (sent, received, expected, lost) packets.
            streams: RTP streams running now.
            stray: the worker's running count of datagrams that belonged to no call.
        """
        out: dict[str, Any] = {"streams": streams, "calls": self._calls}
        for name, now, base in zip(COUNTERS, totals, self._base, strict=True):
            out[name] = int(now) - base
        out["stray"] = int(stray) - self._stray
        self._stray = int(stray)
        out["histograms"] = self._hist.encode()
        self._base = tuple(int(v) for v in totals)
        self._calls = 0
        self._hist.reset()
        return out
