"""The one pump between sockets and a sans-IO user agent, and its one loop timer.

Both shells of the UA are built on :class:`Pump`: :class:`~sipload.runtime.UARuntime`
(a program drives the UA's eXosip-like API) and :class:`~sipload.engine.Engine` (a
scenario drives many calls).  What differs between them is passed in as hooks.

Theory of operation
===================

1. The pump only moves bytes and re-arms one timer.  :meth:`Pump.flush` is the whole
   pump: write ``ua.outgoing()`` to the transports (each write returns its socket
   stamp; :attr:`on_sent` gets them, run-relative, per batch), hand every UA event to
   :attr:`deliver`, and repeat while either produced something (a delivered event may
   make the owner queue more messages: an ACK, a BYE).  Then :attr:`after` runs once,
   and the timer is re-armed.
2. It runs after every received message (:meth:`receive`) or every read batch of a
   UDP socket (:meth:`receive_batch`: each message goes into the UA, then one flush
   answers them all), every transport error (:meth:`error`), every timer, and
   whenever the owner calls it after API calls.  What one flush writes goes out in
   one call (:meth:`TransportSet.send_many`: ``sendmmsg`` for UDP, one stamp).
3. Times given to the UA are seconds on ``time.monotonic()`` less :attr:`t0` (the
   runtime uses 0: absolute monotonic seconds; the engine its start).  A received
   message goes in with its receive stamp (the kernel's, for UDP), never the loop's
   clock.  ``loop.time()`` shares ``CLOCK_MONOTONIC``'s epoch (asyncio and uvloop), so
   ``loop.call_at(t0 + when)`` arms a run-relative deadline.
4. One ``loop.call_at`` is armed at the earliest of ``ua.next_deadline()`` and the
   owner's :attr:`deadline` hook; it is replaced only when that instant moved.  A
   handle replaced after the loop had queued it is recognised by its token and ignored.
5. The loop's clock is coarse (uvloop: 1 ms), so a timer may fire a hair before its
   deadline.  It fires with ``now = max(armed, clock)``: what it was armed for is due
   (without this it would find nothing due, re-arm for the same instant, and spin).
   How late it fired is kept in :attr:`lag` (the owner reads and resets it).
6. On a timer the UA's timers run, then :attr:`tick` (the owner's timers; it calls
   :meth:`flush` itself) or, without one, :meth:`flush`.
7. Work due to the microsecond comes first: before each message read goes into the UA
   and before each event is delivered, :attr:`urgent` runs (the engine's call starter
   releases a start that came due while the loop was busy with a read, rather than
   after the whole read and what it caused).  It may flush itself (re-entering
   :meth:`flush`, which then delivers the events still queued, in order).
8. Transport failures become ``ua.transport_error(peer, now, reason)`` (with the
   Call-ID when only one call's connection failed); the UA turns them into events.
   Nothing here raises for the network.

Compiled by mypyc (sipload/_native.py): typed, no dataclass tricks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from sipload.transport import Peer, TransportSet
from sipload.ua.events import Event

INF = float("inf")

WAIT_MAX = 0.002
"""The longest :meth:`Pump.write_at` waits in all for its messages' instants."""


class SansIOAgent(Protocol):
    """What the pump needs of a user agent (:class:`~sipload.ua.agent.UserAgent`)."""

    def receive(self, data: bytes, peer: Peer, now: float, local: int = 0) -> None: ...
    def transport_error(self, peer: Peer, now: float, reason: str,
                        call_id: str = "") -> None: ...
    def handle_timers(self, now: float) -> None: ...
    def outgoing(self) -> list[tuple[bytes, Peer]]: ...
    def next_event(self) -> Event | None: ...
    def next_deadline(self) -> float | None: ...


#: ``(now, "in" | "out", peer, data, local)``: every message read or written, with its
#: stamp and the local address it went through (0 unless the UA has several).
WireTap = Callable[[float, str, Peer, bytes, int], None]

#: Writes bytes to a peer from one of several local addresses (an index): the send stamp.
SendFrom = Callable[[bytes, Peer, int], float]


class Pump:
    """Transports ↔ one UA, one loop timer (see the module docstring).

    Attributes:
        t0: ``time.monotonic()`` at the clock's zero (times given to the UA are relative).
        deliver: gets every UA event, in order.
        on_sent: gets the run-relative send stamps of each batch written (or None).
        tap: sees every message read or written (a wire trace), or None.
        after: runs once after each flush, before the timer is re-armed (or None).
        deadline: the owner's earliest deadline besides the UA's (or None).
        tick: runs the owner's timers on a timer, then flushes (or None: just flush).
        send_from: with several local addresses, writes each message from its own (the
            UA's ``outgoing_from``); None: every message goes out by ``transports``.
        closed: nothing is pumped any more (:meth:`close`).
        timer_off: the timer is not armed any more (:meth:`stop_timer`, :meth:`close`).
        lag: the most a timer fired after its deadline since the owner reset it.
        urgent: runs before each message read goes into the UA and before each event is
            delivered (rule 7), or None.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, transports: TransportSet,
                 ua: SansIOAgent, deliver: Callable[[Event], None], *, t0: float = 0.0,
                 on_sent: Callable[[list[float]], None] | None = None,
                 tap: WireTap | None = None, after: Callable[[], None] | None = None,
                 deadline: Callable[[], float | None] | None = None,
                 tick: Callable[[float], None] | None = None,
                 send_from: SendFrom | None = None,
                 outgoing_from: Callable[[], list[tuple[bytes, Peer, int]]] | None = None
                 ) -> None:
        self.loop = loop
        self.transports = transports
        self.ua = ua
        self.deliver = deliver
        self.t0 = t0
        self.on_sent = on_sent
        self.tap = tap
        self.after = after
        self.deadline = deadline
        self.tick = tick
        self.send_from = send_from
        self.outgoing_from = outgoing_from
        self.lag = 0.0
        self.urgent: Callable[[], None] | None = None
        self.closed = False
        self.timer_off = False
        self._handle: asyncio.TimerHandle | None = None
        self._armed = INF
        self._token = 0

    def now(self) -> float:
        """Seconds since :attr:`t0` on ``time.monotonic()`` (not the loop's cached clock)."""
        return time.monotonic() - self.t0

    # ------------------------------------------------------------------ the network's side

    def receive(self, data: bytes, peer: Peer, stamp: float, local: int = 0) -> None:
        """A message read at monotonic ``stamp`` (the transports' callback) on local
        address ``local`` (0 unless the UA has several: :attr:`send_from`)."""
        urgent = self.urgent
        if urgent is not None:
            urgent()
        now = stamp - self.t0
        tap = self.tap
        if tap is not None:
            tap(now, "in", peer, data, local)
        if local:
            self.ua.receive(data, peer, now, local)
        else:
            self.ua.receive(data, peer, now)
        self.flush()

    def receive_batch(self, batch: list[tuple[bytes, Peer, float]]) -> None:
        """Every datagram one read of a UDP socket got, in order (the transports'
        ``on_batch``): each goes into the UA, then one flush (rule 2)."""
        t0 = self.t0
        tap = self.tap
        ua = self.ua
        urgent = self.urgent
        for data, peer, stamp in batch:
            if urgent is not None:
                urgent()
            now = stamp - t0
            if tap is not None:
                tap(now, "in", peer, data, 0)
            ua.receive(data, peer, now)
        self.flush()

    def error(self, peer: Peer, reason: str) -> None:
        """A transport failure towards ``peer`` (the transports' callback)."""
        self.ua.transport_error(peer, self.now(), reason)
        self.flush()

    def call_error(self, peer: Peer, call_id: str, reason: str) -> None:
        """A failure of the connection of one call towards ``peer`` (per-call TCP/TLS)."""
        self.ua.transport_error(peer, self.now(), reason, call_id)
        self.flush()

    # ------------------------------------------------------------------ the pump

    def flush(self) -> None:
        """Write what the UA queued, deliver its events, run :attr:`after`, re-arm (rule 1)."""
        if self.closed:
            return
        ua = self.ua
        send_many = self.transports.send_many
        deliver = self.deliver
        on_sent = self.on_sent
        tap = self.tap
        t0 = self.t0
        urgent = self.urgent
        for _ in range(1000):
            multi = self.send_from is not None
            out = self._write_from() if multi else ua.outgoing()
            if out and not multi:
                # the stamps taken when they were written, made run-relative
                stamps = [s - t0 for s in send_many(out)]
                if tap is not None:
                    for i, (data, peer) in enumerate(out):
                        tap(stamps[i], "out", peer, data, 0)
                if on_sent is not None:
                    on_sent(stamps)
            n = 0
            while True:
                if urgent is not None:  # it may flush itself: then it takes the events
                    urgent()
                ev = ua.next_event()
                if ev is None:
                    break
                n += 1
                deliver(ev)
            if not out and not n:
                break
        after = self.after
        if after is not None:
            after()
        self.rearm()

    def write_at(self, whens: list[float]) -> float:
        """Write the UA's queue, its message ``i`` not before ``time.monotonic()``
        ``whens[i]`` (a busy wait, of :data:`WAIT_MAX` at most in all), the stamps handed
        over together; then :meth:`flush`.  The timed messages are the queue's last ones
        (messages queued before them leave at once, first); a queue shorter than
        ``whens``, or messages leaving from several addresses, are written at once.  (Call starts,
        :meth:`CallStarter.start_due <sipload.engine.starts.CallStarter.start_due>`, and
        those built ahead, :meth:`CallStarter.start_cluster
        <sipload.engine.starts.CallStarter.start_cluster>`.)

        Returns how long the first message waited for its instant (negative: how late it
        was ready), or 0.0 when nothing waited."""
        if self.closed:
            return 0.0
        waited = 0.0
        out = self.ua.outgoing() if self.send_from is None else []
        if out:
            send_many = self.transports.send_many
            t0 = self.t0
            timed = len(whens)
            if timed and len(out) >= timed:
                # what was queued before these messages (an ACK an event just queued,
                # when the start came due between two events) leaves at once
                head = len(out) - timed
                raw: list[float] = send_many(out[:head]) if head else []
                clock = time.monotonic
                ready = clock()
                give_up = ready + WAIT_MAX
                waited = whens[0] - ready
                for item, when in zip(out[head:], whens, strict=True):
                    if when > give_up:
                        when = give_up
                    while clock() < when:
                        pass
                    raw.extend(send_many([item]))
            else:
                raw = send_many(out)
            stamps = [s - t0 for s in raw]
            tap = self.tap
            if tap is not None:
                for i, (data, peer) in enumerate(out):
                    tap(stamps[i], "out", peer, data, 0)
            if self.on_sent is not None:
                self.on_sent(stamps)
        self.flush()
        return waited

    def _write_from(self) -> list[tuple[bytes, Peer]]:
        """Rule 1's write, each message from its own local address (:attr:`send_from`);
        returns what was written (for the loop's test of progress)."""
        take, send = self.outgoing_from, self.send_from
        assert take is not None and send is not None
        out = take()
        if not out:
            return []
        t0, tap = self.t0, self.tap
        stamps: list[float] = []
        for data, peer, local in out:
            sent = send(data, peer, local) - t0
            stamps.append(sent)
            if tap is not None:
                tap(sent, "out", peer, data, local)
        if self.on_sent is not None:
            self.on_sent(stamps)
        return [(data, peer) for data, peer, _ in out]

    # ------------------------------------------------------------------ the one timer

    @property
    def armed(self) -> float | None:
        """The instant the loop's timer is armed for (run-relative), or None."""
        return None if self._armed == INF else self._armed

    def rearm(self) -> None:
        """Arm the loop's timer at the earliest deadline, when that instant moved (rule 4)."""
        if self.timer_off:
            return
        when = INF
        d = self.ua.next_deadline()
        if d is not None:
            when = d
        hook = self.deadline
        if hook is not None:
            d = hook()
            if d is not None and d < when:
                when = d
        if when == self._armed and (self._handle is not None or when == INF):
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed = when
        if when != INF:
            self._token += 1
            self._handle = self.loop.call_at(self.t0 + when, self._fire, self._token)

    def _fire(self, token: int) -> None:
        if token != self._token or self.timer_off:
            return  # a handle replaced after it was queued to run: not ours any more
        self._handle = None
        armed = self._armed
        self._armed = INF
        now = self.now()
        if now > armed:
            self.lag = max(self.lag, now - armed)
        self._run(max(now, armed))  # rule 5

    def fire_now(self) -> None:
        """Run the timers at the clock's ``now`` (the owner kicking the loop)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed = INF
        self._run(self.now())

    def _run(self, now: float) -> None:
        self.ua.handle_timers(now)
        tick = self.tick
        if tick is not None:
            tick(now)
        else:
            self.flush()

    def stop_timer(self) -> None:
        """Disarm the timer for good (messages are still pumped)."""
        self.timer_off = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed = INF

    def close(self) -> None:
        """Disarm the timer; nothing is written or delivered any more."""
        self.closed = True
        self.timer_off = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed = INF
