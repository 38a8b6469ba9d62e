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
5. An error raised by ``sendto`` itself with nothing queued (a local error such
   as "network unreachable" or "message too long") goes to that datagram's
   destination.  An error read from the socket with nothing queued has no
   address: where errors can be queued it is dropped (blaming the last
   destination would fail a live peer's calls: with several peers, the last
   one sent to is rarely the one that vanished); elsewhere (no ``IP_RECVERR``:
   macOS, Windows) it goes to the last destination, a best guess.
6. The endpoint never raises for a network error: errors go to ``on_error``,
   always from a later loop callback, never from inside :meth:`UdpEndpoint.sendto`
   (an ``on_error`` that sends again from there would re-enter the send; with
   uvloop's datagram transport that crashed the process).
7. Stamps.  Measurements are taken at the socket, not from the loop's clock
   (uvloop's is 1 ms and cached per iteration).  Each received datagram goes
   up with the kernel's receive timestamp (``SO_TIMESTAMPNS``, read with
   ``recvmsg``): the time it reached the socket, before any wait in the
   receive buffer behind the generator's own work — what a capture shows.
   The kernel stamps with ``CLOCK_REALTIME``; it is turned into
   ``time.monotonic()`` seconds with an offset read once per wake-up.  Where
   there is no kernel stamp, ``time.monotonic()`` at the read is used (Linux
   itself stamps at the read for a moment after the first socket of the system
   asks for stamps: it turns stamping on a little later).  Each
   :meth:`UdpEndpoint.sendto` returns ``time.monotonic()`` read just before
   the datagram is handed to the kernel, so an answer's receive stamp is
   never earlier than its request's send stamp.  Reading the socket ourselves
   (``loop.add_reader`` + ``recvmmsg``, rule 8) costs no more CPU than
   asyncio's datagram transport: see bench/README.md.
8. Batches.  A wake-up reads what is waiting with ``recvmmsg`` (up to
   :data:`_READ_CHUNK` datagrams a system call, :data:`_READ_MAX` per wake-up;
   :mod:`sipload.transport.batch`, whose Python fallback loops over ``recvmsg``)
   and, when the owner gave ``on_batch``, hands the whole read batch to it at once
   (the pump then answers all of it in one flush); else each datagram to
   ``on_message``.  :meth:`UdpEndpoint.sendto_many` writes several datagrams with
   ``sendmmsg``, one send stamp for all of them, read before the system call; a
   datagram the kernel refuses goes through :meth:`UdpEndpoint.sendto`'s error
   handling (rules 4-6), and the rest follows it in order.  ``sendmmsg`` does not
   say why it stopped once it sent one: then the error queue is read (an ICMP
   error it consumed is reported from there) and the send goes on from the
   datagram not taken.
"""

from __future__ import annotations

import asyncio
import errno as errnos
import os
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable

from sipload.transport.batch import recv_batch, send_until

Peer = tuple[str, str, int]
"""(transport, host, port) — the same shape as :data:`sipload.ua.state.Peer`."""

OnMessage = Callable[[bytes, Peer, float], None]
"""Called with a message, its peer and its receive stamp (``time.monotonic()`` seconds)."""

OnBatch = Callable[[list[tuple[bytes, Peer, float]]], None]
"""Called with every datagram one read got, in order: (message, peer, receive stamp)."""

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
_READ_MAX = 256  # datagrams read per wake-up before the loop runs other callbacks
# datagrams per recvmmsg: each has a 64 KiB slot of the helper's buffer, touched only
# as far as a batch that large arrives (a few slots at ordinary rates)
_READ_CHUNK = 64
_AGAIN = (errnos.EAGAIN, errnos.EWOULDBLOCK)
_RECV_SIZE = 65535
# <asm-generic/socket.h>: SO_TIMESTAMPNS (= SCM_TIMESTAMPNS), a struct timespec of
# CLOCK_REALTIME (Linux); Python's socket module does not export the constant.
_SO_TIMESTAMPNS = 35


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


def enable_rx_timestamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp each received datagram (``SO_TIMESTAMPNS``, Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:  # pragma: no cover
        return False
    return True


class UdpEndpoint:
    """A bound UDP socket moving datagrams between the network and two callbacks.

    The endpoint reads and writes the socket itself (``loop.add_reader`` and
    ``recvmsg``, not an asyncio transport), so each datagram can carry the
    kernel's receive timestamp (rule 7).  Use :func:`open_udp` to make one.

    Attributes:
        address: the bound (host, port), with the real port when 0 was asked.
        family: ``socket.AF_INET`` or ``socket.AF_INET6``.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_message: OnMessage,
        on_error: Callable[[Peer, str], None],
        loop: asyncio.AbstractEventLoop,
        on_batch: OnBatch | None = None,
    ) -> None:
        self._sock = sock
        self._on_batch = on_batch
        self._loop = loop
        self._errqueue = enable_icmp_errors(sock)
        self._kernel_stamps = enable_rx_timestamps(sock)
        self._on_message = on_message
        self._on_error = on_error
        self._last_dest: tuple[str, int] | None = None
        self._in_send = False
        self._resend = False
        self._closed = False
        self._backlog: deque[tuple[bytes, tuple[str, int]]] = deque()
        name = sock.getsockname()
        self.address: tuple[str, int] = (name[0], name[1])
        self.family: int = sock.family
        loop.add_reader(sock.fileno(), self._readable)

    # ---------------------------------------------------------------- reading

    def _readable(self) -> None:
        sock = self._sock
        on_batch = self._on_batch
        left = _READ_MAX
        while left > 0:
            if self._closed:
                return
            got, err = recv_batch(sock, min(left, _READ_CHUNK), _RECV_SIZE,
                                  self._kernel_stamps)
            n = len(got)
            left -= n
            if n:
                if on_batch is not None:
                    on_batch([(data, ("udp", addr[0], addr[1]), stamp)
                              for data, addr, stamp in got])
                else:
                    on_message = self._on_message
                    for data, addr, stamp in got:
                        if self._closed:
                            return
                        on_message(data, ("udp", addr[0], addr[1]), stamp)
            if err:  # a queued ICMP error (IP_RECVERR): ECONNREFUSED ...
                left -= 1
                if not self._closed:
                    self.error_received(OSError(err, os.strerror(err)))
                continue
            if n < _READ_CHUNK:
                return  # drained

    def error_received(self, exc: Exception, dest: tuple[str, int] | None = None) -> None:
        """A socket error: ``dest`` is where the failing ``sendto`` went, if it was one.

        Queued ICMP errors go to their exact destinations.  Otherwise a ``sendto``'s
        own error goes to its destination; an error read from the socket with nothing
        queued is blamed on the last destination only where the platform cannot queue
        errors (rule 5): with an error queue, it has no address, and blaming the last
        destination would fail calls of a peer that is alive.
        """
        queued = self._drain_error_queue()
        if queued:
            self._rearm_reader()
        for host, port, errno, origin in queued:
            self._report(("udp", host, port), f"udp: {os.strerror(errno)}")
            if self._in_send and origin in (_SO_EE_ORIGIN_ICMP, _SO_EE_ORIGIN_ICMP6):
                self._resend = True  # the datagram being sent was dropped for this
        if queued:
            return
        if dest is None and not self._errqueue:
            dest = self._last_dest
        if dest is None:
            return
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self._report(("udp", *dest), f"udp: {reason}")

    def _rearm_reader(self) -> None:
        """Watch the socket again: libuv (uvloop) stops a poll handle for good when epoll
        reports EPOLLERR, which a queued ICMP error does, and the socket would never be
        read again (rule 3)."""
        if self._closed:
            return
        fd = self._sock.fileno()
        self._loop.remove_reader(fd)
        self._loop.add_reader(fd, self._readable)

    def _report(self, peer: Peer, reason: str) -> None:
        """``on_error`` from the loop, never from inside :meth:`sendto` (rule 6)."""
        self._loop.call_soon(self._on_error, peer, reason)

    def _drain_error_queue(self) -> list[tuple[str, int, int, int]]:
        """(host, port, errno, origin) of each queued error: where the failed datagram went."""
        out: list[tuple[str, int, int, int]] = []
        if not self._errqueue or self._closed:
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

    def sendto(self, data: bytes, host: str, port: int) -> float:
        """Send one datagram to an address literal; errors come to ``on_error``.

        Returns:
            The send stamp: ``time.monotonic()`` read just before the datagram
            was handed to the kernel (never after the peer could have answered).
        """
        stamp = time.monotonic()
        if self._closed:
            return stamp
        if self._backlog:  # the socket was full: keep the order
            self._backlog.append((data, (host, port)))
            return stamp
        self._last_dest = (host, port)
        self._in_send, self._resend = True, False
        try:
            self._write(data, (host, port))
        finally:
            self._in_send = False
        if self._resend and not self._closed:
            self._resend = False
            self._write(data, (host, port))
        return stamp

    def _write(self, data: bytes, dest: tuple[str, int]) -> None:
        try:
            self._sock.sendto(data, dest)
        except (BlockingIOError, InterruptedError):
            self._backlog.append((data, dest))
            self._loop.add_writer(self._sock.fileno(), self._writable)
        except OSError as exc:
            self.error_received(exc, dest)

    def sendto_many(self, packets: list[bytes], dests: list[tuple[str, int]]) -> float:
        """Send ``packets[i]`` to ``dests[i]`` (address literals) in order, as few system
        calls as the kernel allows (rule 8); errors come to ``on_error`` as for
        :meth:`sendto`, and a full socket queues the rest.

        Returns:
            One send stamp for all: ``time.monotonic()`` read before the first was
            handed to the kernel.
        """
        stamp = time.monotonic()
        n = len(packets)
        i = 0
        while i < n and not self._closed:
            if self._backlog:  # the socket was full: keep the order
                self._backlog.extend(zip(packets[i:], dests[i:], strict=True))
                break
            sent, err = send_until(self._sock, packets, dests, i)
            if sent == 0 and err == 0:
                err = errnos.EAGAIN  # nothing taken and no reason: as a full socket
            i += sent
            if i >= n:
                self._last_dest = dests[n - 1]
                break
            if err == 0:
                # Taken short with no reason (sendmmsg keeps only the count once one
                # went): a pending ICMP error it consumed is in the error queue only.
                # Report what is queued (rule 4) and go on with the one not taken.
                queued = self._drain_error_queue()
                if queued:
                    self._rearm_reader()
                for host, port, errno, _ in queued:
                    self._report(("udp", host, port), f"udp: {os.strerror(errno)}")
                continue
            if err in _AGAIN:
                self._backlog.extend(zip(packets[i:], dests[i:], strict=True))
                self._loop.add_writer(self._sock.fileno(), self._writable)
                break
            # packets[i] was refused: what sendto does when its write raises (rules 4, 5)
            data, dest = packets[i], dests[i]
            self._last_dest = dest
            self._in_send, self._resend = True, False
            try:
                self.error_received(OSError(err, os.strerror(err)), dest)
            finally:
                self._in_send = False
            if self._resend and not self._closed:
                self._resend = False
                self._write(data, dest)
            i += 1
        return stamp

    def _writable(self) -> None:
        backlog = self._backlog
        while backlog and not self._closed:
            data, dest = backlog[0]
            try:
                self._sock.sendto(data, dest)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._last_dest = dest
                self.error_received(exc, dest)
            backlog.popleft()
        if not self._closed:
            self._loop.remove_writer(self._sock.fileno())

    @property
    def closing(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Stop reading and writing, and close the socket (queued datagrams are dropped)."""
        if self._closed:
            return
        self._closed = True
        fd = self._sock.fileno()
        self._loop.remove_reader(fd)
        self._loop.remove_writer(fd)
        self._backlog.clear()
        self._sock.close()


async def open_udp(
    host: str,
    port: int,
    on_message: OnMessage,
    on_error: Callable[[Peer, str], None],
    *,
    reuse_port: bool = False,
    buffer_size: int = SOCKET_BUFFER,
    on_batch: OnBatch | None = None,
) -> UdpEndpoint:
    """Bind a UDP endpoint on the running loop.

    Args:
        host: an address literal (IPv4 or IPv6) or a name to bind to.
        port: the port, 0 for an ephemeral one (see ``endpoint.address``).
        on_message: called with each datagram, its peer and its receive stamp.
        on_error: called with a peer and a reason on ICMP or send errors.
        reuse_port: set ``SO_REUSEPORT`` (Linux, BSD) before binding.
        buffer_size: requested socket buffer sizes.
        on_batch: called with each read batch instead of ``on_message`` per datagram.

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
        endpoint = UdpEndpoint(sock, on_message, on_error, loop, on_batch)
    except BaseException:
        sock.close()
        raise
    return endpoint
