"""A worker: connects to the coordinator, runs its share of the run on an Engine.

Local workers are started by the coordinator (:mod:`sipload.cluster.child`); remote
ones run ``sipload worker --connect tcp://HOST:PORT --keys DIR``.  A worker
streams record batches with each snapshot (every second) and a heartbeat every
second; the coordinator's Stop/SetShare messages steer it.

A second's records (up to a few thousand) are not encoded in one go: that held the
loop 3-8 ms at each snapshot, and the call starts due meanwhile left late.  They are
packed a few at a time (:data:`PIECE` of work at most, and never into the
:data:`START_MARGIN` before the next call start is due), each piece in its own turn
of the loop, and go out concatenated in :attr:`Records.packed`, about
:data:`MESSAGE_BYTES` per message, each message sent in a turn of its own and not
just before a call start.  The worker keeps
its own loop: control and SIP share one asyncio event loop (uvloop when
installed).

A worker says when its loop is held (the coordinator loses a worker silent for 3 s,
and a run that lost one should say where it was): a heartbeat sent more than
:data:`HEARTBEAT_LATE` after it was due is reported on stderr (and one that took that
long to hand to ZeroMQ: a blocked channel, not a held loop), and a loop that has not
turned for :data:`STALL_DUMP` has every thread's stack written to stderr
(:func:`faulthandler.dump_traceback_later`, re-armed at each heartbeat; its C thread
writes even while the loop holds the interpreter).  A task of the worker's own that
fails (sending records, control, heartbeat) is not swallowed: its traceback goes to
stderr, the engine aborts, and the coordinator gets :class:`Failed`.

A worker never outlives its coordinator's control: when the channel reports the
connection lost (the coordinator was killed, or its heartbeats stopped for
:data:`~sipload.cluster.channel.HEARTBEAT_TIMEOUT` seconds), the engine aborts at
once (no new call, no further message), and the worker exits with status 3.
Local workers are also killed by the kernel with their coordinator
(:mod:`sipload.cluster.lifeline`).
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import signal
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from sipload import __version__
from sipload._native import describe as describe_build
from sipload.cluster.channel import ChannelError, Dealer, WorkerAuth
from sipload.cluster.messages import (
    Done,
    Failed,
    Go,
    Heartbeat,
    Hello,
    Message,
    Ready,
    Records,
    Release,
    Released,
    SetShare,
    Snapshot,
    Stop,
    Welcome,
    extra_numbers,
    pack_record,
)
from sipload.cluster.sources import share
from sipload.engine import Engine, EngineConfig
from sipload.exitcodes import EXIT_CANNOT_RUN, EXIT_OK, EXIT_USAGE
from sipload.scenario.inject import parse_injection
from sipload.scenario.loader import ScenarioError, load_text, warm_media
from sipload.sip.servers import Server
from sipload.sip.transaction import TimerConfig
from sipload.stats.interval import Snapshot as EngineSnapshot
from sipload.stats.traces import DEFAULT_LIMIT
from sipload.transport.loop import new_event_loop, tune_gc
from sipload.transport.stream import IDLE_TIMEOUT, MAX_MESSAGE, StreamLimits

PIECE = 0.0001
"""Seconds of record packing at most in one turn of the loop (a start waits that long
at worst)."""

START_MARGIN = 0.00005
"""Packing stops this long before the next call start is due (it runs after it)."""

BATCH = 2000
"""The most records in one Records message."""

MESSAGE_BYTES = 48 * 1024
"""A Records message carries about this many bytes of packed records at most (~100
records of a basic call): one of a second's 2,000 records (~0.9 MB) cost 1-1.5 ms to
build and hand to ZeroMQ, so they go in pieces, each in a turn of the loop of its own."""

SEND_MARGIN = 0.0003
"""A Records message is not sent when a call start is due within this (it waits for the
start to go first)."""

HEARTBEAT_EVERY = 1.0
"""Seconds between two heartbeats."""

HEARTBEAT_LATE = 1.0
"""A heartbeat leaving this many seconds after it was due is reported on stderr."""

STALL_DUMP = 2.5
"""Seconds without a heartbeat after which every thread's stack is written to stderr
(before the coordinator's 3 s: what held the loop, shown in the run's output)."""

SEND_WAIT = 0.002
"""The longest a Records message waits for a start due within :data:`SEND_MARGIN`."""


def source_address(host: str, port: int) -> str:
    """The local address this host's routes use to reach ``host`` (no packet is sent):
    a worker on another host calls the target from there, not from loopback."""
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            return str(s.getsockname()[0])
    except OSError:
        return "0.0.0.0"


def engine_limits(d: Any) -> dict[str, Any]:
    """EngineConfig keyword arguments from a plan's ``limits`` map (``--max-message``,
    ``--max-connections``, ``--idle-timeout``, ``--max-dialogs``)."""
    d = d if isinstance(d, dict) else {}
    return {"stream_limits": StreamLimits(int(d.get("max_message", MAX_MESSAGE)),
                                          int(d.get("max_connections", 0)),
                                          float(d.get("idle_timeout", IDLE_TIMEOUT))),
            "max_dialogs": int(d.get("max_dialogs", 0))}


def start_phase(plan: dict[str, Any], welcome: Welcome) -> float:
    """Where in the run's first 1/R this worker's uniform schedule starts: worker k of the
    W expected at R calls/s starts k/R after Go, so the run's starts interleave 1/R apart
    rather than leaving W at a time every W/R.  Poisson arrivals need no phase (independent
    Poisson streams add up to one), nor the closed model, nor a worker joining mid-run."""
    workers = int(plan.get("workers", 1))
    rate = float(plan.get("rate") or 0.0)
    if (plan.get("arrival", "uniform") != "uniform" or welcome.users or rate <= 0
            or not 0 < welcome.worker < workers):
        return 0.0
    return welcome.worker / rate


def engine_config(plan: dict[str, Any], welcome: Welcome) -> EngineConfig:
    """Build this worker's EngineConfig from the plan and its share."""
    text = plan.get("scenario_text")
    program = None
    injection = None
    if plan.get("inject_text"):
        injection = parse_injection(str(plan["inject_text"]), str(plan.get("inject_path", "")))
    if text:
        program = load_text(str(text), str(plan.get("scenario_path", "<scenario>")),
                            csv_fields=injection.fields if injection else 0,
                            checked=True)  # the coordinator validated it
        warm_media(program)
    target = plan.get("target")
    rows = (plan.get("located") or {}).get("servers") or []
    first = (str(rows[0][1]), int(rows[0][2])) if rows else None  # where calls go first
    t = plan.get("timers") or {}
    mine = share(plan.get("source_shares") or [], welcome.worker)
    return EngineConfig(
        program=program,
        target=(str(target[0]), int(target[1])) if target else None,
        transport=str(plan.get("transport", "udp")),
        sources=mine,
        local_host=mine[0] if mine else str(plan.get("local_host", "127.0.0.1")) or (
            source_address(*first) if first else
            source_address(str(target[0]), int(target[1])) if target else "127.0.0.1"),
        local_port=int(plan.get("local_port", 0)),
        rate=max(welcome.rate, 1e-9), calls=welcome.calls,
        duration=plan.get("duration"), concurrent=int(plan.get("concurrent", 10_000)),
        users=welcome.users, first_user=welcome.worker * (welcome.users or 0),
        arrival=str(plan.get("arrival", "uniform")),
        phase=start_phase(plan, welcome),
        rate_increase=float(plan.get("rate_increase", 0.0)) / max(
            int(plan.get("workers", 1)), 1),
        rate_interval=float(plan.get("rate_interval", 0.0)),
        rate_max=(float(plan["rate_max"]) / max(int(plan.get("workers", 1)), 1))
        if plan.get("rate_max") else None,
        first_call=welcome.first_call, injection=injection, worker=welcome.worker,
        seed=(int(plan["seed"]) + welcome.worker) if plan.get("seed") is not None else None,
        timers=TimerConfig(float(t.get("t1", 0.5)), float(t.get("t2", 4.0)),
                           float(t.get("t4", 5.0))),
        reuse_port=bool(plan.get("reuse_port", False)),
        tls_insecure=bool(plan.get("tls_insecure", False)),
        tls_cadata=str(plan["tls_cadata"]) if plan.get("tls_cadata") else None,
        tls_resume=plan.get("tls_resumption", "on") != "off",
        connections=str(plan.get("connections") or "shared"),
        stop_grace=float(plan.get("stop_grace", 5.0)),
        **engine_limits(plan.get("limits")),
        trace=str(plan.get("trace", "none")),
        ws_path=str(plan.get("ws_path", "/")),
        located=str((plan.get("located") or {}).get("name", "")),
        servers=tuple(Server(str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), str(r[5]),
                             int(r[6]))
                      for r in (plan.get("located") or {}).get("servers", [])),
        trace_limit=int(plan.get("trace_limit", DEFAULT_LIMIT)),
    )


class WorkerProcess:
    """The control loop around one Engine."""

    def __init__(self, url: str, keys: Path | None = None,
                 auth: WorkerAuth | None = None) -> None:
        self.url = url
        self.keys = keys
        self.auth = auth
        self.dealer: Dealer | None = None
        self.engine: Engine | None = None
        self.worker = -1
        self.seq = 0
        self.records_sent = 0
        self.calls_total: int | None = None  #: the run's --calls
        self._extra_next = 0  #: the number of the next call taken over from a lost worker
        self._pending: deque[dict[str, Any]] = deque()  #: records not packed yet
        self._packed: list[bytes] = []  #: records packed, not sent yet
        self._pending_traces: list[dict[str, Any]] = []
        self._snapshots: list[EngineSnapshot] = []
        self._wake = asyncio.Event()

    async def run(self, hello_timeout: float = 30.0) -> int:
        try:
            self.dealer = Dealer(self.url, self.keys, self.auth)
        except ChannelError as e:
            print(f"sipload worker: {e}", file=sys.stderr)
            return EXIT_CANNOT_RUN
        try:
            return await self._run(hello_timeout)
        finally:
            self.dealer.close()

    async def _run(self, hello_timeout: float) -> int:
        dealer = self.dealer
        assert dealer is not None
        await dealer.send(Hello(__version__, os.getpid(), socket.gethostname(),
                                build=describe_build()))
        msg = await dealer.recv(hello_timeout)
        if not isinstance(msg, Welcome):
            why = (f": refused: {dealer.refused}" if dealer.refused else
                   ": the run is not taking workers" if isinstance(msg, Stop) else "")
            print(f"sipload worker: no welcome from {self.url}{why}", file=sys.stderr)
            return EXIT_CANNOT_RUN
        self.worker = msg.worker
        total = msg.plan.get("calls")
        self.calls_total = int(total) if isinstance(total, int) else None
        # calls taken over from others are numbered in this worker's own block, after
        # the calls it was welcomed with when those are in that block (a joiner's)
        self._extra_next = max(extra_numbers(self.calls_total or 0, msg.worker),
                               msg.first_call + (msg.calls or 0))
        try:
            cfg = engine_config(msg.plan, msg)
        except ScenarioError as e:
            await dealer.send(Failed(msg.worker, str(e)))
            return EXIT_USAGE
        engine = Engine(cfg, on_records=self._on_records, on_snapshot=self._on_snapshot,
                        on_traces=self._pending_traces.extend)
        self.engine = engine
        try:
            host, port = await engine.start()
        except OSError as e:
            await dealer.send(Failed(msg.worker, f"cannot bind: {e}"))
            return EXIT_CANNOT_RUN
        await dealer.send(Ready(msg.worker, host, port))
        # the coordinator may wait up to its start timeout for the other workers
        start_timeout = msg.plan.get("start_timeout")
        go_timeout = hello_timeout + (float(start_timeout) if isinstance(
            start_timeout, int | float) else 30.0)
        while True:
            go = await dealer.recv(go_timeout)
            if isinstance(go, Go):
                break
            if dealer.lost:
                return self._lost()
            if go is None or isinstance(go, Stop):
                return EXIT_OK
            await self._apply(go)  # a share changed before the start
        sender = self._task(self._sender(), "sending records")
        control = self._task(self._control(), "control")
        beat = self._task(self._heartbeat(), "heartbeat")
        try:
            await engine.run()
        finally:
            control.cancel()
            beat.cancel()
            self._wake.set()
            self._closing = True
            if dealer.lost:
                sender.cancel()  # it may wait for ever to send to no one
            await asyncio.gather(sender, return_exceptions=True)
        if dealer.lost:
            return self._lost()
        if self.failure:
            await dealer.send(Failed(self.worker, self.failure))
            return EXIT_CANNOT_RUN
        await self._send_pending()
        counts = engine.counts
        await dealer.send(Done(self.worker, counts.started, counts.succeeded, counts.failed,
                               counts.in_flight_at_stop, self.records_sent,
                               engine.retransmissions))
        return EXIT_OK

    _closing = False
    failure = ""  #: what failed in one of the worker's own tasks ("" while none has)

    def _task(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        task.add_done_callback(lambda t: self._task_done(t, what))
        return task

    def _task_done(self, task: asyncio.Task[None], what: str) -> None:
        """A task of the worker's own ended: if by an exception, say so and stop the load
        (module docstring)."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        assert exc is not None
        if not self.failure:
            self.failure = f"{what}: {exc!r}"
        print(f"sipload worker {self.worker}: {what} failed; aborting", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)
        if self.engine is not None:
            self.engine.abort()

    def _lost(self) -> int:
        assert self.dealer is not None
        print(f"sipload worker {self.worker}: {self.dealer.lost}; stopped", file=sys.stderr)
        return EXIT_CANNOT_RUN

    def _on_records(self, batch: list[dict[str, Any]]) -> None:
        self._pending.extend(batch)
        self._wake.set()

    def _on_snapshot(self, snap: EngineSnapshot) -> None:
        self._snapshots.append(snap)
        self._wake.set()

    def _pack_piece(self) -> None:
        """Pack pending records for at most :data:`PIECE` s, stopping short of the next
        call start (at least one record, so the packing always moves on)."""
        pending, packed = self._pending, self._packed
        starter = self.engine.starter if self.engine is not None else None
        clock = time.monotonic
        end = clock() + PIECE
        if starter is not None and starter.due - START_MARGIN < end:
            end = starter.due - START_MARGIN
        packed.append(pack_record(pending.popleft()))
        while pending and clock() < end:
            packed.append(pack_record(pending.popleft()))

    async def _pack_pending(self) -> None:
        """Pack the pending records a piece per turn of the loop (module docstring)."""
        while self._pending and not self._closing:
            self._pack_piece()
            await asyncio.sleep(0)

    async def _send_pending(self) -> None:
        """Send the records (packed now if they are not yet), the traces, then the
        snapshots: a snapshot follows the records of its interval.  Each message goes
        in a turn of the loop of its own, after a call start due within
        :data:`SEND_MARGIN` (module docstring)."""
        dealer = self.dealer
        assert dealer is not None
        while self._pending:  # the end of the run: no start left to wait for
            self._packed.append(pack_record(self._pending.popleft()))
        while self._packed or self._pending_traces:
            packed, n, size = self._packed, 0, 0
            while n < len(packed) and n < BATCH and (n == 0 or size < MESSAGE_BYTES):
                size += len(packed[n])
                n += 1
            batch = packed[:n]
            del packed[:n]
            traces = self._pending_traces[:200]  # at most 200 x 64 KiB in one message
            del self._pending_traces[:200]
            self.seq += 1
            self.records_sent += len(batch)
            started = self.engine.counts.started if self.engine is not None else 0
            await self._after_due_start()
            await dealer.send(Records(self.worker, self.seq, [], started, traces,
                                      b"".join(batch)))
        while self._snapshots:
            snap = self._snapshots.pop(0)
            await self._after_due_start()
            await dealer.send(Snapshot(self.worker, snap.to_dict()))

    async def _after_due_start(self) -> None:
        """Yield the loop, and while a call start is due within :data:`SEND_MARGIN` (for
        :data:`SEND_WAIT` at most), keep yielding until it has gone."""
        await asyncio.sleep(0)
        starter = self.engine.starter if self.engine is not None else None
        if starter is None or self._closing:
            return
        clock = time.monotonic
        give_up = clock() + SEND_WAIT
        while starter.due - clock() < SEND_MARGIN and clock() < give_up:
            await asyncio.sleep(0)

    async def _sender(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            await self._pack_pending()
            await self._send_pending()

    async def _control(self) -> None:
        dealer = self.dealer
        engine = self.engine
        assert dealer is not None and engine is not None
        while True:
            msg = await dealer.recv()
            if msg is None and dealer.lost:
                engine.abort()  # no coordinator: stop the load now
                return
            if isinstance(msg, Stop):
                if msg.abort:
                    engine.abort()
                else:
                    engine.request_stop(msg.grace)
            elif msg is not None:
                await self._apply(msg)

    async def _apply(self, msg: Message) -> None:
        """A change of share: more calls and a new rate, or calls given to a joiner."""
        dealer = self.dealer
        engine = self.engine
        assert dealer is not None and engine is not None
        if isinstance(msg, SetShare) and engine.starter is not None:
            if msg.extra_calls > 0 and self.calls_total is not None:
                engine.add_calls(msg.extra_calls, self._extra_next)
                self._extra_next += msg.extra_calls
            engine.set_rate(msg.rate)
        elif isinstance(msg, Release):
            # answered even when nothing is given: the coordinator waits for every answer
            await dealer.send(Released(self.worker, engine.release_calls(msg.calls)))

    async def _heartbeat(self) -> None:
        dealer = self.dealer
        engine = self.engine
        assert dealer is not None and engine is not None
        clock = time.monotonic
        due = clock()
        try:
            while True:
                late = clock() - due
                if late > HEARTBEAT_LATE:
                    print(f"sipload worker {self.worker}: a heartbeat {late:.1f} s late: "
                          "the event loop was held", file=sys.stderr)
                faulthandler.dump_traceback_later(STALL_DUMP, file=sys.stderr)
                snap = self._snapshots[-1] if self._snapshots else None
                began = clock()
                await dealer.send(Heartbeat(self.worker, engine.now(), engine.active,
                                            engine.counts.started, snap.cpu if snap else 0.0,
                                            snap.loop_lag_ms if snap else 0.0))
                took = clock() - began
                if took > HEARTBEAT_LATE:
                    print(f"sipload worker {self.worker}: a heartbeat took {took:.1f} s to "
                          "hand to ZeroMQ: the control channel was blocked", file=sys.stderr)
                due = clock() + HEARTBEAT_EVERY
                await asyncio.sleep(HEARTBEAT_EVERY)
        finally:
            faulthandler.cancel_dump_traceback_later()


def worker_main(url: str, keys: str | None = None, local: bool = False,
                auth: WorkerAuth | None = None, wait: float = 30.0) -> int:
    """Entry point of a worker process (local or remote).

    A local worker ignores SIGINT: a terminal's Ctrl-C reaches the coordinator's
    whole process group, and the coordinator stops its workers itself (grace
    period first, abort on a second Ctrl-C).  ``wait``: how long to wait for the
    coordinator's welcome (it may not be up yet: a container started beside it)."""
    if local:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop = new_event_loop()
    tune_gc()
    try:
        asyncio.set_event_loop(loop)
        proc = WorkerProcess(url, Path(keys) if keys else None, auth)
        return loop.run_until_complete(proc.run(hello_timeout=wait))
    finally:
        loop.close()
        asyncio.set_event_loop(None)
