"""SIP over UDP: one datagram endpoint per bound address.

Theory of operation
===================

1. One datagram is one SIP message (RFC 3261 §18.3 framing does not apply):
   every datagram goes to ``on_message`` whole, with the peer
   ``("udp", host, port)`` it came from.
2. The socket is made here, not by asyncio, so that it can get large buffers
   (``SO_RCVBUF``/``SO_SNDBUF`` of :data:`SOCKET_BUFFER`, best effort: the kernel
   caps them at ``net.core.rmem_max``/``wmem_max``) and, when asked,
   ``SO_REUSEPORT`` so that several worker processes share one port and the
   kernel spreads datagrams among them.
3. ICMP errors.  Linux does not report ICMP errors (port unreachable ...) to
   an *unconnected* UDP socket at all unless ``IP_RECVERR``/``IPV6_RECVERR``
   is set, and then reports them as ``ECONNREFUSED`` from the next
   ``recvfrom`` or ``sendto`` — without the address.  So on Linux we set
   ``IP_RECVERR`` and, in :meth:`UdpEndpoint.error_received`, drain the
   socket's error queue (``MSG_ERRQUEUE``), whose entries carry the original
   destination: the error goes to ``on_error`` with that exact peer.  Draining
   also keeps the error queue from eating the receive buffer.
4. The price of ``IP_RECVERR``: a pending ICMP error makes the *next*
   ``sendto`` fail, to whatever destination, and that datagram is not sent.
   When :meth:`UdpEndpoint.sendto` sees that happen (the error queue held an
   ICMP entry), it reports the entry and sends the datagram once more.
5. Elsewhere (no ``IP_RECVERR``: macOS, Windows), or when the error queue is
   empty (a local error such as "network unreachable" or "message too long"
   raised by ``sendto`` itself), the error is attributed to the last
   destination this endpoint sent to: exact for errors raised by ``sendto``,
   a best guess for an asynchronous ICMP error.
6. The endpoint never raises for a network error: errors go to ``on_error``,
   always from a later loop callback, never from inside ``error_received``.
   uvloop calls ``error_received`` synchronously from inside ``sendto``; an
   ``on_error`` that sends again from there (the UA answering a failure by
   sending elsewhere) re-enters uvloop's UDP transport, which crashes the
   process (a segfault, with uvloop 0.23: a target that went away killed every
   worker calling it).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any, cast

Peer = tuple[str, str, int]
"""(transport, host, port) — the same shape as :data:`sipload.ua.state.Peer`."""

SOCKET_BUFFER = 4 * 1024 * 1024
"""Requested SO_RCVBUF and SO_SNDBUF, in bytes (a burst of 2,000 INVITEs fits)."""

# <linux/in.h>, <linux/in6.h>, <linux/errqueue.h>; Python's socket module lacks them.
_IP_RECVERR = 11
_IPV6_RECVERR = 25
_SO_EE_ORIGIN_ICMP = 2
_SO_EE_ORIGIN_ICMP6 = 3
_RECVERR = {
    socket.AF_INET: (socket.IPPROTO_IP, _IP_RECVERR),
    socket.AF_INET6: (socket.IPPROTO_IPV6, _IPV6_RECVERR),
}
_EE = struct.Struct("=IB")  # struct sock_extended_err: ee_errno, ee_origin, ...
_DRAIN_MAX = 256  # error-queue entries read per error_received call


def set_socket_buffers(sock: socket.socket, size: int = SOCKET_BUFFER) -> None:
    """Ask for ``size``-byte receive and send buffers; keep what the kernel gives."""
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
        except OSError:  # pragma: no cover - some kernels refuse; the default stays
            pass


def enable_icmp_errors(sock: socket.socket) -> bool:
    """Set ``IP_RECVERR``/``IPV6_RECVERR`` on Linux; False where not available."""
    if not sys.platform.startswith("linux"):
        return False
    level, opt = _RECVERR[sock.family]
    try:
        sock.setsockopt(level, opt, 1)
    except OSError:  # pragma: no cover
        return False
    return True


class UdpEndpoint(asyncio.DatagramProtocol):
    """A bound UDP socket moving datagrams between the network and two callbacks.

    Use :func:`open_udp` to make one.

    Attributes:
        address: the bound (host, port), with the real port when 0 was asked.
        family: ``socket.AF_INET`` or ``socket.AF_INET6``.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_message: Callable[[bytes, Peer], None],
        on_error: Callable[[Peer, str], None],
    ) -> None:
        self._sock = sock
        self._errqueue = enable_icmp_errors(sock)
        self._on_message = on_message
        self._on_error = on_error
        self._transport: asyncio.DatagramTransport | None = None
        self._last_dest: tuple[str, int] | None = None
        self._in_send = False
        self._resend = False
        self._closed: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        name = sock.getsockname()
        self.address: tuple[str, int] = (name[0], name[1])
        self.family: int = sock.family

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's own datagram transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._loop = asyncio.get_running_loop()
        self._closed = self._loop.create_future()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._on_message(data, ("udp", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        queued = self._drain_error_queue()
        for host, port, errno, origin in queued:
            self._report(("udp", host, port), f"udp: {os.strerror(errno)}")
            if self._in_send and origin in (_SO_EE_ORIGIN_ICMP, _SO_EE_ORIGIN_ICMP6):
                self._resend = True  # the datagram being sent was dropped for this
        if queued or self._last_dest is None:
            return
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self._report(("udp", *self._last_dest), f"udp: {reason}")

    def _report(self, peer: Peer, reason: str) -> None:
        """``on_error`` from the loop, never from inside uvloop's sendto (rule 6)."""
        if self._loop is not None:
            self._loop.call_soon(self._on_error, peer, reason)
        else:
            self._on_error(peer, reason)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def _drain_error_queue(self) -> list[tuple[str, int, int, int]]:
        """(host, port, errno, origin) of each queued error: where the failed datagram went."""
        out: list[tuple[str, int, int, int]] = []
        if not self._errqueue or self._transport is None:
            return out
        for _ in range(_DRAIN_MAX):
            try:
                _, ancdata, _, addr = self._sock.recvmsg(1, 512, socket.MSG_ERRQUEUE)
            except OSError:  # BlockingIOError: the queue is empty
                break
            for level, kind, data in ancdata:
                if (level, kind) in _RECVERR.values() and len(data) >= _EE.size and addr:
                    errno, origin = _EE.unpack_from(data)
                    out.append((addr[0], addr[1], errno, origin))
        return out

    # ---------------------------------------------------------------- used by the shell

    def sendto(self, data: bytes, host: str, port: int) -> None:
        """Send one datagram to an address literal; errors come to ``on_error``."""
        transport = self._transport
        if transport is None:
            return
        self._last_dest = (host, port)
        self._in_send, self._resend = True, False
        try:
            transport.sendto(data, (host, port))  # errors: error_received, synchronously
        finally:
            self._in_send = False
        if self._resend and self._transport is not None:
            self._resend = False
            self._transport.sendto(data, (host, port))

    @property
    def closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    async def close(self) -> None:
        """Close the socket and wait until asyncio has let go of it."""
        if self._transport is not None:
            self._transport.close()
        if self._closed is not None:
            await self._closed


async def open_udp(
    host: str,
    port: int,
    on_message: Callable[[bytes, Peer], None],
    on_error: Callable[[Peer, str], None],
    *,
    reuse_port: bool = False,
    buffer_size: int = SOCKET_BUFFER,
) -> UdpEndpoint:
    """Bind a UDP endpoint on the running loop.

    Args:
        host: an address literal (IPv4 or IPv6) or a name to bind to.
        port: the port, 0 for an ephemeral one (see ``endpoint.address``).
        on_message: called with each datagram and its peer.
        on_error: called with a peer and a reason on ICMP or send errors.
        reuse_port: set ``SO_REUSEPORT`` (Linux, BSD) before binding.
        buffer_size: requested socket buffer sizes.

    Returns:
        The bound endpoint.

    Raises:
        OSError: the address cannot be resolved or bound (in use, not local).
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP, flags=socket.AI_PASSIVE
    )
    if not infos:  # pragma: no cover - getaddrinfo raises instead
        raise OSError(f"cannot resolve {host!r}")
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        set_socket_buffers(sock, buffer_size)
        sock.setblocking(False)
        sock.bind(sockaddr)
        endpoint = UdpEndpoint(sock, on_message, on_error)
        await loop.create_datagram_endpoint(lambda: endpoint, sock=sock)
    except BaseException:
        sock.close()
        raise
    return endpoint
