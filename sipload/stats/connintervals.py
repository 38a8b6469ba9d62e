"""One worker's TCP/TLS connections per interval: opened, handshakes, failures (sans-IO).

Each interval snapshot of a worker that used a stream transport holds a
``connections`` map (see :func:`connection_snapshot`):

* ``opened``: client connections the worker opened in the interval (``--connections
  per-call`` opens one a call, ``shared`` one per worker and target);
* ``handshakes``: TLS client handshakes completed; ``offered``: of them, the ones that
  offered a session kept from an earlier connection; ``resumed``: the ones the server
  resumed (``session_reused``, read from the connection, not assumed);
* ``failures``: failed TLS connections by reason (``cert_verify_failed``,
  ``handshake_timeout``, ``connection_reset``, ``connection_refused``,
  ``connect_timeout``, ``connect_error``, ``handshake_error``);
* ``histogram``: the handshake times, an HdrHistogram in µs (base64 of the compressed
  encoding, as the latency ones: the histograms of every worker and interval merge by
  addition, see :mod:`sipload.stats.histograms`).

The shell stamps each handshake at the socket (``time.monotonic_ns()`` as it starts and
as it ends) and hands the durations in; nothing here reads a clock.

:func:`connection_snapshot` runs once a second in every worker (and embedded UAS) that
uses a stream transport, with the cyclic collector off (``transport.loop.tune_gc``): it
records into one histogram made once and emptied after each encoding, never a new one
(an HdrHistogram and its encoder reference each other, so each new one would stay,
~185 KiB a second, until a collection that does not come; see
:mod:`sipload.stats.histograms`).  An interval without handshakes (TCP) encodes nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from hdrh.histogram import HdrHistogram

from sipload.stats.histograms import (
    HIGHEST_US,
    LOWEST_US,
    PERCENTILES,
    encode_histogram,
    new_histogram,
    record_us,
    reset_histogram,
)
from sipload.stats.msround import ms

COUNTERS = ("opened", "handshakes", "offered", "resumed")

_SCRATCH = new_histogram()
"""The one histogram :func:`connection_snapshot` records an interval's handshakes into."""


def connection_snapshot(counts: Mapping[str, int], durations_us: Iterable[int],
                        failures: Mapping[str, int]) -> dict[str, Any]:
    """The ``connections`` map of one interval (see the module docstring).

    Args:
        counts: the :data:`COUNTERS` by name (a missing one is 0).
        durations_us: each handshake's time, µs.
        failures: failed TLS connections by reason.
    """
    out: dict[str, Any] = {k: int(counts.get(k, 0)) for k in COUNTERS}
    out["failures"] = dict(failures)
    h = _SCRATCH
    for us in durations_us:
        record_us(h, min(max(int(us), LOWEST_US), HIGHEST_US))
    if h.total_count:
        out["histogram"] = encode_histogram(h)
        reset_histogram(h)
    return out


class ConnectionTotals:
    """The ``connections`` maps of a run's snapshots, added up (what the summary shows)."""

    def __init__(self) -> None:
        self.seen = False
        self.opened = 0
        self.handshakes = 0
        self.offered = 0
        self.resumed = 0
        self.failures: dict[str, int] = {}
        self.histogram = new_histogram()

    def add(self, snap: Mapping[str, Any]) -> None:
        """Add one snapshot's map; a malformed one is skipped, never raised on."""
        try:
            counts = [int(snap.get(k, 0)) for k in COUNTERS]
            failures = {str(k): int(v) for k, v in dict(snap.get("failures") or {}).items()}
            text = snap.get("histogram")
            h = HdrHistogram.decode(base64.b64decode(text)) if isinstance(text, str) else None
        except (TypeError, ValueError, AttributeError):
            return
        self.seen = True
        self.opened += counts[0]
        self.handshakes += counts[1]
        self.offered += counts[2]
        self.resumed += counts[3]
        for k, v in failures.items():
            self.failures[k] = self.failures.get(k, 0) + v
        if h is not None:
            self.histogram.add(h)

    def handshake_ms(self) -> dict[str, float] | None:
        """Count, min, mean, p50 ... p99.9, max of the handshake times, ms; None if none."""
        h = self.histogram
        n = h.get_total_count()
        if not n:
            return None
        row: dict[str, float] = {"count": n, "min": ms(h.get_min_value() / 1000.0),
                                 "mean": ms(h.get_mean_value() / 1000.0)}
        for p in PERCENTILES:
            row[f"p{p:g}".replace(".", "_")] = ms(h.get_value_at_percentile(p) / 1000.0)
        row["max"] = ms(h.get_max_value() / 1000.0)
        return row
