"""The asyncio shell of a worker: sockets ↔ user agent ↔ scenario, on the one pump.

Theory of operation
===================

1. The one :class:`~sipload.pump.Pump` (shared with :class:`~sipload.runtime.UARuntime`)
   moves bytes between the transports and the sans-IO :class:`UserAgent` and re-arms
   one ``loop.call_at``; :class:`~sipload.engine.running.Running` owns it and its
   hooks: each UA event goes to the scenario :class:`Runner` (or the
   :class:`DefaultUAS`), and its deadlines are the runner's timers, the next call
   start, the next snapshot, the end of the run.
2. The engine assembles the parts (see :mod:`sipload.engine`) and is the face the
   worker controls: stop, abort, calls given and taken, the rate.  Calls are started
   by the :class:`~sipload.engine.starts.CallStarter`, the run ends as the
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
import time

from sipload.engine.config import EngineConfig, RecordSink, SnapshotSink, TraceSink
from sipload.engine.media import WorkerMedia
from sipload.engine.output import RunOutput
from sipload.engine.roles import build_responder, build_runner, build_ua
from sipload.engine.running import Running
from sipload.engine.sockets import SipSockets
from sipload.engine.starts import CallStarter
from sipload.engine.stopping import Drain
from sipload.pump import Pump
from sipload.scenario.interpreter import Runner
from sipload.transport import TransportSet
from sipload.ua.agent import UserAgent
from sipload.ua.responder import DefaultUAS


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
        self.runner: Runner | None = None
        self.responder: DefaultUAS | None = None
        self.media: WorkerMedia | None = None
        self.sockets: SipSockets | None = None
        self.running: Running | None = None  #: the run, once started
        self.pump: Pump | None = None  #: the running's
        self.starter: CallStarter | None = None  #: a UAC's call starts (the running's)

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
        if prog is None:
            self.responder = build_responder(cfg, ua, host, media)
        else:
            self.runner = build_runner(cfg, prog, ua, host, port, media, more, self.rng)
        run = self.running = Running(cfg, loop, self.t0, tp, socks, ua, self.runner,
                                     self.responder, media, self.output, self.drain, self.rng)
        self.pump, self.starter = run.pump, run.starter
        return self.address

    async def run(self) -> None:
        """Start (if needed) and run until every call is done or the run is stopped."""
        if self.loop is None:
            await self.start()
        run = self.running
        assert run is not None
        starter = self.starter
        if self.config.duration is not None and starter is None:
            self.drain.limit(self.config.duration)
        if starter is not None:
            starter.begin(self.now() + self.config.phase)
        run.pump.fire_now()
        try:
            await run.done
        finally:
            run.pump.close()
            if starter is not None:
                starter.close()
            run.close_output()
            if self.media is not None:
                self.media.close()
            if self.sockets is not None:
                await self.sockets.close()
            if self.transports is not None:
                await self.transports.close()

    # ------------------------------------------------------------------ the worker's controls

    def request_stop(self, grace: float | None = None) -> None:
        """Stop starting calls; calls in flight get ``grace`` seconds, then are recorded."""
        run = self.running
        if run is None or run.done.done():
            return
        if not self.drain.request(self.now(), self.config.stop_grace if grace is None
                                  else grace):
            self.abort()
            return
        if self.starter is not None:
            self.starter.admission.stopping = True
        run.pump.rearm()

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
        return self.running.active if self.running is not None else 0

    @property
    def retransmissions(self) -> int:
        return self.ua.retransmissions if self.ua is not None else 0
