"""Sockets for the SIP shell: UDP, TCP, TLS, WS and WSS endpoints behind one :class:`TransportSet`.

The transports move bytes and nothing else: a datagram or a framed stream
message goes up with its peer ``(transport, host, port)``; bytes for a peer go
down and out on the right socket.  No SIP parsing beyond framing happens here.

Theory of operation
===================

1. :meth:`TransportSet.send` never blocks and never raises for a network
   problem.  It routes by ``peer[0]``: ``"udp"`` goes out of the UDP socket of
   the destination's address family; ``"tcp"``/``"tls"`` reuse the connection
   the peer came in on or the one opened to it, else open one (writes queue
   until it is up).
2. Host names are resolved with the loop's ``getaddrinfo``, once: the first
   answer is cached for the life of the set (a load run does not follow DNS
   changes).  Address literals (``"127.0.0.1"``, ``"::1"``, ``"[::1]"``) skip
   resolution.
3. Failures — ICMP port unreachable, refused or reset connections, TLS
   handshake failures, names that do not resolve, no socket for the address
   family — come to ``on_error(peer, reason)``, always from the loop and never
   from inside :meth:`send`, with the peer as it was given to :meth:`send`
   where it can be known (see :mod:`sipload.transport.udp` for the UDP
   caveat).
4. Messages from the network come to ``on_message(data, peer, stamp)`` with
   the peer's address literal and port, and the receive stamp
   (``time.monotonic()`` seconds: the kernel's receive timestamp for UDP,
   the read for TCP/TLS).  :meth:`TransportSet.send` returns the send stamp,
   read just before the bytes are written.  Measurements use these stamps,
   never the loop's clock.
5. :meth:`TransportSet.send_many` sends a list of messages in order, the UDP ones
   to address literals batched per socket (``sendmmsg``, one stamp per batch: see
   :mod:`sipload.transport.udp`, rule 8); with ``on_batch``, each read of the UDP
   sockets comes up as one list (the pump answers a whole read in one flush).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any

from sipload.transport.stream import (
    CONNECT_TIMEOUT,
    DEFAULT_PATH,
    PING_INTERVAL,
    StreamLimits,
    StreamTransport,
    describe,
)
from sipload.transport.tlsclient import TlsFigures, load_context
from sipload.transport.udp import OnBatch, OnMessage, Peer, open_udp
from sipload.transport.udproutes import UdpRoutes, address_literal, family_of

__all__ = ["OnBatch", "OnMessage", "Peer", "StreamLimits", "TlsFigures", "TransportSet",
           "address_literal"]

TRANSPORTS = ("udp", "tcp", "tls", "ws", "wss")

CONNECTIONS = ("shared", "per-call")
"""How TCP and TLS connections are used: one per remote (shared by the calls), or one
per call (see :mod:`sipload.transport.stream`, rule 7)."""


class TransportSet:
    """The UDP, TCP and TLS endpoints of one user agent (see the module docstring).

    Args:
        on_message: called with each received message, its peer and its receive stamp.
        on_error: called with a peer and a reason when sending to it failed.
        tls_client_context: the context for outgoing TLS; by default
            :func:`sipload.transport.tls.client_context` (verification on).
        connect_timeout: seconds allowed for resolve + connect + TLS handshake.
        loop: the loop to use; by default the running loop at the first call
            (pass it when :meth:`send` will be called while the loop is not running).
        stream_limits: what one TCP/TLS peer may take (message size, connections,
            idle time); by default 64 KiB, no connection cap, 300 s.
        ws_path: the path of the WebSocket upgrades we send (``ws``/``wss``).
        ws_ping: seconds of silence before a WebSocket ping (0: none).
        connections: ``"shared"`` or ``"per-call"`` (:data:`CONNECTIONS`), for TCP and TLS.
        on_call_error: called with a peer, a Call-ID and a reason when a per-call
            connection fails (default: ``on_error``, without the Call-ID).
        source_host: the local address TCP/TLS/WS connections we open are bound to
            ("": the system's choice); UDP leaves from the socket :meth:`listen` bound.
        on_batch: gets each read of a UDP socket as one list, instead of ``on_message``
            per datagram (stream transports still call ``on_message``).
    """

    send_many: Callable[[list[tuple[bytes, Peer]]], list[float]]
    """Send each ``(data, peer)`` of a list in order (rule 5): the send stamp of each.

    Consecutive UDP messages to address literals leave from their socket in one batch
    (one stamp, read before it); anything else goes through :meth:`send`.
    (:meth:`UdpRoutes.send_many <sipload.transport.udproutes.UdpRoutes.send_many>`.)
    """

    def __init__(
        self,
        on_message: OnMessage,
        on_error: Callable[[Peer, str], None],
        *,
        tls_client_context: ssl.SSLContext | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        loop: asyncio.AbstractEventLoop | None = None,
        stream_limits: StreamLimits | None = None,
        ws_path: str = DEFAULT_PATH,
        ws_ping: float = PING_INTERVAL,
        connections: str = "shared",
        on_call_error: Callable[[Peer, str, str], None] | None = None,
        source_host: str = "",
        on_batch: OnBatch | None = None,
    ) -> None:
        if connections not in CONNECTIONS:
            raise ValueError(f"connections: {connections!r} is not shared or per-call")
        self.per_call = connections == "per-call"
        self._on_call_error = on_call_error
        self._source_host = source_host
        self._stream_limits = stream_limits
        self._ws_path = ws_path
        self._ws_ping = ws_ping
        self._on_message = on_message
        self._on_batch = on_batch
        self._on_error = on_error
        self._tls_client_context = tls_client_context
        self._connect_timeout = connect_timeout
        self._loop = loop
        self._routes = UdpRoutes(self.send, self._error)
        self._udp = self._routes.endpoints
        self._streams: dict[str, StreamTransport] = {}
        self._dns: dict[str, str] = {}
        self._dns_pending: dict[str, asyncio.Future[str]] = {}
        self._dns_waiting: dict[str, list[tuple[bytes, Peer]]] = {}
        self._udp_names = self._routes.names
        #: compiled (:mod:`sipload.transport.udproutes`): the pump's flush runs no
        #: interpreted frame on its way to the socket
        self.send_many = self._routes.send_many
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # ---------------------------------------------------------------- listening

    async def listen(
        self,
        transport: str,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
    ) -> tuple[str, int]:
        """Bind a listening endpoint.

        Args:
            transport: ``"udp"``, ``"tcp"``, ``"tls"``, ``"ws"`` or ``"wss"``.
            host: the address to bind (IPv4 or IPv6 literal, or a name).
            port: the port; 0 for an ephemeral one.
            ssl_context: the server context, required for ``"tls"`` and ``"wss"``
                (:func:`sipload.transport.tls.server_context`).
            reuse_port: set ``SO_REUSEPORT`` so several processes share the port.

        Returns:
            The bound (host, port).

        Raises:
            ValueError: an unknown transport, or TLS/WSS without ``ssl_context``.
            OSError: the address cannot be bound.
        """
        self.loop  # noqa: B018 - remember the running loop
        host = address_literal(host) or host
        if transport == "udp":
            ep = await open_udp(host, port, self._on_message, self._udp_error,
                                reuse_port=reuse_port, on_batch=self._on_batch)
            self._udp.append(ep)
            return ep.address
        return await self._stream(transport).listen(
            host, port, ssl_context=ssl_context, reuse_port=reuse_port
        )

    @property
    def addresses(self) -> list[Peer]:
        """Every bound (transport, host, port)."""
        out: list[Peer] = [("udp", *ep.address) for ep in self._udp]
        for kind, st in self._streams.items():
            out.extend((kind, *a) for a in st.listening)
        return out

    def literal(self, host: str) -> str:
        """``host`` as an address literal: itself, or the answer its name resolved to."""
        return address_literal(host) or self._dns.get(host) or host

    def local_address(self, peer: Peer) -> tuple[str, int]:
        """The local (host, port) that traffic with ``peer`` uses; port 0 if not yet known
        (a stream still connecting)."""
        kind, host, port = peer
        if kind == "udp":
            family = family_of(self.literal(host))
            for ep in self._udp:
                if ep.family == family:
                    return ep.address
            return ("", 0)
        st = self._streams.get(kind)
        if st is not None:
            conn = st.connection_to(address_literal(host) or host, port)
            if conn is not None and conn.local[1]:
                return conn.local
        return ("", 0)

    # ---------------------------------------------------------------- sending

    def send(self, data: bytes, peer: Peer) -> float:
        """Send ``data`` to ``peer``; failures come later to ``on_error``.

        Never blocks and never raises for a network error (an unknown transport
        in ``peer[0]`` is reported through ``on_error`` too).

        Returns:
            The send stamp: ``time.monotonic()`` read just before the bytes were
            handed to the socket (or queued, while a name resolves or a
            connection opens).
        """
        if self._closed:
            return time.monotonic()
        kind, host, port = peer
        if kind not in TRANSPORTS:
            self._error(peer, f"unsupported transport {kind!r}")
            return time.monotonic()
        if kind != "udp":
            return self._stream(kind).send(data, address_literal(host) or host, port)
        addr = address_literal(host) or self._dns.get(host)
        if addr is not None:
            if addr != host:
                self._udp_names[(addr, port)] = peer
            return self._routes.send_udp(data, addr, peer)
        waiting = self._dns_waiting.setdefault(host, [])
        waiting.append((data, peer))
        if len(waiting) == 1:
            self._spawn(self._resolve_udp(host))
        return time.monotonic()

    async def _resolve_udp(self, host: str) -> None:
        try:
            addr: str | None = await self.resolve(host)
            reason = ""
        except Exception as exc:  # gaierror and anything else: reported, never raised
            addr, reason = None, f"udp: cannot resolve {host!r} ({describe(exc)})"
        for data, peer in self._dns_waiting.pop(host, []):
            if addr is None:
                self._error(peer, reason)
            else:
                self._udp_names[(addr, peer[2])] = peer
                self._routes.send_udp(data, addr, peer)

    async def resolve(self, host: str) -> str:
        """The address literal for ``host``: itself, the cached answer, or getaddrinfo's first.

        Concurrent lookups of one name share a single getaddrinfo call.

        Raises:
            OSError (socket.gaierror): the name does not resolve.
        """
        addr = address_literal(host) or self._dns.get(host)
        if addr is not None:
            return addr
        pending = self._dns_pending.get(host)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = self.loop.create_future()
        self._dns_pending[host] = pending
        try:
            infos = await self.loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            if not infos:  # pragma: no cover - getaddrinfo raises instead
                raise socket.gaierror(f"no address for {host!r}")
            addr = str(infos[0][4][0])
        except BaseException as exc:
            if isinstance(exc, Exception):
                pending.set_exception(exc)
                pending.exception()  # retrieved: no "never retrieved" log if nobody waits
            else:
                pending.cancel()
            raise
        finally:
            del self._dns_pending[host]
        self._dns[host] = addr
        pending.set_result(addr)
        return addr

    # ---------------------------------------------------------------- errors

    def _error(self, peer: Peer, reason: str) -> None:
        self.loop.call_soon(self._report, peer, reason)

    def _report(self, peer: Peer, reason: str) -> None:
        if not self._closed:
            self._on_error(peer, reason)

    def _report_call(self, peer: Peer, call: str, reason: str) -> None:
        if self._closed:
            return
        if self._on_call_error is not None:
            self._on_call_error(peer, call, reason)
        else:
            self._on_error(peer, reason)

    def _udp_error(self, peer: Peer, reason: str) -> None:
        self._report(self._udp_names.get((peer[1], peer[2]), peer), reason)

    # ---------------------------------------------------------------- plumbing

    def _stream(self, kind: str) -> StreamTransport:
        st = self._streams.get(kind)
        if st is None:
            if kind in ("ws", "wss"):
                # here: a run without WebSocket never imports the websockets library
                from sipload.transport.websocket import WsTransport

                st = WsTransport(
                    kind, self._on_message, self._report, self.resolve, path=self._ws_path,
                    ping_interval=self._ws_ping, client_context=self._client_context,
                    connect_timeout=self._connect_timeout, loop=self.loop,
                    limits=self._stream_limits)
                st.source_host = self._source_host
                self._streams[kind] = st
                return st
            if kind not in ("tcp", "tls"):
                raise ValueError(f"unknown transport {kind!r}: use udp, tcp, tls, ws or wss")
            st = StreamTransport(
                kind, self._on_message, self._report, self.resolve,
                client_context=self._client_context, connect_timeout=self._connect_timeout,
                loop=self.loop, limits=self._stream_limits, per_call=self.per_call,
                on_call_error=self._report_call,
            )
            st.source_host = self._source_host
            self._streams[kind] = st
        return st

    def _client_context(self) -> ssl.SSLContext:
        if self._tls_client_context is None:
            self._tls_client_context = load_context()
        return self._tls_client_context

    # ---------------------------------------------------------------- per call, figures

    def end_call(self, call_id: str) -> None:
        """The call with ``call_id`` is over: in per-call mode, close its TCP/TLS
        connections (what is queued on them is written first)."""
        if self.per_call and call_id:
            for kind in ("tcp", "tls"):
                st = self._streams.get(kind)
                if st is not None:
                    st.end_call(call_id)

    def connection_counts(self, kind: str) -> tuple[int, int]:
        """(connections accepted so far, connections open now) of the ``kind`` transport."""
        st = self._streams.get(kind)
        return (st.accepted_total, st.open_connections) if st is not None else (0, 0)

    def take_connection_figures(self) -> TlsFigures | None:
        """Client connections opened, TLS handshakes and failures since the last call
        (of every stream transport), or None when no stream transport is in use."""
        if not self._streams:
            return None
        out = TlsFigures()
        for st in self._streams.values():
            out.add(st.figures.take())
        return out

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Close every socket and connection; pending sends are dropped."""
        if self._closed:
            return
        self._closed = True
        self._routes.closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for st in self._streams.values():
            await st.close()
        for ep in self._udp:
            await ep.close()
        self._udp.clear()
