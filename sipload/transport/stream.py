"""SIP over TCP and TLS: listeners, outgoing connections, framing by Content-Length.

Theory of operation
===================

1. A :class:`StreamTransport` owns every connection of one kind (``"tcp"`` or
   ``"tls"``): the ones accepted by its listeners and the ones it opened.  It
   keeps them in one table keyed by remote (host, port), so a response goes
   back on the connection its request came in on (RFC 3261 §18.2.2) and
   requests to the same remote share one connection (§18.1.1).
2. An outgoing connection is in the table from the first :meth:`send`, before
   it is connected: writes queue on it while the name is resolved and the TCP
   (and TLS) handshake runs, and go out in order once it is up.  It is entered
   under the name it was asked for and under the address it resolved to, and
   its messages are reported with the address (the peer's real one).
3. Each connection cuts its byte stream with
   :class:`~sipload.sip.parser.StreamFramer`: complete messages go to
   ``on_message``; each CRLFCRLF keep-alive is answered with one CRLF
   (RFC 5626 §4.4.1); a stream that cannot be framed is dropped.
4. Writes are bounded: when asyncio's buffer passes :data:`HIGH_WATER` the
   transport pauses us and writes queue here; past :data:`MAX_PENDING` queued
   bytes the peer is not reading, and the connection is dropped.
5. Limits keep a hostile peer from taking memory or sockets: a message past
   ``max_message`` bytes (default :data:`MAX_MESSAGE`) is refused as soon as its
   header section is read, answered 413 (or 513 for a header section that does
   not end) where it was a request, and its connection closed — nothing past the
   limit is ever buffered.  Past ``max_connections`` accepted connections a new
   one is answered 503 with Retry-After on its first request and closed.  A
   connection with no traffic either way for ``idle_timeout`` seconds is closed.
   Out of file descriptors, a listener closes the connections it cannot take
   and logs one line per interval (:mod:`sipload.transport.exhaustion`).
6. Nothing here raises into the loop for a network failure.  A refused or
   timed-out connect, a TLS handshake failure, a reset, an unframeable stream
   or a full buffer ends the connection and calls ``on_error(peer, reason)``
   once for every name the connection had — from the loop, never from inside
   :meth:`send`.  A clean close by the peer is not an error; the next send
   opens a new connection.
7. Per-call mode (``per_call=True``, ``--connections per-call``): a message we send
   to a peer that has no accepted connection of ours goes on a connection of its own
   call, keyed by (Call-ID, host, port) — the Call-ID read from the bytes
   (:func:`~sipload.sip.peek.call_id_of`) — and :meth:`StreamTransport.end_call` closes
   them when the call is over.  Failures of such a connection go to ``on_call_error``
   with the Call-ID, so they fail that call's transactions only.  Shared mode (the
   default) keeps the one connection per remote of rule 1.
8. TLS client handshakes are counted in :attr:`StreamTransport.figures`
   (:mod:`sipload.transport.tlsclient`): time at the socket, resumed or not, failures
   by reason; the context resumes sessions where it is a ``LoadContext``.
9. Stamps: every message framed from one read goes up with ``time.monotonic()``
   read when the bytes came out of the socket (asyncio's stream transports
   hide the kernel's timestamps); :meth:`StreamTransport.send` returns
   ``time.monotonic()`` read just before the write (for a connection still
   opening, the time it was queued).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from sipload.sip.build import salvage_response
from sipload.sip.errors import ParseError
from sipload.sip.parser import MAX_STREAM_MESSAGE, StreamFramer
from sipload.sip.peek import call_id_of
from sipload.transport.exhaustion import guard_accept
from sipload.transport.tlsclient import LoadContext, TlsFigures, failure_reason, handshake_done
from sipload.transport.udp import OnMessage, Peer

HIGH_WATER = 256 * 1024
"""asyncio's write buffer size at which a connection pauses writing."""

MAX_PENDING = 4 * 1024 * 1024
"""Bytes a connection may queue (while connecting or paused) before it is dropped."""

CONNECT_TIMEOUT = 10.0
"""Seconds for name resolution, TCP connect and TLS handshake together."""

CLOSE_TIMEOUT = 1.0
"""Seconds :meth:`StreamTransport.close` waits for graceful closes before aborting."""

MAX_MESSAGE = MAX_STREAM_MESSAGE
"""The default largest message on a stream (64 KiB, as other SIP stacks)."""

IDLE_TIMEOUT = 300.0
"""Default seconds a connection may carry nothing (either way) before it is closed."""

PING_INTERVAL = 20.0
"""WebSocket: default seconds of silence after which a ping is sent (and the time allowed
for its pong).  Here, not in :mod:`sipload.transport.websocket`, so that a run without
WebSocket never imports the websockets library (~30 ms of each process's start)."""

DEFAULT_PATH = "/"
"""WebSocket: the request path of an upgrade when none is given."""

RETRY_AFTER = 5
"""Seconds in the Retry-After of a 503 for a connection past ``max_connections``."""

Address = tuple[str, int]

STREAM_KINDS = ("tcp", "tls", "ws", "wss")
"""The connection-oriented transports (WebSocket ones in :mod:`sipload.transport.websocket`)."""

SECURE_KINDS = ("tls", "wss")
"""The stream transports that run over TLS."""


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """What one peer may take of a stream transport (see rule 5 above)."""

    max_message: int = MAX_MESSAGE  #: the largest message accepted, in bytes
    max_connections: int = 0  #: most connections accepted at once (0: no cap)
    idle_timeout: float = IDLE_TIMEOUT  #: seconds without traffic before closing (0: never)


def describe(exc: BaseException) -> str:
    """One line for an exception, e.g. ``ConnectionRefusedError: [Errno 111] ...``."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection (see the module docstring)."""

    def __init__(self, owner: StreamTransport, *, accepted: bool = False) -> None:
        self._owner = owner
        self._transport: asyncio.Transport | None = None
        self._framer = StreamFramer(owner.max_message)
        self.accepted = accepted  #: accepted by a listener (not opened by us)
        self.busy = False  #: accepted past max_connections: answer 503 and close
        self.last_active = 0.0  #: loop time of the last byte in or out
        self._pings = 0
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self._paused = False
        self._lost: asyncio.Future[None] | None = None
        self.dead = False  #: closed or failed: no longer in the owner's table
        self.names: set[Address] = set()  #: the keys it has in the owner's table
        self.peer: Peer = (owner.kind, "", 0)  #: the remote address, once connected
        self.local: tuple[str, int] = ("", 0)  #: the local address, once connected
        self.asked: Address = ("", 0)  #: opened by us: the (host, port) it was asked for
        self.call = ""  #: per-call mode: the Call-ID it carries ("" for a shared one)
        self._tls: ssl.SSLObject | None = None  #: a TLS client's, until its session is kept

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._lost = asyncio.get_running_loop().create_future()
        transport.set_write_buffer_limits(high=HIGH_WATER)
        addr = transport.get_extra_info("peername")
        self.peer = (self._owner.kind, addr[0], addr[1])
        self.last_active = self._owner.clock()
        local = transport.get_extra_info("sockname")
        if local:
            self.local = (local[0], local[1])
        if not self.accepted and self._owner.kind in SECURE_KINDS:
            took, offered, resumed, self._tls = handshake_done(transport)
            self._owner.figures.handshake(took, offered, resumed)
        if self.dead:  # closed while the handshake ran
            transport.abort()
            return
        if self.call:
            self._owner.track(self)  # in the per-call table since its first send
            self._drain()
            return
        if self.accepted:
            self._owner.accepted_total += 1
        if self.accepted and self._owner.over_capacity():
            self.busy = True
            self._owner.refused_busy += 1
            self._owner.track(self)
            return  # not in the table: nothing is sent to it but the 503
        self._owner.attach(self, (addr[0], addr[1]))
        self._drain()

    def data_received(self, data: bytes) -> None:
        stamp = time.monotonic()
        self.last_active = self._owner.clock()
        if self._tls is not None:  # a TLS 1.3 server's tickets have come with the first read
            ctx = self._tls.context
            if isinstance(ctx, LoadContext):
                ctx.keep_session(self._tls)
            self._tls = None
        try:
            messages = self._framer.feed(data)
        except ParseError as e:
            self._refuse(self._framer.refused, e.status, e.reason)
            return
        if self.busy:
            if messages:
                self._refuse(messages[0], 503, "too many connections", RETRY_AFTER)
            return
        pings = self._framer.pings
        if pings != self._pings:
            self.write(b"\r\n" * (pings - self._pings))
            self._pings = pings
        for message in messages:
            if self.dead:
                break
            self._owner.on_message(message, self.peer, stamp)

    def eof_received(self) -> bool | None:
        return None  # half-closed by the peer: close our side too

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._drain()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        if not self.dead:
            self.dead = True
            kind = self._owner.kind
            reason = None if exc is None else f"{kind}: connection lost ({describe(exc)})"
            if exc is not None and not self.accepted and kind in SECURE_KINDS:
                self._owner.figures.failed(failure_reason(exc))
            self._owner.detach(self, reason)
        self._owner.forget(self)

    def _refuse(self, head: bytes, status: int, reason: str, retry_after: int = -1) -> None:
        """Answer a refused request (if it was one) and close: the answer goes out, and
        nothing more is read."""
        kind = self._owner.kind
        if status in (413, 513):
            self._owner.refused_oversize += 1
        answer = salvage_response(head, status, reason, retry_after) if head else None
        if answer is None or self._transport is None:
            self.fail(f"{kind}: cannot frame the stream ({reason})")
            return
        self._transport.write(answer)
        self.dead = True
        self.take_pending()
        self._owner.detach(self, f"{kind}: refused with {status} ({reason})")
        self._transport.pause_reading()
        self._transport.close()  # after the answer is written

    # ---------------------------------------------------------------- used by the owner

    def write(self, data: bytes) -> None:
        """Send now, or queue while connecting or paused (dropped past MAX_PENDING)."""
        if self.dead:
            return
        if self._transport is not None and not self._paused and not self._pending:
            self.last_active = self._owner.clock()
            self._transport.write(data)
            return
        if self._pending_bytes + len(data) > MAX_PENDING:
            self.fail(f"{self._owner.kind}: write buffer full ({self._pending_bytes} bytes queued)")
            return
        self._pending.append(data)
        self._pending_bytes += len(data)

    def take_pending(self) -> list[bytes]:
        """Hand over what is queued (to another connection to the same address)."""
        out = list(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        return out

    def _drain(self) -> None:
        while self._pending and self._transport is not None and not self._paused:
            data = self._pending.popleft()
            self._pending_bytes -= len(data)
            self._transport.write(data)  # may call pause_writing and end the loop

    def fail(self, reason: str) -> None:
        """Drop the connection at once and report ``reason`` for each of its names."""
        if self.dead:
            return
        self.dead = True
        self.take_pending()
        if self._transport is not None:
            self._transport.abort()
        self._owner.detach(self, reason)

    def close(self) -> None:
        """Close gracefully (queued writes are lost), reporting nothing."""
        if not self.dead:
            self.dead = True
            self._owner.detach(self, None)
        self.take_pending()
        if self._transport is not None:
            self._transport.close()

    @property
    def connected(self) -> bool:
        """Whether asyncio holds a transport for it (connected, not yet lost)."""
        return self._transport is not None

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def wait_lost(self) -> None:
        if self._lost is not None:
            await self._lost


class StreamTransport:
    """All TCP (or all TLS) listeners and connections of one worker.

    Args:
        kind: ``"tcp"`` or ``"tls"``.
        on_message: called with each framed message, its peer and its receive stamp.
        on_error: called with a peer and a reason when a connection fails.
        resolve: turns a host name into an address literal (cached by the caller).
        client_context: makes the SSL context for outgoing TLS (called once per
            connect, so it may be cached by the caller); unused for TCP.
        connect_timeout: seconds allowed for resolve + connect + handshake.
        loop: the loop (default: the running one), for use before it runs.
        limits: the largest message, most accepted connections, idle timeout.
        per_call: open a connection per call (rule 7) instead of one per remote.
        on_call_error: called with a peer, a Call-ID and a reason when a per-call
            connection fails (default: ``on_error`` without the Call-ID).
    """

    def __init__(
        self,
        kind: str,
        on_message: OnMessage,
        on_error: Callable[[Peer, str], None],
        resolve: Callable[[str], Awaitable[str]],
        *,
        client_context: Callable[[], ssl.SSLContext] | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        loop: asyncio.AbstractEventLoop | None = None,
        limits: StreamLimits | None = None,
        per_call: bool = False,
        on_call_error: Callable[[Peer, str, str], None] | None = None,
    ) -> None:
        if kind not in STREAM_KINDS:
            raise ValueError(f"not a stream transport: {kind!r}")
        self.kind = kind
        self.on_message = on_message
        self._on_error = on_error
        self._resolve = resolve
        self._client_context = client_context
        self._connect_timeout = connect_timeout
        self._loop = loop or asyncio.get_running_loop()
        self._conns: dict[Address, StreamConnection] = {}
        self._live: set[StreamConnection] = set()
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        limits = limits or StreamLimits()
        self.max_message = limits.max_message
        self.max_connections = limits.max_connections
        self.idle_timeout = limits.idle_timeout
        self.clock = self._loop.time
        self._idle_handle: asyncio.TimerHandle | None = None
        self.refused_oversize = 0  #: messages refused for their size (413/513)
        self.refused_busy = 0  #: connections answered 503 past max_connections
        self.idle_closed = 0  #: connections closed for idleness
        self.accepted_total = 0  #: connections accepted by the listeners (TLS: handshake done)
        self.per_call = per_call
        self._on_call_error = on_call_error
        self._calls: dict[str, dict[Address, StreamConnection]] = {}
        self.figures = TlsFigures()  #: client connections, handshakes, failures (rule 8)
        #: the local address connections we open are bound to ("" : the system's choice)
        self.source_host = ""

    def new_connection(self, *, accepted: bool = False) -> StreamConnection:
        """A connection of this transport's kind (a subclass frames WebSocket)."""
        return StreamConnection(self, accepted=accepted)

    def over_capacity(self) -> bool:
        """Whether max_connections accepted connections are open already."""
        if not self.max_connections:
            return False
        accepted = sum(1 for c in self._live if c.accepted and not c.busy and not c.dead)
        return accepted >= self.max_connections  # the new one is not in the table yet

    def track(self, conn: StreamConnection) -> None:
        """Keep ``conn`` (in no table) among those closed at :meth:`close` and swept."""
        self._live.add(conn)
        self.arm_idle()

    def arm_idle(self) -> None:
        """Sweep for idle connections every quarter of the idle timeout while any is open."""
        if self._idle_handle is None and self.idle_timeout > 0:
            every = max(self.idle_timeout / 4, 0.05)
            self._idle_handle = self._loop.call_later(every, self._sweep_idle)

    def _sweep_idle(self) -> None:
        self._idle_handle = None
        now = self._loop.time()
        for conn in list(self._live):
            if conn.connected and now - conn.last_active > self.idle_timeout:
                self.idle_closed += 1
                conn.close()
        if self._live:
            self.arm_idle()

    async def listen(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
    ) -> Address:
        """Accept connections on host:port (0: ephemeral); returns the bound address.

        Raises:
            ValueError: a TLS listener without ``ssl_context``.
            OSError: the address cannot be bound.
        """
        if self.kind in SECURE_KINDS and ssl_context is None:
            raise ValueError(f"a {self.kind.upper()} listener needs a server ssl_context "
                             "(see transport.tls)")
        guard_accept(self._loop)  # out of descriptors: refuse politely, log once a while
        server = await self._loop.create_server(
            lambda: self.new_connection(accepted=True),
            host,
            port,
            ssl=ssl_context if self.kind in SECURE_KINDS else None,
            reuse_address=True,
            reuse_port=reuse_port or None,
            backlog=1024,
        )
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        return (sockname[0], sockname[1])

    def send(self, data: bytes, host: str, port: int) -> float:
        """Write on the connection to (host, port), opening one if there is none.

        Returns:
            The send stamp (``time.monotonic()`` just before the write).
        """
        conn = self._conns.get((host, port))
        if self.per_call and (conn is None or not conn.accepted):
            call = call_id_of(data)
            if call is not None:
                return self._send_call(data, host, port, call)
        if conn is None:
            conn = self.new_connection()
            conn.asked = (host, port)
            self.attach(conn, (host, port))
            self._start_connect(conn, host, port)
        stamp = time.monotonic()
        conn.write(data)
        return stamp

    def _send_call(self, data: bytes, host: str, port: int, call: str) -> float:
        """Per-call mode: write on the call's own connection to (host, port) (rule 7)."""
        conns = self._calls.get(call)
        conn = conns.get((host, port)) if conns is not None else None
        if conn is None:
            conn = self.new_connection()
            conn.asked = (host, port)
            conn.call = call
            if conns is None:
                conns = self._calls[call] = {}
            conns[(host, port)] = conn
            self._live.add(conn)
            self.arm_idle()
            self._start_connect(conn, host, port)
        stamp = time.monotonic()
        conn.write(data)
        return stamp

    def _start_connect(self, conn: StreamConnection, host: str, port: int) -> None:
        """Open ``conn`` to (host, port) in the background; writes queue until it is up."""
        task = self._loop.create_task(self._connect(conn, host, port))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def end_call(self, call: str) -> None:
        """Per-call mode: the call is over; close its connections (queued writes go first)."""
        conns = self._calls.pop(call, None)
        if conns:
            for conn in conns.values():
                conn.close()

    async def _connect(self, conn: StreamConnection, host: str, port: int) -> None:
        self.figures.opened += 1
        secure = self.kind in SECURE_KINDS
        # the handshake has its own timeout (the loop's): the outer one is resolve + TCP
        outer = self._connect_timeout * (2 if secure else 1)
        try:
            async with asyncio.timeout(outer):
                addr = await self._resolve(host)
                if conn.dead:
                    return  # failed (buffer full) or closed while resolving
                if not conn.call:
                    other = self._conns.get((addr, port))
                    if other is not None and other is not conn:
                        # Already connected to that address (under another name): use it.
                        self._merge(conn, other)
                        return
                    self.attach(conn, (addr, port))
                if secure:
                    assert self._client_context is not None, "TLS without a client context"
                    await self._loop.create_connection(
                        lambda: conn, addr, port, ssl=self._client_context(),
                        server_hostname=host, ssl_handshake_timeout=self._connect_timeout,
                        local_addr=(self.source_host, 0) if self.source_host else None)
                else:
                    await self._loop.create_connection(
                        lambda: conn, addr, port,
                        local_addr=(self.source_host, 0) if self.source_host else None)
        except asyncio.CancelledError:
            conn.close()
            raise
        except Exception as exc:  # refused, unreachable, timeout, handshake, resolution
            why = failure_reason(exc)
            if secure:
                self.figures.failed(why)
                conn.fail(f"{self.kind}: {why.replace('_', ' ')}: cannot connect to "
                          f"{host}:{port} ({describe(exc)})")
            else:
                conn.fail(f"{self.kind}: cannot connect to {host}:{port} ({describe(exc)})")

    def _merge(self, conn: StreamConnection, other: StreamConnection) -> None:
        pending = conn.take_pending()
        for name in conn.names:
            self._conns[name] = other
            other.names.add(name)
        conn.names.clear()
        conn.dead = True
        self._live.discard(conn)
        for data in pending:
            other.write(data)

    # ---------------------------------------------------------------- the table

    def attach(self, conn: StreamConnection, name: Address) -> None:
        """Enter ``conn`` in the table under ``name``."""
        self._conns[name] = conn
        conn.names.add(name)
        self._live.add(conn)
        self.arm_idle()

    def detach(self, conn: StreamConnection, reason: str | None) -> None:
        """Remove ``conn`` from the table; report ``reason`` for each of its names
        (a per-call connection: for its call only)."""
        if conn.call:
            self._detach_call(conn, reason)
            return
        for name in conn.names:
            if self._conns.get(name) is conn:
                del self._conns[name]
            if reason is not None:
                self._loop.call_soon(self._on_error, (self.kind, name[0], name[1]), reason)
        if conn.peer[1] and reason is not None and (conn.peer[1], conn.peer[2]) not in conn.names:
            self._loop.call_soon(self._on_error, conn.peer, reason)
        conn.names.clear()
        if not conn.connected:
            self._live.discard(conn)

    def _detach_call(self, conn: StreamConnection, reason: str | None) -> None:
        conns = self._calls.get(conn.call)
        if conns is not None and conns.get(conn.asked) is conn:
            del conns[conn.asked]
            if not conns:
                del self._calls[conn.call]
        if reason is not None:
            peer = (self.kind, conn.asked[0], conn.asked[1])
            if self._on_call_error is not None:
                self._loop.call_soon(self._on_call_error, peer, conn.call, reason)
            else:
                self._loop.call_soon(self._on_error, peer, reason)
        if not conn.connected:
            self._live.discard(conn)

    def forget(self, conn: StreamConnection) -> None:
        """``conn`` is closed for good: nothing left to wait for at :meth:`close`."""
        self._live.discard(conn)

    @property
    def open_connections(self) -> int:
        """Connections open now (accepted and opened, connected or connecting)."""
        return sum(1 for c in self._live if not c.dead)

    def connection_to(self, host: str, port: int) -> StreamConnection | None:
        """The live connection entered under (host, port), if any."""
        return self._conns.get((host, port))

    @property
    def listening(self) -> list[Address]:
        return [
            (s.getsockname()[0], s.getsockname()[1]) for srv in self._servers for s in srv.sockets
        ]

    async def close(self) -> None:
        """Stop listening, close every connection, wait (bounded) until they are gone."""
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        conns = list(self._live)
        self._live.clear()
        for conn in conns:
            conn.close()
        waits = [asyncio.ensure_future(c.wait_lost()) for c in conns]
        if waits:
            _, slow = await asyncio.wait(waits, timeout=CLOSE_TIMEOUT)
            if slow:
                for conn in conns:
                    conn.abort()
                await asyncio.wait(slow, timeout=CLOSE_TIMEOUT)
                for w in slow:
                    w.cancel()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
