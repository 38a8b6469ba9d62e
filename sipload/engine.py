"""The asyncio shell of a worker: sockets ↔ user agent ↔ scenario, one timer.

The engine moves bytes between the transports and the sans-IO
:class:`UserAgent`, hands UA events to the scenario :class:`Runner` (or to the
:class:`DefaultUAS`), starts calls at the :class:`Pacer`'s intended times, and
re-arms a single ``loop.call_at`` for the earliest deadline of all of them.
Every second it hands the finished records and a snapshot (counts, health,
latency histograms) to its sink.  Times given to the core are seconds since
the engine started (``now``), so records carry run-relative times.

Clocks.  Every time that becomes a measurement is a socket stamp: a message
goes into the UA with its receive stamp (the kernel's, for UDP), and after
the UA's queue is written the runner gets each message's send stamp
(:meth:`Runner.stamp_sent`).  ``now`` for timers is ``time.monotonic()``
(never the loop's cached millisecond clock).  Call starts are released by a
:class:`~sipload.transport.hrtimer.PreciseTimer` (``timerfd``) at their
intended time, not on the loop's 1 ms tick; the loop's timer serves the rest.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import resource
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sipload.media.table import MediaTable
from sipload.mediapump import MediaPump, write_recordings
from sipload.pacing import Pacer
from sipload.scenario.inject import Injection
from sipload.scenario.interpreter import RunContext, Runner
from sipload.scenario.model import Program
from sipload.sip.transaction import TimerConfig
from sipload.stats.histograms import MarkHistograms
from sipload.stats.records import CallRecord, Failure, Result
from sipload.stats.traces import DEFAULT_LIMIT, TraceKeeper, Tracer
from sipload.transport import StreamLimits, TransportSet
from sipload.transport.hrtimer import PreciseTimer, precise_timer
from sipload.transport.rtp import bind_pair
from sipload.transport.tls import client_context
from sipload.ua.agent import UAConfig, UserAgent
from sipload.ua.ids import IdGenerator
from sipload.ua.responder import DefaultUAS
from sipload.ua.state import Peer

LATE_AFTER = 0.010
"""A call that starts more than this after its intended time counts as late."""

LEAD_MAX = 0.002
"""The most a call is released before its intended time, to cover waking up and building
its first message: the lead follows the wire (each start moves it by a fifth of how late
or early its INVITE was written), so starts leave at their intended time on average."""

GC_SLACK = 0.004
"""While calls are being started, the garbage collector runs only right after a start
with at least this long before the next (a collection of the older generations takes
milliseconds: run by the interpreter whenever it liked, it made every few-hundredth start
late by 2 ms)."""

GC_FORCE = 4
"""... unless this many young collections are owed (starts too dense to leave the slack)."""

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
    tls_server: ssl.SSLContext | None = None
    snapshot_every: float = 1.0
    stop_grace: float = 5.0
    stream_limits: StreamLimits = field(default_factory=StreamLimits)
    max_dialogs: int = 0  #: calls answered at once before a new INVITE gets 503 (0: no cap)
    trace: str = "none"  #: keep the wire messages of "failed", "all" or "none" of the calls
    trace_limit: int = DEFAULT_LIMIT  #: traced calls per failure reason ("failed")


@dataclass(slots=True)
class Snapshot:
    """One second of one worker (see the run directory's intervals.jsonl)."""

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 6), "worker": self.worker, "started": self.started,
            "succeeded": self.succeeded, "failed": self.failed, "active": self.active,
            "late": self.late, "dropped": self.dropped,
            "retransmissions": self.retransmissions, "loop_lag_ms": round(self.loop_lag_ms, 3),
            "cpu": round(self.cpu, 4), "target_rate": self.target_rate,
            "histograms": self.histograms, "failures": self.failures, "codes": self.codes,
        }


RecordSink = Callable[[list[dict[str, Any]]], None]
TraceSink = Callable[[list[dict[str, Any]]], None]
SnapshotSink = Callable[[Snapshot], None]


class Engine:
    """One worker's event loop (see the module docstring)."""

    def __init__(self, config: EngineConfig, *, on_records: RecordSink | None = None,
                 on_snapshot: SnapshotSink | None = None,
                 on_traces: TraceSink | None = None) -> None:
        self.config = config
        self.on_records = on_records or (lambda _: None)
        self.on_traces = on_traces or (lambda _: None)
        self.tracer: Tracer | None = None  #: wire traces of a UAC run (stats.traces)
        self._traces: list[dict[str, Any]] = []
        self._epoch = 0.0  #: Unix time at the engine's clock zero (for pcap stamps)
        self.on_snapshot = on_snapshot or (lambda _: None)
        self.rng = random.Random(config.seed)
        self.t0 = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.transports: TransportSet | None = None
        self.ua: UserAgent | None = None
        self.runner: Runner | None = None
        self.responder: DefaultUAS | None = None
        self.media: MediaPump | None = None
        self.media_port = 6000
        self.pacer: Pacer | None = None
        self.address: tuple[str, int] = (config.local_host, config.local_port)
        self._handle: asyncio.TimerHandle | None = None
        self._starter: PreciseTimer | None = None  #: releases call starts (timerfd)
        self._lead = 0.0  #: release calls this early: the time to build a first message
        self._gc_paced = False  #: the engine runs the collector itself (see GC_SLACK)
        self._armed = float("inf")
        self._token = 0
        self._done: asyncio.Future[None] | None = None
        self._batch: list[dict[str, Any]] = []
        self._stopping = False
        self._stop_at: float | None = None
        self._aborted = False
        # counters: totals and this interval
        self.started = 0
        self.succeeded = 0
        self.failed = 0
        self.in_flight_at_stop = 0
        self.late = 0
        self.dropped = 0
        self._i_started = self._i_succeeded = self._i_failed = 0
        self._i_late = self._i_dropped = 0
        self._i_retrans_base = 0
        self._i_failures: dict[str, int] = {}
        self._hist = MarkHistograms()
        self._lag = 0.0
        self._next_snapshot = 0.0
        self._cpu_base = 0.0
        self._wall_base = 0.0
        self._free_users: deque[int] = deque()  #: closed model: users between calls
        self._user_of: dict[int, int] = {}  #: call number -> the user placing it
        self._blocks: list[tuple[int, int]] = []  #: (first call index, its number): extra calls

    # ------------------------------------------------------------------ lifecycle

    def now(self) -> float:
        """Seconds since the engine started, on ``time.monotonic()`` (not the loop's clock)."""
        return time.monotonic() - self.t0

    def _start_media(self, host: str, echo_all: bool) -> None:
        """Bind the worker's RTP/RTCP pair and start its media shell."""
        assert self.loop is not None
        rtp, rtcp = bind_pair(host)
        self.media_port = rtp.address[1]
        mono0 = time.monotonic() - (self.loop.time() - self.t0)
        table = MediaTable(time.monotonic() - mono0, time.time() - time.monotonic(),
                           lambda: self.rng.getrandbits(32),
                           f"sipload-{self.config.worker}@{host}")
        table.echo_all = echo_all
        self.media = MediaPump(table, rtp, rtcp, mono0)
        self.media.start()

    async def start(self) -> tuple[str, int]:
        """Bind the socket, build the UA; returns the bound address."""
        cfg = self.config
        self.loop = asyncio.get_running_loop()
        # loop.time() and time.monotonic() share CLOCK_MONOTONIC's epoch (asyncio and
        # uvloop), so loop.call_at(t0 + when) arms run-relative deadlines.
        self.t0 = time.monotonic()
        tls = client_context(insecure=cfg.tls_insecure) if cfg.transport == "tls" else None
        self.transports = TransportSet(self._on_message, self._on_error, tls_client_context=tls,
                                       stream_limits=cfg.stream_limits)
        host, port = await self.transports.listen(
            cfg.transport, cfg.local_host, cfg.local_port, ssl_context=cfg.tls_server,
            reuse_port=cfg.reuse_port)
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
        self.ua = UserAgent(ua_cfg, IdGenerator(f"w{cfg.worker}{os.getpid():x}x"))
        if prog is None:
            self.responder = DefaultUAS(self.ua, media_ip=host, media_port=self.media_port)
        else:
            target = cfg.target or ("127.0.0.1", 5060)
            ctx = RunContext(host, port, target[0], target[1], cfg.transport,
                             worker=cfg.worker, media_ip=host, media_port=self.media_port)
            self.runner = Runner(prog, self.ua, ctx, self.rng, cfg.injection)
            if self.media is not None:
                self.runner.media.attach(self.media.table)
            self.runner.call_number_base = cfg.first_call
            if prog.role == "uac":
                self.pacer = Pacer(
                    cfg.rate, calls=cfg.calls, duration=cfg.duration, arrival=cfg.arrival,
                    rng=self.rng, increase=cfg.rate_increase, interval=cfg.rate_interval,
                    rate_max=cfg.rate_max)
                if cfg.users:
                    self._free_users.extend(range(cfg.first_user, cfg.first_user + cfg.users))
                if cfg.trace != "none":
                    tp = self.transports
                    self.tracer = Tracer(TraceKeeper(cfg.trace, cfg.trace_limit),
                                         self.runner.call_number_of, tp.local_address)
                    self._epoch = time.time() - self.now()
                self._starter = precise_timer(self.loop, self._on_start_timer)
                self.runner.stamp_sends = True
                if self._starter is not None and gc.isenabled():
                    gc.disable()  # collections move to the gaps between starts (GC_SLACK)
                    self._gc_paced = True
        self._cpu_base = _cpu()
        self._wall_base = time.monotonic()
        self._next_snapshot = cfg.snapshot_every
        self._done = self.loop.create_future()
        self._rearm()
        return self.address

    async def run(self) -> None:
        """Start (if needed) and run until every call is done or the run is stopped."""
        if self.loop is None:
            await self.start()
        assert self._done is not None
        if self.config.duration is not None and self.pacer is None:
            self._stop_at = self.config.duration
        if self.pacer is not None and self.pacer.scheduled == 0:
            self.pacer.begin(self.now())  # the schedule starts when calling does, not at bind
        self._on_timer()
        try:
            await self._done
        finally:
            if self._handle is not None:
                self._handle.cancel()
            if self._starter is not None:
                self._starter.close()
            if self._gc_paced:
                self._gc_paced = False
                gc.enable()
            self._flush(final=True)
            if self.media is not None:
                self.media.close()
            if self.transports is not None:
                await self.transports.close()

    def request_stop(self, grace: float | None = None) -> None:
        """Stop starting calls; calls in flight get ``grace`` seconds, then are recorded."""
        if self.loop is None or self._done is None or self._done.done():
            return
        if self._stopping:
            self.abort()
            return
        self._stopping = True
        g = self.config.stop_grace if grace is None else grace
        self._stop_at = self.now() + g
        self._rearm()

    def abort(self) -> None:
        """Stop at once: calls in flight are recorded as such."""
        self._aborted = True
        self._stop_at = self.now() if self.loop is not None else 0.0
        self._rearm()

    def add_calls(self, n: int, first_number: int) -> None:
        """``n`` more calls to start (a lost worker's), numbered from ``first_number``."""
        pacer = self.pacer
        if pacer is None or pacer.calls is None or n <= 0:
            return
        self._blocks.append((pacer.calls, first_number))
        pacer.calls += n
        self._rearm()

    def release_calls(self, n: int) -> int:
        """Give up to ``n`` calls not yet started to another worker (one joining the
        run); returns how many were given: they will never be started here."""
        pacer = self.pacer
        if pacer is None or pacer.calls is None or n <= 0:
            return 0
        given = min(n, max(0, pacer.calls - pacer.scheduled))
        pacer.calls -= given
        self._rearm()
        return given

    def call_number(self, index: int) -> int:
        """The number of the ``index``-th call this engine starts (from 0)."""
        number, at = self.config.first_call, 0
        for start, first in self._blocks:
            if index >= start:
                number, at = first, start
        return number + index - at

    def set_rate(self, rate: float) -> None:
        if self.pacer is not None and self.loop is not None:
            self.pacer.set_rate(rate, self.now())
            self._rearm()

    @property
    def active(self) -> int:
        if self.runner is not None:
            return self.runner.active
        return self.ua.call_count() if self.ua is not None else 0

    # ------------------------------------------------------------------ pumping

    def _on_message(self, data: bytes, peer: Peer, stamp: float) -> None:
        ua = self.ua
        if ua is None:
            return
        now = stamp - self.t0  # the receive stamp (the kernel's, for UDP), not the loop's clock
        tracer = self.tracer
        if tracer is not None:
            tp = self.transports
            assert tp is not None
            tracer.message(now, "in", peer[0], tp.local_address(peer), (peer[1], peer[2]), data)
        ua.receive(data, peer, now)
        self._pump()

    def _on_error(self, peer: Peer, reason: str) -> None:
        if self.ua is not None:
            self.ua.transport_error(peer, self.now(), reason)
            self._pump()

    def _pump(self) -> None:
        ua = self.ua
        tp = self.transports
        assert ua is not None and tp is not None
        runner = self.runner
        responder = self.responder
        tracer = self.tracer
        t0 = self.t0
        for _ in range(1000):
            out = ua.outgoing()
            if out:
                stamps: list[float] = []
                for data, peer in out:
                    sent = tp.send(data, peer) - t0  # the stamp taken when it was written
                    stamps.append(sent)
                    if tracer is not None:
                        tracer.message(sent, "out", peer[0], tp.local_address(peer),
                                       (tp.literal(peer[1]), peer[2]), data)
                if runner is not None:
                    runner.stamp_sent(stamps)
            n = 0
            while (ev := ua.next_event()) is not None:
                n += 1
                # ev.time: the stamp of the message that caused it, or the timer's now
                if runner is not None:
                    runner.on_event(ev, ev.time)
                elif responder is not None:
                    responder.on_event(ev, ev.time)
            if not out and not n:
                break
        if runner is not None:
            if self.media is not None:
                runner.media_flush(self.now())
                self.media.rearm()
                if runner.media.recordings:
                    write_recordings(runner.media.recordings, self.config.worker)
                    runner.media.recordings.clear()
            for rec in runner.finished():
                self._account(rec)
        if self.media is not None:
            self.media.flush_rtcp()
        self._rearm()

    def _account(self, rec: CallRecord) -> None:
        # every mark a call reached counts, whatever the call's end (a call that failed
        # at its BYE was still answered); the report says so
        for mark, value in rec.marks.items():
            self._hist.record(mark, value)
        if rec.result == Result.SUCCESS:
            self.succeeded += 1
            self._i_succeeded += 1
        elif rec.result == Result.FAILED:
            self.failed += 1
            self._i_failed += 1
            self._i_failures[rec.failure] = self._i_failures.get(rec.failure, 0) + 1
        else:
            self.in_flight_at_stop += 1
        rec.worker = self.config.worker
        self._batch.append(rec.to_dict())
        if self.tracer is not None:
            kept = self.tracer.finish(rec, self._epoch)
            if kept is not None:
                self._traces.append(kept)
        user = self._user_of.pop(rec.call_number, None)
        if user is not None and not self._stopping:
            self._free_users.append(user)

    # ------------------------------------------------------------------ the one timer

    def _rearm(self) -> None:
        loop = self.loop
        if loop is None or self._done is None or self._done.done():
            return
        candidates = []
        if self.ua is not None and (d := self.ua.next_deadline()) is not None:
            candidates.append(d)
        if self.runner is not None and (d := self.runner.next_deadline()) is not None:
            candidates.append(d)
        nxt = self._next_release()
        starter = self._starter
        if starter is not None:
            if nxt is None:
                starter.disarm()
            elif starter.armed != self.t0 + nxt:
                starter.arm(self.t0 + nxt)
        elif nxt is not None:
            candidates.append(nxt)
        if not self._snapshot_waits(nxt):
            candidates.append(self._next_snapshot)
        if self._stop_at is not None:
            candidates.append(self._stop_at)
        when = min(candidates, default=float("inf"))  # inf: only the start timer is armed
        if when == self._armed and self._handle is not None:
            return
        if when == float("inf"):
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            self._armed = when
            return
        if self._handle is not None:
            self._handle.cancel()
        self._armed = when
        self._token += 1
        self._handle = loop.call_at(self.t0 + when, self._on_timer, self._token)

    def _on_timer(self, token: int = -1) -> None:
        if token != self._token and token != -1:
            return  # a handle replaced after it was queued to run: not ours any more
        if self._handle is not None and token == -1:
            self._handle.cancel()  # run() kicking the loop: the armed handle is replaced
        self._handle = None
        armed = self._armed if token != -1 else float("inf")
        self._armed = float("inf")
        now = self.now()
        if armed != float("inf"):
            if now > armed:
                self._lag = max(self._lag, now - armed)
            # The loop's clock is coarse (uvloop: 1 ms): a timer may fire a hair before
            # its deadline.  What it was armed for is due; without this it would find
            # nothing due, re-arm for the same instant, and spin.
            now = max(now, armed)
        ua = self.ua
        assert ua is not None
        ua.handle_timers(now)
        if self.runner is not None:
            self.runner.handle_timers(now)
            self._start_due_calls(now)
        self._pump()
        if now >= self._next_snapshot and not self._snapshot_waits(self._next_release()):
            self._snapshot(now)
        if self._finished(now):
            assert self._done is not None
            if not self._done.done():
                self._done.set_result(None)
            return
        self._rearm()

    def _next_release(self) -> float | None:
        """When the next call start is to be released (its intended time less the lead)."""
        pacer = self.pacer
        if pacer is None or self._stopping:
            return None
        nxt = pacer.peek()
        if nxt is None or (self.config.users and not self._free_users):
            return None
        return nxt - self._lead

    def _snapshot_waits(self, release: float | None) -> bool:
        """Whether the due snapshot waits for a call start coming first (SNAPSHOT_SLACK)."""
        return (self._starter is not None and release is not None
                and release < self._next_snapshot + SNAPSHOT_SLACK)

    def _on_start_timer(self) -> None:
        """The precise timer: a call start is due (released here, not on the loop's tick)."""
        if self._done is None or self._done.done():
            return
        self._start_due_calls(self.now())
        now = self.now()
        release = self._next_release()
        if now >= self._next_snapshot and not self._snapshot_waits(release):
            self._snapshot(now)
        if self._gc_paced:
            self._collect(release is None or release - self.now() >= GC_SLACK)
        self._rearm()

    def _collect(self, slack: bool) -> None:
        """The collections the interpreter would have run by now (its own thresholds),
        when there is slack before the next start, or when too many are owed."""
        threshold0, threshold1, threshold2 = gc.get_threshold()
        count0, count1, count2 = gc.get_count()
        if count0 < threshold0 or (not slack and count0 < GC_FORCE * threshold0):
            return
        if count1 + 1 < threshold1:
            gc.collect(0)
        elif count2 + 1 < threshold2:
            gc.collect(1)
        else:
            gc.collect(2)

    def _start_due_calls(self, now: float) -> None:
        pacer = self.pacer
        runner = self.runner
        if pacer is None or runner is None or self._stopping:
            return
        cfg = self.config
        budget = 10_000
        while budget:
            nxt = pacer.peek()
            if nxt is None or nxt - self._lead > now:
                return
            user: int | None = None
            if cfg.users:
                if not self._free_users:
                    return
                user = self._free_users.popleft()
            budget -= 1
            intended = pacer.take()
            number = self.call_number(pacer.scheduled - 1)
            if user is not None:
                self._user_of[number] = user
            self.started += 1
            self._i_started += 1
            if now - intended > LATE_AFTER:
                self.late += 1
                self._i_late += 1
            if runner.active >= cfg.concurrent:
                self.dropped += 1
                self._i_dropped += 1
                rec = CallRecord(number, intended, now, now, worker=cfg.worker)
                rec.fail(Failure.OVERLOAD, f"{runner.active} calls at the concurrency cap", now)
                self._account(rec)
                continue
            released = self.now()
            rec = runner.start_call(number, intended, released, user).record
            self._pump()
            if rec.messages and rec.messages[0][1] == "out":
                # the lead follows the wire: INVITE written minus intended, towards 0
                late = rec.actual_start - intended
                self._lead = min(max(self._lead + 0.2 * late, 0.0), LEAD_MAX)

    def _finished(self, now: float) -> bool:
        if self._stop_at is not None and now >= self._stop_at:
            if self.runner is not None:
                failure = Failure.ABORTED if self._aborted else Failure.IN_FLIGHT
                self.runner.stop_all(now, Result.IN_FLIGHT, failure)
                self._pump()
            return True
        if self.pacer is None:
            return False
        if self._stopping:
            return self.runner is None or self.runner.active == 0
        return self.pacer.peek() is None and (self.runner is None or self.runner.active == 0)

    # ------------------------------------------------------------------ output

    def _snapshot(self, now: float) -> None:
        ua = self.ua
        assert ua is not None
        wall = time.monotonic()
        cpu_now = _cpu()
        span = max(wall - self._wall_base, 1e-6)
        cpu = (cpu_now - self._cpu_base) / span
        self._cpu_base, self._wall_base = cpu_now, wall
        pacer = self.pacer
        scheduling = pacer is not None and not self._stopping and pacer.peek() is not None
        rate = pacer.rate_at(now) if pacer is not None and scheduling else 0.0
        snap = Snapshot(
            t=now, worker=self.config.worker, started=self._i_started,
            succeeded=self._i_succeeded, failed=self._i_failed, active=self.active,
            late=self._i_late, dropped=self._i_dropped,
            retransmissions=ua.retransmissions - self._i_retrans_base,
            loop_lag_ms=self._lag * 1000.0, cpu=cpu, target_rate=rate,
            histograms=self._hist.encode(), failures=self._i_failures,
            codes=self.runner.take_codes() if self.runner is not None else {},
        )
        self._i_retrans_base = ua.retransmissions
        self._i_started = self._i_succeeded = self._i_failed = 0
        self._i_late = self._i_dropped = 0
        self._i_failures = {}
        self._hist = MarkHistograms()
        self._lag = 0.0
        self._next_snapshot = now + self.config.snapshot_every
        self._flush()
        self.on_snapshot(snap)

    def _flush(self, final: bool = False) -> None:
        if final and self.ua is not None and (
                self._i_started or self._i_succeeded or self._i_failed or self._batch
                or self.ua.retransmissions != self._i_retrans_base
                or (self.runner is not None and self.runner.codes_received)):
            self._next_snapshot = self.now()
            self._snapshot(self.now())
            return
        if self._traces:  # before the records: a worker acknowledged for a batch has sent
            traces = self._traces  # the traces of its calls
            self._traces = []
            self.on_traces(traces)
        if self._batch:
            batch = self._batch
            self._batch = []
            self.on_records(batch)

    @property
    def retransmissions(self) -> int:
        return self.ua.retransmissions if self.ua is not None else 0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
