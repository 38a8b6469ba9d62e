"""What a worker hands over: call records, wire traces and interval snapshots, to sinks.

Theory of operation
===================

1. Every call that ends goes through :meth:`RunOutput.ended`: the
   :class:`~sipload.stats.interval.IntervalAccountant` counts it and batches its record,
   and the wire trace (if any) keeps or drops its messages.
2. A snapshot is due every ``every`` seconds (:attr:`RunOutput.next_snapshot`); the
   shell gathers the figures and :meth:`RunOutput.emit` hands it over after the pending
   batches (or in two steps: :meth:`RunOutput.closed` when the interval closes, the
   batches at once; :meth:`RunOutput.hand_over` once its histograms are encoded).
3. :meth:`RunOutput.flush` hands the kept traces over before the record batch: a
   worker acknowledged for a batch has sent the traces of its calls.
4. At the end, a last snapshot is owed when anything counted since the previous one
   would otherwise be lost (:meth:`RunOutput.owes`).
"""

from __future__ import annotations

from sipload.engine.config import RecordSink, SnapshotSink, TraceSink
from sipload.engine.wiretrace import WireTrace
from sipload.stats.interval import IntervalAccountant, Snapshot
from sipload.stats.records import CallRecord


def _nothing(_: object) -> None:
    pass


class RunOutput:
    """The accountant of one worker and the sinks it feeds (module docstring)."""

    def __init__(self, worker: int, every: float, on_records: RecordSink | None = None,
                 on_snapshot: SnapshotSink | None = None,
                 on_traces: TraceSink | None = None) -> None:
        self.counts = IntervalAccountant(worker)
        self.every = every
        self.next_snapshot = every
        self.trace: WireTrace | None = None
        self.on_records: RecordSink = on_records or _nothing
        self.on_snapshot: SnapshotSink = on_snapshot or _nothing
        self.on_traces: TraceSink = on_traces or _nothing

    def ended(self, rec: CallRecord) -> None:
        """A call ended (rule 1)."""
        self.counts.call_ended(rec)
        if self.trace is not None:
            self.trace.finish(rec)

    def emit(self, now: float, snap: Snapshot) -> None:
        """Hand ``snap`` over after the pending batches; the next is due a period on."""
        self.closed(now)
        self.on_snapshot(snap)

    def closed(self, now: float) -> None:
        """An interval closed at ``now``: the pending batches go, the next snapshot is due
        a period on; this one follows once encoded (:meth:`hand_over`)."""
        self.next_snapshot = now + self.every
        self.flush()

    def hand_over(self, snap: Snapshot) -> None:
        """The snapshot of the interval last :meth:`closed`, its histograms encoded."""
        self.on_snapshot(snap)

    def flush(self) -> None:
        """Hand over the kept traces, then the records batched (rule 3)."""
        if self.trace is not None and self.trace.kept:
            self.on_traces(self.trace.take())
        batch = self.counts.take_batch()
        if batch:
            self.on_records(batch)

    def owes(self, retransmissions: int, codes_pending: bool) -> bool:
        """Whether a last snapshot is owed (rule 4)."""
        return self.counts.owes(retransmissions) or codes_pending
