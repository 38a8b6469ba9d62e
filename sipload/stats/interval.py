"""A worker's run counters: totals, one interval's counts, the record batch (sans-IO).

:class:`IntervalAccountant` is fed what happened — a call started (its intended time
and ``now``), a call dropped at the concurrency cap, a call's record at its end — and,
when the shell asks for a snapshot, ``now`` plus the figures only the shell can read
(the process's CPU seconds and a monotonic stamp, the UA's retransmission total, calls
active, the loop's lag).  It reads no clock and opens no socket.

Rules
=====

1. Totals never reset: ``started = succeeded + failed + in_flight_at_stop + active``
   once every record is in (a dropped call is started and failed).
2. An interval's counts, failures and mark histograms start at zero after each
   :meth:`IntervalAccountant.snapshot`; retransmissions are the UA's total less the
   total at the previous snapshot.
3. Every mark a call reached counts, whatever the call's end (a call that failed at its
   BYE was still answered); the report says so.
4. A start more than :data:`LATE_AFTER` after its intended time counts as late.
5. A call's media figures go into the interval's jitter and MOS histograms
   (:class:`MediaIntervals`); the shell adds the packet totals at the snapshot.
6. CPU is a share of one core over the interval: CPU seconds spent / wall seconds
   passed, both as the shell measured them at this and the previous snapshot.
7. A snapshot may be taken in pieces: :meth:`IntervalAccountant.close` ends the interval
   at once (its counts, and its mark histograms set aside; the next interval records
   into a second set), and :meth:`IntervalAccountant.encode_piece` encodes one
   histogram of it a call (~0.1 ms each), so that the shell can fit them between call
   starts.  :meth:`IntervalAccountant.snapshot` does both in one go.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sipload.stats.histograms import MarkHistograms
from sipload.stats.mediaintervals import MediaIntervals
from sipload.stats.records import CallRecord, Failure, Result

LATE_AFTER = 0.010
"""A call that starts more than this after its intended time counts as late."""


@dataclass(slots=True)
class Snapshot:
    """One interval of one worker (see the run directory's intervals.jsonl)."""

    t: float
    worker: int
    started: int
    succeeded: int
    failed: int
    active: int
    late: int
    dropped: int
    retransmissions: int
    loop_lag_ms: float
    cpu: float
    target_rate: float
    histograms: dict[str, str]
    failures: dict[str, int]
    codes: dict[str, int]
    media: dict[str, Any] | None = None  #: stats.mediaintervals (workers with RTP only)
    connections: dict[str, Any] | None = None  #: stats.connintervals (TCP/TLS workers only)
    #: wire traces (workers with ``--trace`` failed or all): ``held``, calls whose trace is
    #: in memory at the interval's end; ``packed``, traces packed in the interval (rule 5
    #: of stats.traces: quiet 5 s)
    traces: dict[str, int] | None = None
    #: the worker process's resident set size when the interval closed, MiB (None where
    #: the system does not say): a worker's memory over a run, so growth shows
    rss_mib: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "t": round(self.t, 6), "worker": self.worker, "started": self.started,
            "succeeded": self.succeeded, "failed": self.failed, "active": self.active,
            "late": self.late, "dropped": self.dropped,
            "retransmissions": self.retransmissions, "loop_lag_ms": round(self.loop_lag_ms, 3),
            "cpu": round(self.cpu, 4), "target_rate": self.target_rate,
            "histograms": self.histograms, "failures": self.failures, "codes": self.codes,
        }
        if self.media is not None:
            out["media"] = self.media
        if self.connections is not None:
            out["connections"] = self.connections
        if self.traces is not None:
            out["traces"] = self.traces
        if self.rss_mib is not None:
            out["rss_mib"] = round(self.rss_mib, 1)
        return out


class IntervalAccountant:
    """Totals and the current interval of one worker (see the module docstring).

    Attributes:
        started, succeeded, failed, in_flight_at_stop, late, dropped: run totals.
        batch: the records (as dicts) finished since :meth:`take_batch`.
    """

    def __init__(self, worker: int, *, cpu: float = 0.0, wall: float = 0.0) -> None:
        self.worker = worker
        self.started = 0
        self.succeeded = 0
        self.failed = 0
        self.in_flight_at_stop = 0
        self.late = 0
        self.dropped = 0
        self.batch: list[dict[str, Any]] = []
        self._i_started = 0
        self._i_succeeded = 0
        self._i_failed = 0
        self._i_late = 0
        self._i_dropped = 0
        self._i_failures: dict[str, int] = {}
        self._retrans_base = 0
        self._hist = MarkHistograms()
        #: the closed interval's histograms while they are encoded (rule 7), else None
        self._closed: MarkHistograms | None = None
        #: emptied histograms the next interval records into (never made anew: a new
        #: HdrHistogram is a reference cycle, and workers run without the collector)
        self._spare: MarkHistograms | None = MarkHistograms()
        self._to_encode: list[str] = []  #: marks of ``_closed`` not yet encoded
        #: the interval's RTP: the shell adds the packet totals at each snapshot
        self.media = MediaIntervals()
        self._cpu_base = cpu
        self._wall_base = wall

    def begin(self, cpu: float, wall: float) -> None:
        """The CPU seconds and monotonic stamp the first interval is measured from."""
        self._cpu_base = cpu
        self._wall_base = wall

    def call_started(self, intended: float, now: float) -> None:
        """A call was released at ``now`` for its ``intended`` start (rule 4)."""
        self.started += 1
        self._i_started += 1
        if now - intended > LATE_AFTER:
            self.late += 1
            self._i_late += 1

    def call_dropped(self) -> None:
        """A started call was not placed (the concurrency cap); its record follows."""
        self.dropped += 1
        self._i_dropped += 1

    def call_ended(self, rec: CallRecord) -> None:
        """A call's record: its marks, its result, and into the batch (rules 1, 3)."""
        hist = self._hist
        for mark, value in rec.marks.items():
            hist.record(mark, value)
        if rec.media:
            self.media.call(rec.media)
        if rec.result == Result.SUCCESS:
            self.succeeded += 1
            self._i_succeeded += 1
        elif rec.result == Result.FAILED:
            self.failed += 1
            self._i_failed += 1
            self._i_failures[rec.failure] = self._i_failures.get(rec.failure, 0) + 1
        else:
            self.in_flight_at_stop += 1
        rec.worker = self.worker
        self.batch.append(rec.to_dict())

    def overload(self, number: int, intended: float, now: float, active: int) -> CallRecord:
        """Drop a started call at the concurrency cap: counted, and its failed record
        (to be passed to :meth:`call_ended` like any other)."""
        self.call_dropped()
        rec = CallRecord(number, intended, now, now, worker=self.worker)
        rec.fail(Failure.OVERLOAD, f"{active} calls at the concurrency cap", now)
        return rec

    def take_batch(self) -> list[dict[str, Any]]:
        """The records finished since the last call (and forget them)."""
        batch = self.batch
        self.batch = []
        return batch

    def owes(self, retransmissions: int) -> bool:
        """Whether the interval holds anything a last snapshot must carry."""
        return bool(self._i_started or self._i_succeeded or self._i_failed or self.batch
                    or retransmissions != self._retrans_base)

    def snapshot(self, now: float, *, active: int, retransmissions: int, cpu: float,
                 wall: float, loop_lag: float, target_rate: float,
                 codes: dict[str, int]) -> Snapshot:
        """Close the interval at ``now`` and start the next (rules 2, 6); the snapshot
        with its histograms encoded (:meth:`close` and every :meth:`encode_piece`)."""
        snap = self.close(now, active=active, retransmissions=retransmissions, cpu=cpu,
                          wall=wall, loop_lag=loop_lag, target_rate=target_rate,
                          codes=codes)
        while not self.encode_piece(snap):
            pass
        return snap

    def close(self, now: float, *, active: int, retransmissions: int, cpu: float,
              wall: float, loop_lag: float, target_rate: float,
              codes: dict[str, int]) -> Snapshot:
        """Close the interval at ``now`` and start the next (rules 2, 6, 7): the snapshot,
        its histograms still to encode with :meth:`encode_piece`.

        Args:
            now: the run-relative time of the snapshot.
            active: calls in progress.
            retransmissions: the UA's retransmission total.
            cpu: the process's CPU seconds (user + system) so far.
            wall: a monotonic stamp taken with ``cpu``.
            loop_lag: the most a timer fired late in the interval, seconds.
            target_rate: the rate calls are being started at (0: not starting).
            codes: response codes received in the interval, by code.

        Raises:
            RuntimeError: the previous snapshot's histograms are not all encoded.
        """
        spare = self._spare
        if spare is None:
            raise RuntimeError("the previous interval's histograms are still to encode")
        span = max(wall - self._wall_base, 1e-6)
        share = (cpu - self._cpu_base) / span
        self._cpu_base = cpu
        self._wall_base = wall
        snap = Snapshot(
            t=now, worker=self.worker, started=self._i_started,
            succeeded=self._i_succeeded, failed=self._i_failed, active=active,
            late=self._i_late, dropped=self._i_dropped,
            retransmissions=retransmissions - self._retrans_base,
            loop_lag_ms=loop_lag * 1000.0, cpu=share, target_rate=target_rate,
            histograms={}, failures=self._i_failures, codes=codes,
        )
        self._retrans_base = retransmissions
        self._i_started = self._i_succeeded = self._i_failed = 0
        self._i_late = self._i_dropped = 0
        self._i_failures = {}
        closed = self._closed = self._hist
        self._hist = spare
        self._spare = None
        self._to_encode = closed.recorded()
        return snap

    def encode_piece(self, snap: Snapshot) -> bool:
        """Encode one more histogram of the closed interval into ``snap`` (rule 7);
        whether all are (then its histograms are emptied for a later interval)."""
        closed = self._closed
        if closed is None:
            return True
        if self._to_encode:
            mark = self._to_encode.pop(0)
            snap.histograms[mark] = closed.encode_one(mark)
        if self._to_encode:
            return False
        closed.reset()
        self._spare = closed
        self._closed = None
        return True

    @property
    def encoding(self) -> bool:
        """Whether a closed interval's histograms are still to encode (rule 7)."""
        return self._closed is not None
