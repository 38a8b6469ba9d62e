"""The asyncio shell of a worker: sockets ↔ user agent ↔ scenario, one timer.

The engine is a thin shell over pure parts.  The one :class:`~sipload.pump.Pump`
(shared with :class:`~sipload.runtime.UARuntime`) moves bytes between the transports
and the sans-IO :class:`UserAgent` and re-arms one ``loop.call_at``; the engine hands
UA events to the scenario :class:`Runner` (or the :class:`DefaultUAS`), releases the
calls :class:`~sipload.pacing.Admission` says are due, and feeds an
:class:`~sipload.stats.interval.IntervalAccountant`, whose records and snapshot go to
the sinks every second.  Times given to the core are seconds since the engine started
(``now``), so records carry run-relative times.

Clocks.  Every time that becomes a measurement is a socket stamp: a message goes into
the UA with its receive stamp (the kernel's, for UDP), and the runner gets each
message's send stamp (:meth:`Runner.stamp_sent`).  ``now`` for timers is
``time.monotonic()`` (never the loop's cached millisecond clock).  Call starts are
released by a :class:`~sipload.transport.hrtimer.PreciseTimer` (``timerfd``) at their
intended time, not on the loop's 1 ms tick; while calls are being started the garbage
collector runs only in the gaps between them (:func:`~sipload.transport.loop.collect_owed`).
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import resource
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sipload.media.srtpecho import SrtpEcho
from sipload.media.table import MediaTable
from sipload.mediapump import MediaPump, merge_send_figures, write_recordings
from sipload.pacing import Admission, Pacer
from sipload.pump import Pump
from sipload.scenario.inject import Injection
from sipload.scenario.interpreter import RunContext, Runner
from sipload.scenario.model import Program
from sipload.sip.servers import Server, ServerSet
from sipload.sip.transaction import TimerConfig
from sipload.stats.connintervals import connection_snapshot
from sipload.stats.interval import IntervalAccountant, Snapshot
from sipload.stats.records import CallRecord, Failure, Result
from sipload.stats.traces import DEFAULT_LIMIT, TraceKeeper, Tracer
from sipload.transport import StreamLimits, TransportSet
from sipload.transport.hrtimer import PreciseTimer, precise_timer
from sipload.transport.loop import collect_owed
from sipload.transport.rtp import bind_pair
from sipload.transport.selfsigned import loopback_certificate, server_context_from_pem
from sipload.transport.sources import SourceSockets
from sipload.transport.tlsclient import load_context
from sipload.ua.agent import UAConfig, UserAgent
from sipload.ua.events import Event
from sipload.ua.ids import IdGenerator
from sipload.ua.responder import DefaultUAS
from sipload.ua.state import Peer

__all__ = ["Engine", "EngineConfig", "Snapshot"]

GC_SLACK = 0.004
"""While calls are being started, the garbage collector runs only right after a start
with at least this long before the next."""

SNAPSHOT_SLACK = 0.005
"""A snapshot (histogram encoding, a record batch) due less than this before a call start
waits and runs right after that start, so it never delays one."""


@dataclass(slots=True)
class EngineConfig:
    """What one engine does: its role, where it sends, how fast, for how long."""

    program: Program | None  #: None: the default UAS
    target: tuple[str, int] | None = None
    transport: str = "udp"
    local_host: str = "127.0.0.1"
    local_port: int = 0
    rate: float = 10.0
    calls: int | None = None
    duration: float | None = None
    concurrent: int = 10_000
    users: int | None = None  #: closed model: this many calls at once, each followed by the next
    first_user: int = 0  #: the run-wide number of this worker's first user (USER-order CSV rows)
    arrival: str = "uniform"
    rate_increase: float = 0.0
    rate_interval: float = 0.0
    rate_max: float | None = None
    first_call: int = 0
    injection: Injection | None = None
    worker: int = 0
    seed: int | None = None
    timers: TimerConfig = field(default_factory=TimerConfig)
    reuse_port: bool = False
    tls_insecure: bool = False
    tls_resume: bool = True  #: offer the last TLS session again (per-call connections)
    connections: str = "shared"  #: TCP/TLS: "shared" (one per target) or "per-call"
    tls_cadata: str | None = None  #: trust only these PEM certificates (the embedded UAS's)
    tls_server: ssl.SSLContext | None = None
    snapshot_every: float = 1.0
    stop_grace: float = 5.0
    stream_limits: StreamLimits = field(default_factory=StreamLimits)
    max_dialogs: int = 0  #: calls answered at once before a new INVITE gets 503 (0: no cap)
    trace: str = "none"  #: keep the wire messages of "failed", "all" or "none" of the calls
    trace_limit: int = DEFAULT_LIMIT  #: traced calls per failure reason ("failed")
    ws_path: str = "/"  #: the request path of WebSocket upgrades (ws, wss)
    located: str = ""  #: the target name located by DNS (RFC 3263), "" for none
    servers: tuple[Server, ...] = ()  #: what DNS found for it (sipload.transport.dns)
    #: this worker's share of --source-addresses: calls spread over them in turn
    #: (local_host is the first; none or one: every call from local_host)
    sources: tuple[str, ...] = ()
    srtp: str = ""  #: the default UAS answers RTP/SAVP offers with SRTP ("sdes"), or not ("")


RecordSink = Callable[[list[dict[str, Any]]], None]
TraceSink = Callable[[list[dict[str, Any]]], None]
SnapshotSink = Callable[[Snapshot], None]


INF = float("inf")


class Engine:
    """One worker's event loop (see the module docstring)."""

    def __init__(self, config: EngineConfig, *, on_records: RecordSink | None = None,
                 on_snapshot: SnapshotSink | None = None,
                 on_traces: TraceSink | None = None) -> None:
        self.config = config
        self.on_records = on_records or (lambda _: None)
        self.on_snapshot = on_snapshot or (lambda _: None)
        self.on_traces = on_traces or (lambda _: None)
        self.rng = random.Random(config.seed)
        self.counts = IntervalAccountant(config.worker)
        self.t0 = 0.0
        self.address: tuple[str, int] = (config.local_host, config.local_port)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.transports: TransportSet | None = None
        self.ua: UserAgent | None = None
        self.pump: Pump | None = None
        self.runner: Runner | None = None
        self.responder: DefaultUAS | None = None
        self.media: MediaPump | None = None
        self.media_port = 6000
        self.sources: SourceSockets | None = None  #: the sockets of sources beyond the first
        #: the RTP of sources beyond the first (media on each source address): (pump, port)
        self.media_more: list[tuple[MediaPump, int]] = []
        self.pacer: Pacer | None = None
        self.admission: Admission | None = None
        self.tracer: Tracer | None = None  #: wire traces of a UAC run (stats.traces)
        self._traces: list[dict[str, Any]] = []
        self._epoch = 0.0  #: Unix time at the engine's clock zero (for pcap stamps)
        self._starter: PreciseTimer | None = None  #: releases call starts (timerfd)
        self._gc_paced = False  #: the engine runs the collector itself (GC_SLACK)
        self._done: asyncio.Future[None] | None = None
        self._stopping = False
        self._stop_at: float | None = None
        self._aborted = False
        self._next_snapshot = 0.0

    # ------------------------------------------------------------------ lifecycle

    def now(self) -> float:
        """Seconds since the engine started, on ``time.monotonic()`` (not the loop's clock)."""
        return time.monotonic() - self.t0

    async def start(self) -> tuple[str, int]:
        """Bind the socket, build the UA; returns the bound address."""
        cfg = self.config
        loop = self.loop = asyncio.get_running_loop()
        self.t0 = time.monotonic()  # loop.time() shares its epoch: see sipload.pump
        secure = cfg.transport in ("tls", "wss")
        tls = load_context(insecure=cfg.tls_insecure, cadata=cfg.tls_cadata,
                           resume=cfg.tls_resume) if secure else None
        tp = self.transports = TransportSet(self._on_message, self._on_error,
                                            tls_client_context=tls,
                                            stream_limits=cfg.stream_limits, ws_path=cfg.ws_path,
                                            connections=cfg.connections,
                                            on_call_error=self._on_call_error,
                                            source_host=cfg.local_host if cfg.sources else "")
        server_tls = cfg.tls_server
        if secure and server_tls is None:
            # a UAC over TLS or WSS still listens (its Contact): with a throwaway certificate
            server_tls = server_context_from_pem(*loopback_certificate())
        host, port = await tp.listen(cfg.transport, cfg.local_host, cfg.local_port,
                                     ssl_context=server_tls, reuse_port=cfg.reuse_port)
        self.address = (host, port)
        prog = cfg.program
        if prog is None or prog.media:
            self._start_media(host, echo_all=prog is None)
        ua_cfg = UAConfig(host=host, port=port, transport=cfg.transport, timers=cfg.timers,
                          user_agent="sipload", max_calls=cfg.max_dialogs)
        if prog is not None and prog.allow:
            ua_cfg.allow = prog.allow
        if prog is not None and prog.supported:
            ua_cfg.supported = prog.supported
        ua = self.ua = UserAgent(ua_cfg, IdGenerator(f"w{cfg.worker}{os.getpid():x}x"))
        if cfg.servers:
            ua.set_servers(ServerSet(cfg.located, list(cfg.servers), self.rng.random))
        if len(cfg.sources) > 1:
            await self._bind_sources(tls, server_tls)
        runner: Runner | None = None
        if prog is None:
            echo = SrtpEcho(self.media.table) if cfg.srtp and self.media is not None else None
            self.responder = DefaultUAS(ua, media_ip=host, media_port=self.media_port,
                                        secure=echo.answer if echo is not None else None,
                                        release=echo.release if echo is not None else None)
        else:
            target = cfg.target or ("127.0.0.1", 5060)
            ctx = RunContext(host, port, target[0], target[1], cfg.transport,
                             worker=cfg.worker, media_ip=host, media_port=self.media_port)
            if cfg.sources:  # calls take the source addresses in turn (RunContext.locals)
                extra = self.sources.addresses if self.sources is not None else []
                media = [m[1] for m in self.media_more] or [self.media_port] * len(extra)
                ctx.locals = ((host, port, host, self.media_port), *(
                    (h, p, h, mp) for (h, p), mp in zip(extra, media, strict=True)))
            runner = self.runner = Runner(prog, ua, ctx, self.rng, cfg.injection)
            if self.media is not None:
                runner.media.attach(self.media.table, [m.table for m, _ in self.media_more])
            runner.call_number_base = cfg.first_call
            if prog.role == "uac":
                self._start_calling(runner)
        self.pump = Pump(loop, tp, ua, self._deliver, t0=self.t0,
                         on_sent=runner.stamp_sent if runner is not None else None,
                         tap=self._tap if self.tracer is not None else None,
                         after=self._after, deadline=self._deadline, tick=self._tick,
                         send_from=self.sources.send if self.sources is not None else None,
                         outgoing_from=ua.outgoing_from if self.sources is not None else None)
        self.counts.begin(_cpu(), time.monotonic())
        self._next_snapshot = cfg.snapshot_every
        self._done = loop.create_future()
        self.pump.rearm()
        return self.address

    async def _bind_sources(self, tls: ssl.SSLContext | None,
                            server_tls: ssl.SSLContext | None) -> None:
        """Sockets on each source address beyond the first; the UA numbers them."""
        cfg, ua, tp = self.config, self.ua, self.transports
        assert ua is not None and tp is not None
        self.sources = SourceSockets(tp)
        for host in cfg.sources[1:]:
            h, p = await self.sources.add(
                host, cfg.local_port, cfg.transport, self._on_message_at, self._on_error,
                tls_client_context=tls, ssl_context=server_tls,
                stream_limits=cfg.stream_limits, ws_path=cfg.ws_path,
                reuse_port=cfg.reuse_port, connections=cfg.connections,
                on_call_error=self._on_call_error)
            ua.add_local(h, p)
            if self.media is not None:  # RTP from the call's own address too
                self.media_more.append(self._media_pump(h, self.media.table.echo_all))

    def _start_media(self, host: str, echo_all: bool) -> None:
        """Bind the worker's RTP/RTCP pair and start its media shell."""
        self.media, self.media_port = self._media_pump(host, echo_all)

    def _media_pump(self, host: str, echo_all: bool) -> tuple[MediaPump, int]:
        """An RTP/RTCP pair bound on ``host``, its table and running shell; its RTP port."""
        assert self.loop is not None
        rtp, rtcp = bind_pair(host)
        mono0 = time.monotonic() - (self.loop.time() - self.t0)
        table = MediaTable(time.monotonic() - mono0, time.time() - time.monotonic(),
                           lambda: self.rng.getrandbits(32),
                           f"sipload-{self.config.worker}@{host}",
                           random_bytes=os.urandom)  # SRTP master keys: secrets
        table.echo_all = echo_all
        pump = MediaPump(table, rtp, rtcp, mono0)
        pump.start()
        return pump, rtp.address[1]

    def _start_calling(self, runner: Runner) -> None:
        """A UAC: the pacer and admission, traces, the precise start timer, paced GC."""
        cfg = self.config
        assert self.loop is not None and self.transports is not None
        self.pacer = Pacer(cfg.rate, calls=cfg.calls, duration=cfg.duration,
                           arrival=cfg.arrival, rng=self.rng, increase=cfg.rate_increase,
                           interval=cfg.rate_interval, rate_max=cfg.rate_max)
        self.admission = Admission(self.pacer, first_call=cfg.first_call, users=cfg.users,
                                   first_user=cfg.first_user)
        if cfg.trace != "none":
            self.tracer = Tracer(TraceKeeper(cfg.trace, cfg.trace_limit),
                                 runner.call_number_of, self.transports.local_address)
            self._epoch = time.time() - self.now()
        self._starter = precise_timer(self.loop, self._on_start_timer)
        runner.stamp_sends = True
        if self._starter is not None and gc.isenabled():
            gc.disable()  # collections move to the gaps between starts (GC_SLACK)
            self._gc_paced = True

    async def run(self) -> None:
        """Start (if needed) and run until every call is done or the run is stopped."""
        if self.loop is None:
            await self.start()
        assert self._done is not None and self.pump is not None
        if self.config.duration is not None and self.pacer is None:
            self._stop_at = self.config.duration
        if self.pacer is not None and self.pacer.scheduled == 0:
            self.pacer.begin(self.now())  # the schedule starts when calling does, not at bind
        self.pump.fire_now()
        try:
            await self._done
        finally:
            self.pump.close()
            if self._starter is not None:
                self._starter.close()
            if self._gc_paced:
                self._gc_paced = False
                gc.enable()
            self._flush(final=True)
            if self.media is not None:
                self.media.close()
            for more, _ in self.media_more:
                more.close()
            if self.sources is not None:
                await self.sources.close()
            if self.transports is not None:
                await self.transports.close()

    def request_stop(self, grace: float | None = None) -> None:
        """Stop starting calls; calls in flight get ``grace`` seconds, then are recorded."""
        if self.pump is None or self._done is None or self._done.done():
            return
        if self._stopping:
            self.abort()
            return
        self._stopping = True
        if self.admission is not None:
            self.admission.stopping = True
        self._stop_at = self.now() + (self.config.stop_grace if grace is None else grace)
        self.pump.rearm()

    def abort(self) -> None:
        """Stop at once: calls in flight are recorded as such."""
        self._aborted = True
        self._stop_at = self.now() if self.loop is not None else 0.0
        if self.pump is not None:
            self.pump.rearm()

    def add_calls(self, n: int, first_number: int) -> None:
        """``n`` more calls to start (a lost worker's), numbered from ``first_number``."""
        if self.admission is not None and self.pump is not None:
            self.admission.add_calls(n, first_number)
            self.pump.rearm()

    def release_calls(self, n: int) -> int:
        """Give up to ``n`` calls not yet started to another worker (one joining the
        run); returns how many were given: they will never be started here."""
        if self.admission is None or self.pump is None:
            return 0
        given = self.admission.release_calls(n)
        self.pump.rearm()
        return given

    def set_rate(self, rate: float) -> None:
        if self.pacer is not None and self.pump is not None:
            self.pacer.set_rate(rate, self.now())
            self.pump.rearm()

    @property
    def active(self) -> int:
        if self.runner is not None:
            return self.runner.active
        return self.ua.call_count() if self.ua is not None else 0

    @property
    def started(self) -> int:
        return self.counts.started

    @property
    def succeeded(self) -> int:
        return self.counts.succeeded

    @property
    def failed(self) -> int:
        return self.counts.failed

    @property
    def in_flight_at_stop(self) -> int:
        return self.counts.in_flight_at_stop

    @property
    def retransmissions(self) -> int:
        return self.ua.retransmissions if self.ua is not None else 0

    # ------------------------------------------------------------------ the pump's hooks

    def _on_message(self, data: bytes, peer: Peer, stamp: float) -> None:
        if self.pump is not None:
            self.pump.receive(data, peer, stamp)

    def _on_message_at(self, data: bytes, peer: Peer, stamp: float, local: int) -> None:
        if self.pump is not None:
            self.pump.receive(data, peer, stamp, local)

    def _on_error(self, peer: Peer, reason: str) -> None:
        if self.pump is not None:
            self.pump.error(peer, reason)

    def _on_call_error(self, peer: Peer, call_id: str, reason: str) -> None:
        if self.pump is not None:
            self.pump.call_error(peer, call_id, reason)

    def _deliver(self, ev: Event) -> None:
        # ev.time: the stamp of the message that caused it, or the timer's now
        if self.runner is not None:
            self.runner.on_event(ev, ev.time)
        elif self.responder is not None:
            self.responder.on_event(ev, ev.time)

    def _tap(self, now: float, direction: str, peer: Peer, data: bytes, local: int) -> None:
        tracer, tp = self.tracer, self.transports
        assert tracer is not None and tp is not None
        if local and self.sources is not None:
            tp = self.sources.sets[local]
        host = peer[1] if direction == "in" else tp.literal(peer[1])
        tracer.message(now, direction, peer[0], tp.local_address(peer), (host, peer[2]), data)

    def _after(self) -> None:
        runner, media = self.runner, self.media
        if runner is not None:
            if media is not None:
                runner.media_flush(self.now())
                media.rearm()
                for more, _ in self.media_more:
                    more.rearm()
                if runner.media.recordings:
                    write_recordings(runner.media.recordings, self.config.worker)
                    runner.media.recordings.clear()
            for rec in runner.finished():
                self._ended(rec)
        elif media is not None and self.responder is not None and \
                self.responder.secure is not None:
            media.rearm()  # an SRTP echo stream may have started (its RTCP)
        if media is not None:
            media.flush_rtcp()

    def _ended(self, rec: CallRecord) -> None:
        self.counts.call_ended(rec)
        if self.tracer is not None:
            kept = self.tracer.finish(rec, self._epoch)
            if kept is not None:
                self._traces.append(kept)
        if self.admission is not None:
            self.admission.ended(rec.call_number)
        if self.transports is not None:
            self.transports.end_call(rec.call_id)  # per-call TCP/TLS: close its connection

    def _deadline(self) -> float | None:
        """The engine's earliest deadline besides the UA's; arms the start timer too."""
        when = INF
        if self.runner is not None and (d := self.runner.next_deadline()) is not None:
            when = d
        release = self.admission.next_release() if self.admission is not None else None
        starter = self._starter
        if starter is not None:
            if release is None:
                starter.disarm()
            elif starter.armed != self.t0 + release:
                starter.arm(self.t0 + release)
        elif release is not None:
            when = min(when, release)
        if not self._snapshot_waits(release):
            when = min(when, self._next_snapshot)
        if self._stop_at is not None:
            when = min(when, self._stop_at)
        return None if when == INF else when

    def _tick(self, now: float) -> None:
        """The loop's timer: the UA's timers ran; now the calls', starts, snapshot, end."""
        pump = self.pump
        assert pump is not None and self._done is not None
        if self.runner is not None:
            self.runner.handle_timers(now)
            self._start_due_calls(now)
        pump.flush()
        if now >= self._next_snapshot and not self._snapshot_waits(self._next_release()):
            self._snapshot(now)
        if self._finished(now):
            pump.stop_timer()
            if not self._done.done():
                self._done.set_result(None)
            return
        pump.rearm()

    # ------------------------------------------------------------------ starting calls

    def _next_release(self) -> float | None:
        return self.admission.next_release() if self.admission is not None else None

    def _snapshot_waits(self, release: float | None) -> bool:
        """Whether the due snapshot waits for a call start coming first (SNAPSHOT_SLACK)."""
        return (self._starter is not None and release is not None
                and release < self._next_snapshot + SNAPSHOT_SLACK)

    def _on_start_timer(self) -> None:
        """The precise timer: a call start is due (released here, not on the loop's tick)."""
        if self._done is None or self._done.done() or self.pump is None:
            return
        self._start_due_calls(self.now())
        now = self.now()
        release = self._next_release()
        if now >= self._next_snapshot and not self._snapshot_waits(release):
            self._snapshot(now)
        if self._gc_paced:
            collect_owed(release is None or release - self.now() >= GC_SLACK)
        self.pump.rearm()

    def _start_due_calls(self, now: float) -> None:
        admission, runner, pump = self.admission, self.runner, self.pump
        if admission is None or runner is None or pump is None:
            return
        counts, cap = self.counts, self.config.concurrent
        for _ in range(10_000):
            start = admission.take(now)
            if start is None:
                return
            counts.call_started(start.intended, now)
            if runner.active >= cap:
                self._ended(counts.overload(start.number, start.intended, now, runner.active))
                continue
            rec = runner.start_call(start.number, start.intended, self.now(), start.user).record
            pump.flush()
            if rec.messages and rec.messages[0][1] == "out":
                admission.follow_wire(start.intended, rec.actual_start)

    def _finished(self, now: float) -> bool:
        if self._stop_at is not None and now >= self._stop_at:
            if self.runner is not None and self.pump is not None:
                failure = Failure.ABORTED if self._aborted else Failure.IN_FLIGHT
                self.runner.stop_all(now, Result.IN_FLIGHT, failure)
                self.pump.flush()
            return True
        if self.pacer is None:
            return False
        if self._stopping:
            return self.runner is None or self.runner.active == 0
        return self.pacer.peek() is None and (self.runner is None or self.runner.active == 0)

    # ------------------------------------------------------------------ output

    def _snapshot(self, now: float) -> None:
        ua, pump = self.ua, self.pump
        assert ua is not None and pump is not None
        admission = self.admission
        scheduling = admission is not None and admission.scheduling()
        rate = admission.pacer.rate_at(now) if admission is not None and scheduling else 0.0
        wall = time.monotonic()
        snap = self.counts.snapshot(
            now, active=self.active, retransmissions=ua.retransmissions, cpu=_cpu(),
            wall=wall, loop_lag=pump.lag, target_rate=rate,
            codes=self.runner.take_codes() if self.runner is not None else {})
        if self.runner is not None and self.media is not None:
            totals, streams = self.runner.media.packet_totals()
            pumps = [self.media, *(m for m, _ in self.media_more)]
            snap.media = self.counts.media.snapshot(
                totals, streams, stray=sum(m.table.foreign for m in pumps))
            snap.media["send"] = merge_send_figures([m.take_send_figures() for m in pumps])
        conns = self.sources.take_connection_figures() if self.sources is not None else (
            self.transports.take_connection_figures() if self.transports else None)
        if conns is not None:
            snap.connections = connection_snapshot(conns.counts(), conns.durations_us,
                                                   conns.failures)
        pump.lag = 0.0
        self._next_snapshot = now + self.config.snapshot_every
        self._flush()
        self.on_snapshot(snap)

    def _flush(self, final: bool = False) -> None:
        if final and self.ua is not None and self.pump is not None and (
                self.counts.owes(self.ua.retransmissions)
                or (self.runner is not None and self.runner.codes_received)):
            self._next_snapshot = self.now()
            self._snapshot(self.now())
            return
        if self._traces:  # before the records: a worker acknowledged for a batch has sent
            traces = self._traces  # the traces of its calls
            self._traces = []
            self.on_traces(traces)
        batch = self.counts.take_batch()
        if batch:
            self.on_records(batch)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
