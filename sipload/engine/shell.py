"""The asyncio shell of a worker: sockets ↔ user agent ↔ scenario, on the one pump.

Theory of operation
===================

1. The one :class:`~sipload.pump.Pump` (shared with :class:`~sipload.runtime.UARuntime`)
   moves bytes between the transports and the sans-IO :class:`UserAgent` and re-arms
   one ``loop.call_at``; the engine hands each UA event to the scenario :class:`Runner`
   (or the :class:`DefaultUAS`) and adds its own deadlines: the runner's timers, the
   next call start, the next snapshot, the end of the run.
2. What it assembles lives beside it (see :mod:`sipload.engine`): calls are started by
   the :class:`~sipload.engine.starts.CallStarter`, the run ends as the
   :class:`~sipload.engine.stopping.Drain` says, ended calls and snapshots go out
   through the :class:`~sipload.engine.output.RunOutput`.
3. Times given to the core are seconds since the engine started (``now``), so records
   carry run-relative times.  Every time that becomes a measurement is a socket stamp:
   a message goes into the UA with its receive stamp (the kernel's, for UDP), and the
   runner gets each message's send stamp (:meth:`Runner.stamp_sent`).  ``now`` for
   timers is ``time.monotonic()`` (never the loop's cached millisecond clock).
"""

from __future__ import annotations

import asyncio
import random
import resource
import time

from sipload.engine.config import EngineConfig, RecordSink, SnapshotSink, TraceSink
from sipload.engine.media import WorkerMedia
from sipload.engine.output import RunOutput
from sipload.engine.roles import build_responder, build_runner, build_ua
from sipload.engine.sockets import SipSockets
from sipload.engine.starts import CallStarter, admission_for
from sipload.engine.stopping import Drain
from sipload.engine.wiretrace import WireTrace
from sipload.pump import Pump
from sipload.scenario.interpreter import Runner
from sipload.stats.records import CallRecord, Result
from sipload.transport import TransportSet
from sipload.ua.agent import UserAgent
from sipload.ua.events import Event
from sipload.ua.responder import DefaultUAS

INF = float("inf")


class Engine:
    """One worker's event loop (see the module docstring)."""

    def __init__(self, config: EngineConfig, *, on_records: RecordSink | None = None,
                 on_snapshot: SnapshotSink | None = None,
                 on_traces: TraceSink | None = None) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.output = RunOutput(config.worker, config.snapshot_every, on_records,
                                on_snapshot, on_traces)
        self.counts = self.output.counts
        self.drain = Drain()
        self.t0 = 0.0
        self.address: tuple[str, int] = (config.local_host, config.local_port)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.transports: TransportSet | None = None
        self.ua: UserAgent | None = None
        self.pump: Pump | None = None
        self.runner: Runner | None = None
        self.responder: DefaultUAS | None = None
        self.media: WorkerMedia | None = None
        self.sockets: SipSockets | None = None
        self.starter: CallStarter | None = None  #: a UAC's call starts
        self._done: asyncio.Future[None] | None = None

    def now(self) -> float:
        """Seconds since the engine started, on ``time.monotonic()`` (not the loop's clock)."""
        return time.monotonic() - self.t0

    async def start(self) -> tuple[str, int]:
        """Bind the sockets, build the UA and its driver; returns the bound address."""
        cfg, prog = self.config, self.config.program
        loop = self.loop = asyncio.get_running_loop()
        self.t0 = time.monotonic()  # loop.time() shares its epoch: see sipload.pump
        socks = self.sockets = SipSockets(cfg)
        tp, (host, port) = await socks.listen()
        self.transports, self.address = tp, (host, port)
        media = None
        if prog is None or prog.media:
            media = self.media = WorkerMedia(cfg.worker, self.rng,
                                             time.monotonic() - (loop.time() - self.t0),
                                             echo_all=prog is None)
            media.add(host)
        ua = self.ua = build_ua(cfg, host, port, self.rng)
        more: list[tuple[str, int]] = []
        if len(cfg.sources) > 1:
            more = await socks.bind_sources(tp)
            for h, p in more:
                ua.add_local(h, p)
                if media is not None:  # RTP from the call's own address too
                    media.add(h)
        runner = None
        if prog is None:
            self.responder = build_responder(cfg, ua, host, media)
        else:
            runner = self.runner = build_runner(cfg, prog, ua, host, port, media, more, self.rng)
        sources = socks.sources
        pump = self.pump = socks.pump = Pump(
            loop, tp, ua, self._deliver, t0=self.t0,
            on_sent=runner.stamp_sent if runner is not None else None,
            after=self._after, deadline=self._deadline, tick=self._tick,
            send_from=sources.send if sources is not None else None,
            outgoing_from=ua.outgoing_from if sources is not None else None)
        if runner is not None and prog is not None and prog.role == "uac":
            self.starter = CallStarter(admission_for(cfg, self.rng), runner, pump, t0=self.t0,
                                       cap=cfg.concurrent, counts=self.counts,
                                       ended=self._ended, after_timer=self._snapshot_if_due)
            if cfg.trace != "none":
                trace = self.output.trace = WireTrace(cfg.trace, cfg.trace_limit,
                                                      runner.call_number_of, tp,
                                                      time.time() - self.now(), sources)
                pump.tap = trace.tap
        self.counts.begin(_cpu(), time.monotonic())
        self._done = loop.create_future()
        pump.rearm()
        return self.address

    async def run(self) -> None:
        """Start (if needed) and run until every call is done or the run is stopped."""
        if self.loop is None:
            await self.start()
        assert self._done is not None and self.pump is not None
        starter = self.starter
        if self.config.duration is not None and starter is None:
            self.drain.limit(self.config.duration)
        if starter is not None:
            starter.begin(self.now() + self.config.phase)
        self.pump.fire_now()
        try:
            await self._done
        finally:
            self.pump.close()
            if starter is not None:
                starter.close()
            self._close_output()
            if self.media is not None:
                self.media.close()
            if self.sockets is not None:
                await self.sockets.close()
            if self.transports is not None:
                await self.transports.close()

    def request_stop(self, grace: float | None = None) -> None:
        """Stop starting calls; calls in flight get ``grace`` seconds, then are recorded."""
        if self.pump is None or self._done is None or self._done.done():
            return
        if not self.drain.request(self.now(), self.config.stop_grace if grace is None
                                  else grace):
            self.abort()
            return
        if self.starter is not None:
            self.starter.admission.stopping = True
        self.pump.rearm()

    def abort(self) -> None:
        """Stop at once: calls in flight are recorded as such."""
        self.drain.abort(self.now() if self.loop is not None else 0.0)
        if self.pump is not None:
            self.pump.rearm()

    def add_calls(self, n: int, first_number: int) -> None:
        """``n`` more calls to start (a lost worker's), numbered from ``first_number``."""
        if self.starter is not None:
            self.starter.add_calls(n, first_number)

    def release_calls(self, n: int) -> int:
        """Give up to ``n`` calls not yet started to another worker (one joining the
        run); returns how many were given: they will never be started here."""
        return self.starter.release_calls(n) if self.starter is not None else 0

    def set_rate(self, rate: float) -> None:
        if self.starter is not None:
            self.starter.set_rate(rate)

    @property
    def active(self) -> int:
        if self.runner is not None:
            return self.runner.active
        return self.ua.call_count() if self.ua is not None else 0

    @property
    def retransmissions(self) -> int:
        return self.ua.retransmissions if self.ua is not None else 0

    # ------------------------------------------------------------------ the pump's hooks

    def _deliver(self, ev: Event) -> None:
        # ev.time: the stamp of the message that caused it, or the timer's now
        if self.runner is not None:
            self.runner.on_event(ev, ev.time)
        elif self.responder is not None:
            self.responder.on_event(ev, ev.time)

    def _after(self) -> None:
        runner, media = self.runner, self.media
        if runner is not None:
            if media is not None:
                media.after_events(runner, self.now())
            for rec in runner.finished():
                self._ended(rec)
        elif media is not None and self.responder is not None and \
                self.responder.secure is not None:
            media.pump.rearm()  # an SRTP echo stream may have started (its RTCP)
        if media is not None:
            media.flush_rtcp()

    def _ended(self, rec: CallRecord) -> None:
        self.output.ended(rec)
        if self.starter is not None:
            self.starter.admission.ended(rec.call_number)
        if self.transports is not None:
            self.transports.end_call(rec.call_id)  # per-call TCP/TLS: close its connection

    def _deadline(self) -> float | None:
        """The engine's earliest deadline besides the UA's (rule 1)."""
        when = INF
        if self.runner is not None and (d := self.runner.next_deadline()) is not None:
            when = d
        starter, due = self.starter, self.output.next_snapshot
        if starter is not None and (d := starter.deadline()) is not None and d < when:
            when = d
        if due < when and (starter is None or not starter.holds(due)):
            when = due
        if self.drain.stop_at is not None and self.drain.stop_at < when:
            when = self.drain.stop_at
        return None if when == INF else when

    def _tick(self, now: float) -> None:
        """The loop's timer: the UA's timers ran; now the calls', starts, snapshot, end."""
        pump = self.pump
        assert pump is not None and self._done is not None
        if self.runner is not None:
            self.runner.handle_timers(now)
            if self.starter is not None:
                self.starter.start_due(now)
        pump.flush()
        self._snapshot_if_due(now)
        if self._finished(now):
            pump.stop_timer()
            if self.starter is not None:
                self.starter.close()
            if not self._done.done():
                self._done.set_result(None)
            return
        pump.rearm()

    def _finished(self, now: float) -> bool:
        drain, runner = self.drain, self.runner
        if drain.cut(now):
            if runner is not None and self.pump is not None:
                runner.stop_all(now, Result.IN_FLIGHT, drain.failure())
                self.pump.flush()
            return True
        return self.starter is not None and runner is not None and drain.drained(
            self.starter.scheduled_all(), runner.active)

    # ------------------------------------------------------------------ output

    def _snapshot_if_due(self, now: float) -> None:
        due = self.output.next_snapshot
        if now >= due and (self.starter is None or not self.starter.holds(due)):
            self._snapshot(now)

    def _snapshot(self, now: float) -> None:
        ua, pump, runner, media = self.ua, self.pump, self.runner, self.media
        assert ua is not None and pump is not None
        snap = self.counts.snapshot(
            now, active=self.active, retransmissions=ua.retransmissions, cpu=_cpu(),
            wall=time.monotonic(), loop_lag=pump.lag,
            target_rate=self.starter.target_rate(now) if self.starter is not None else 0.0,
            codes=runner.take_codes() if runner is not None else {})
        if runner is not None and media is not None:
            snap.media = media.figures(runner, self.counts.media)
        if self.sockets is not None and self.transports is not None:
            snap.connections = self.sockets.connection_figures(self.transports)
        pump.lag = 0.0
        self.output.emit(now, snap)

    def _close_output(self) -> None:
        """The last snapshot where one is owed, else the last batches."""
        ua, runner = self.ua, self.runner
        if ua is not None and self.pump is not None and self.output.owes(
                ua.retransmissions, runner is not None and bool(runner.codes_received)):
            self._snapshot(self.now())
        else:
            self.output.flush()


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
