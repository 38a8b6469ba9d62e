"""A worker's run once its parts are built: the pump and what it calls back, the call
starts, the snapshots, and when the run is over.

:class:`Running` is made by :meth:`Engine.start <sipload.engine.shell.Engine.start>`
from the parts it assembled (sockets, UA, the scenario's runner or the default UAS,
media).  It builds the one :class:`~sipload.pump.Pump` on its hooks: each UA event goes
to the runner (or the responder); after each batch the ended calls go out and media
catches up; its deadline is the earliest of the runner's timers, the next call start,
the next snapshot and the end of the run; its tick runs them and settles ``done`` when
the :class:`~sipload.engine.stopping.Drain` says the run is over.

A snapshot goes in pieces: when one is due, the interval closes at once (its counts,
the ended calls' records handed over) and its mark histograms, ~0.1 ms each to encode
(0.5 ms for a basic call's five), are encoded one at a time where one fits before the
next call start (:data:`PIECE_ROOM`, asked of :meth:`CallStarter.room`), right after
starts; the snapshot is handed over once all are.  In one go, the encodings held the
next start up to 0.4 ms at 1,875 calls/s.  The wire traces of calls gone quiet are
packed the same way, a call at a time (:meth:`Running.snapshot_if_due`).
"""

from __future__ import annotations

import asyncio
import random
import resource
import time

from sipload.engine.config import EngineConfig
from sipload.engine.media import WorkerMedia
from sipload.engine.output import RunOutput
from sipload.engine.sockets import SipSockets
from sipload.engine.starts import CallStarter, admission_for
from sipload.engine.stopping import Drain
from sipload.engine.wiretrace import WireTrace
from sipload.pump import Pump
from sipload.scenario.interpreter import Runner
from sipload.stats.interval import Snapshot
from sipload.stats.records import CallRecord, Result
from sipload.stats.traces import IDLE_PACK
from sipload.transport import TransportSet
from sipload.ua.agent import UserAgent
from sipload.ua.events import Event
from sipload.ua.responder import DefaultUAS

INF = float("inf")

PIECE_ROOM = 0.0003
"""A snapshot's histogram (~0.1 ms to encode) is encoded only this long or more before
the next call start; the rest wait for the next start, right after which they run."""

PIECE_LIMIT = 0.05
"""A snapshot closed this long ago encodes a histogram after each start even without
:data:`PIECE_ROOM` (rates where no gap between starts is that long)."""


PACK_BUDGET = 0.002
"""Seconds of wire-trace packing at most in one go (a call's ~15 µs), while each fits
before the next start (:data:`PIECE_ROOM`)."""

PACK_EVERY = 0.02
"""While quiet calls wait for their traces to be packed, the loop's timer comes back for
them this often at most (calls held, no start to run after)."""


def cpu() -> float:
    """User and system CPU seconds of this process."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


_PAGE_MIB = resource.getpagesize() / (1024 * 1024)


def rss_mib() -> float | None:
    """This process's resident set size now, MiB (``/proc/self/statm``), or None where
    there is no such file (not Linux)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_MIB
    except (OSError, ValueError, IndexError):
        return None


class Running:
    """One worker's run on its pump (see the module docstring).

    Attributes:
        pump: the one pump between the sockets and the UA.
        starter: a UAC's call starts (None for a UAS).
        done: settled when the run is over.
    """

    def __init__(self, cfg: EngineConfig, loop: asyncio.AbstractEventLoop, t0: float,
                 transports: TransportSet, sockets: SipSockets, ua: UserAgent,
                 runner: Runner | None, responder: DefaultUAS | None,
                 media: WorkerMedia | None, output: RunOutput, drain: Drain,
                 rng: random.Random) -> None:
        self.t0 = t0
        self.transports = transports
        self.sockets = sockets
        self.ua = ua
        self.runner = runner
        self.responder = responder
        self.media = media
        self.output = output
        self.counts = output.counts
        self.drain = drain
        sources = sockets.sources
        pump = self.pump = sockets.pump = Pump(
            loop, transports, ua, self.deliver, t0=t0,
            on_sent=runner.stamp_sent if runner is not None else None,
            after=self.after, deadline=self.deadline, tick=self.tick,
            send_from=sources.send if sources is not None else None,
            outgoing_from=ua.outgoing_from if sources is not None else None)
        self.starter: CallStarter | None = None
        prog = cfg.program
        if runner is not None and prog is not None and prog.role == "uac":
            self.starter = CallStarter(admission_for(cfg, rng), runner, pump, t0=t0,
                                       cap=cfg.concurrent, counts=self.counts,
                                       ended=self.ended, after_timer=self.snapshot_if_due)
            if cfg.trace != "none":
                trace = output.trace = WireTrace(cfg.trace, cfg.trace_limit,
                                                 runner.call_number_of, transports,
                                                 time.time() - self.now(), sources)
                pump.tap = trace.tap
        self.packed_at = -INF  #: when quiet calls' traces were last packed
        self.packed_before = 0  #: traces packed before the interval open (its snapshot's)
        self.snap: Snapshot | None = None  #: a closed interval's, its histograms encoding
        self.snap_since = 0.0  #: when it closed (run-relative)
        self.counts.begin(cpu(), time.monotonic())
        self.done: asyncio.Future[None] = loop.create_future()
        pump.rearm()

    def now(self) -> float:
        """Seconds since the engine started, on ``time.monotonic()``."""
        return time.monotonic() - self.t0

    @property
    def active(self) -> int:
        """Calls in progress: the runner's, or the UA's for the default UAS."""
        runner = self.runner
        return runner.active if runner is not None else self.ua.call_count()

    # ------------------------------------------------------------------ the pump's hooks

    def deliver(self, ev: Event) -> None:
        # ev.time: the stamp of the message that caused it, or the timer's now
        if self.runner is not None:
            self.runner.on_event(ev, ev.time)
        elif self.responder is not None:
            self.responder.on_event(ev, ev.time)

    def after(self) -> None:
        runner, media = self.runner, self.media
        if runner is not None:
            if media is not None:
                media.after_events(runner, self.now())
            for rec in runner.finished():
                self.ended(rec)
        elif media is not None and self.responder is not None and \
                self.responder.secure is not None:
            media.pump.rearm()  # an SRTP echo stream may have started (its RTCP)
        if media is not None:
            media.flush_rtcp()

    def ended(self, rec: CallRecord) -> None:
        self.output.ended(rec)
        if self.starter is not None:
            self.starter.admission.ended(rec.call_number)
        self.transports.end_call(rec.call_id)  # per-call TCP/TLS: close its connection

    def deadline(self) -> float | None:
        """The earliest deadline besides the UA's: calls, starts, snapshot, end."""
        when = INF
        if self.runner is not None and (d := self.runner.next_deadline()) is not None:
            when = d
        starter, due = self.starter, self.output.next_snapshot
        if starter is not None and (d := starter.deadline()) is not None and d < when:
            when = d
        if due < when and (starter is None or not starter.holds(due)):
            when = due
        trace = self.output.trace
        if trace is not None and (d := trace.tracer.next_quiet()) is not None:
            d = max(d, self.packed_at + PACK_EVERY)
            if d < when:
                when = d
        if self.drain.stop_at is not None and self.drain.stop_at < when:
            when = self.drain.stop_at
        return None if when == INF else when

    def tick(self, now: float) -> None:
        """The loop's timer: the UA's timers ran; now the calls', starts, snapshot, end."""
        pump = self.pump
        if self.runner is not None:
            self.runner.handle_timers(now)
            if self.starter is not None:
                self.starter.start_due(now)
        pump.flush()
        self.snapshot_if_due(now)
        if self._over(now):
            pump.stop_timer()
            if self.starter is not None:
                self.starter.close()
            if not self.done.done():
                self.done.set_result(None)
            return
        pump.rearm()

    def _over(self, now: float) -> bool:
        drain, runner = self.drain, self.runner
        if drain.cut(now):
            if runner is not None:
                runner.stop_all(now, Result.IN_FLIGHT, drain.failure())
                self.pump.flush()
            return True
        return self.starter is not None and runner is not None and drain.drained(
            self.starter.scheduled_all(), runner.active)

    # ------------------------------------------------------------------ output

    def snapshot_if_due(self, now: float) -> None:
        """Close the interval when a snapshot is due, then encode its histograms, each
        where it fits before the next call start (module docstring); then pack the wire
        traces of calls gone quiet, likewise."""
        if self.snap is None:
            due = self.output.next_snapshot
            if now >= due and not (self.starter is not None and self.starter.holds(due)):
                self._close(now)
        if self.snap is not None:
            self._encode_pieces(self.now() - self.snap_since >= PIECE_LIMIT)
        if self.output.trace is not None:
            self._pack_traces()

    def _pack_traces(self) -> None:
        """Pack the traces of calls quiet for :data:`~sipload.stats.traces.IDLE_PACK`
        (``sipload.stats.traces``, rule 5), one at a time where it fits before the next
        call start (:data:`PIECE_ROOM`); one regardless once the oldest has waited twice
        that long (rates where no gap between starts is that long).  Each such call also
        drops what it keeps only to write its next requests faster (``Runner.call_quiet``:
        its dialogs' texts, ~0.3 KiB a call held open)."""
        trace, starter, runner = self.output.trace, self.starter, self.runner
        assert trace is not None and runner is not None
        tracer = trace.tracer
        now = self.now()
        if not tracer.idle_waiting(now):
            return
        self.packed_at = now
        if starter is not None and not starter.room(PIECE_ROOM):
            if tracer.idle_waiting(now - IDLE_PACK):  # overdue: one regardless
                packed = tracer.pack_idle(now)
                if packed is not None:
                    runner.call_quiet(packed.call_id)
            return
        clock = time.monotonic
        end = clock() + PACK_BUDGET
        while (packed := tracer.pack_idle(now)) is not None:
            runner.call_quiet(packed.call_id)  # its dialog's texts go too
            if clock() >= end or (starter is not None and not starter.room(PIECE_ROOM)):
                return

    def _close(self, now: float) -> None:
        pump, runner, media = self.pump, self.runner, self.media
        snap = self.counts.close(
            now, active=self.active, retransmissions=self.ua.retransmissions, cpu=cpu(),
            wall=time.monotonic(), loop_lag=pump.lag,
            target_rate=self.starter.target_rate(now) if self.starter is not None else 0.0,
            codes=runner.take_codes() if runner is not None else {})
        # held at once: the accountant now waits for this snapshot's encoding, which
        # must come whatever the figures below do (else no interval closes again)
        self.snap = snap
        self.snap_since = now
        try:
            snap.rss_mib = rss_mib()
            if runner is not None and media is not None:
                snap.media = media.figures(runner, self.counts.media)
            snap.connections = self.sockets.connection_figures(self.transports)
            trace = self.output.trace
            if trace is not None:
                tracer = trace.tracer
                snap.traces = {"held": tracer.held_calls,
                               "packed": tracer.packed_calls - self.packed_before}
                self.packed_before = tracer.packed_calls
        finally:
            pump.lag = 0.0
            self.output.closed(now)

    def _encode_pieces(self, forced: bool) -> None:
        """Encode the closed interval's histograms while each fits before the next call
        start (:data:`PIECE_ROOM`; one regardless when ``forced``); hand the snapshot
        over once all are."""
        snap, starter, counts = self.snap, self.starter, self.counts
        while snap is not None:
            if not forced and starter is not None and not starter.room(PIECE_ROOM):
                return
            forced = False
            if counts.encode_piece(snap):
                self.snap = None
                self.output.hand_over(snap)
                return

    def close_output(self) -> None:
        """The snapshot still encoding, then the last one where one is owed, else the last
        batches."""
        runner = self.runner
        self._finish_snapshot()
        if self.output.owes(self.ua.retransmissions,
                            runner is not None and bool(runner.codes_received)):
            self._close(self.now())
            self._finish_snapshot()
        else:
            self.output.flush()

    def _finish_snapshot(self) -> None:
        """Encode what is left of the closed interval's histograms and hand it over."""
        snap = self.snap
        if snap is not None:
            while not self.counts.encode_piece(snap):
                pass
            self.snap = None
            self.output.hand_over(snap)
