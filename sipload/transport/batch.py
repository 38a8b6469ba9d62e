"""Batched UDP socket calls: a whole batch of datagrams per system call where possible.

Theory of operation
===================

Sending or reading a datagram per Python call costs a system call and an
interpreter round trip each; at RTP rates (50,000 datagrams/s each way for 1,000
calls) that is most of a worker's time.  This module gives two operations with one
meaning and two implementations:

* :func:`send_batch` sends ``packets[i]`` to ``dests[i]`` in order, stopping at the
  first "would block" (a full send buffer: the rest is reported as not sent);
  a datagram refused for another reason (an ICMP error queued on the socket, a
  datagram too large) is counted as failed and skipped.
* :func:`send_until` sends in order and stops at the first datagram refused for
  any reason (``EAGAIN`` included), saying how many went and why the next did not:
  the SIP UDP transport (:mod:`sipload.transport.udp`) handles that datagram on its
  own (an ICMP error queued on the socket is reported and the datagram re-sent).
* :func:`recv_batch` reads until the socket is empty (or ``limit`` datagrams),
  each datagram with its source ``(host, port)`` and its receive stamp on the
  ``time.monotonic()`` clock: the kernel's ``SO_TIMESTAMPNS`` time when the socket
  has it enabled (``stamps=True``; the offset between the wall and monotonic
  clocks is measured once per call), else the monotonic time it was read.

The native implementation is the C extension ``sipload.transport._mmsg``
(``sendmmsg``/``recvmmsg``, Linux), built by ``hatch_build.py`` with the mypyc hot
path.  Where it is missing (a pure build, ``SIPLOAD_COMPILE=0``; another OS) or
of another API version, the Python implementation (a loop of ``sendto`` and
``recvmsg``/``recvfrom`` until ``EAGAIN``) is selected automatically; the
environment variable ``SIPLOAD_BATCH=python`` forces it.  :data:`IMPLEMENTATION`
says which one runs.

Both take a non-blocking ``socket.socket`` and never raise for what the network
did (``EAGAIN``, ``ECONNREFUSED``...): errors come back as numbers in the result.
Addresses are ``(host, port)`` with the host an IP literal (IPv4 or IPv6); an
IPv6 source is returned as ``(host, port)`` too, without flow info and scope.

Usage (any UDP socket: RTP here, SIP in :mod:`sipload.transport.udp` if it wants)::

    result = send_batch(sock, packets, dests)   # result.sent, .failed, .unsent, .errno
    datagrams, err = recv_batch(sock, limit=512, bufsize=2048, stamps=True)
    for data, (host, port), stamp in datagrams: ...
"""

from __future__ import annotations

import errno as errnos
import os
import socket
import struct
import sys
import time
from collections.abc import Sequence
from typing import Protocol

Address = tuple[str, int]
Datagram = tuple[bytes, Address, float]
#: The C module's API version this module speaks.
NATIVE_API = 3
#: ``SO_TIMESTAMPNS`` (``<asm-generic/socket.h>``; SCM_TIMESTAMPNS is the same number).
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("=qq")
_ANC_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)


class SendResult:
    """What :func:`send_batch` did.

    Attributes:
        sent: datagrams the kernel took.
        failed: datagrams refused one by one (skipped; the rest was still sent).
        unsent: datagrams not tried because the send buffer was full.
        errno: the first error seen (``EAGAIN`` included), 0 for none.
    """

    __slots__ = ("errno", "failed", "sent", "unsent")

    def __init__(self, sent: int, failed: int, unsent: int, errno: int) -> None:
        self.sent = sent
        self.failed = failed
        self.unsent = unsent
        self.errno = errno

    def __repr__(self) -> str:
        return (f"SendResult(sent={self.sent}, failed={self.failed}, unsent={self.unsent}, "
                f"errno={self.errno})")


class _Native(Protocol):
    API: int

    def send(self, fd: int, packets: Sequence[bytes], dests: Sequence[Address], /) -> tuple[
            int, int, int]: ...

    def send_until(self, fd: int, packets: Sequence[bytes], dests: Sequence[Address],
                   start: int, /) -> tuple[int, int]: ...

    def recv(self, fd: int, limit: int, bufsize: int, want_stamps: bool = ..., /) -> tuple[
            list[Datagram], int]: ...


def _load_native() -> _Native | None:
    if os.environ.get("SIPLOAD_BATCH", "").strip().lower() == "python":
        return None
    try:
        # the submodule itself, not through the package: the UDP transport imports this
        # module, and the package's __init__ imports the UDP transport
        import sipload.transport._mmsg as _mmsg  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    module: _Native = _mmsg
    return module if getattr(module, "API", None) == NATIVE_API else None


_native = _load_native()
#: "sendmmsg" when the C helper runs, "python" for the fallback.
IMPLEMENTATION = "sendmmsg" if _native is not None else "python"


def native_available() -> bool:
    """True when the C helper is importable and of this module's API version."""
    return _native is not None


# -- the Python implementation --------------------------------------------------------------


def python_send_batch(sock: socket.socket, packets: Sequence[bytes],
                      dests: Sequence[Address]) -> SendResult:
    """:func:`send_batch` as a loop of ``sendto`` (the fallback)."""
    if len(packets) != len(dests):
        raise ValueError("packets and dests differ in length")
    sendto = sock.sendto
    sent = failed = first = 0
    total = len(packets)
    for i in range(total):
        try:  # EINTR is retried by Python itself (PEP 475)
            sendto(packets[i], dests[i])
            sent += 1
        except BlockingIOError:
            return SendResult(sent, failed, total - i, first or errnos.EAGAIN)
        except OSError as exc:
            failed += 1
            if not first:
                first = exc.errno or errnos.EIO
    return SendResult(sent, failed, 0, first)


def python_send_until(sock: socket.socket, packets: Sequence[bytes],
                      dests: Sequence[Address], start: int = 0) -> tuple[int, int]:
    """:func:`send_until` as a loop of ``sendto`` (the fallback)."""
    if len(packets) != len(dests) or not 0 <= start <= len(packets):
        raise ValueError("packets and dests differ in length, or start is out of range")
    sendto = sock.sendto
    for i in range(start, len(packets)):
        try:  # EINTR is retried by Python itself (PEP 475)
            sendto(packets[i], dests[i])
        except OSError as exc:  # BlockingIOError (EAGAIN) too
            return i - start, exc.errno or errnos.EIO
    return len(packets) - start, 0


def python_recv_batch(sock: socket.socket, limit: int = 512, bufsize: int = 2048,
                      stamps: bool = True) -> tuple[list[Datagram], int]:
    """:func:`recv_batch` as a loop of ``recvmsg``/``recvfrom`` (the fallback)."""
    out: list[Datagram] = []
    err = 0
    monotonic = time.monotonic
    if stamps and sys.platform.startswith("linux"):
        offset = time.time() - monotonic()
        unpack = _TIMESPEC.unpack_from
        recvmsg = sock.recvmsg
        size = _TIMESPEC.size
        while len(out) < limit:
            try:
                data, anc, _flags, addr = recvmsg(bufsize, _ANC_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                err = exc.errno or errnos.EIO
                break
            stamp = -1.0
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= size:
                    sec, nsec = unpack(payload)
                    stamp = sec + nsec * 1e-9 - offset
            if stamp < 0:
                stamp = monotonic()
            out.append((data, (addr[0], addr[1]), stamp))
        return out, err
    recvfrom = sock.recvfrom
    while len(out) < limit:
        try:
            data, addr = recvfrom(bufsize)
        except BlockingIOError:
            break
        except OSError as exc:
            err = exc.errno or errnos.EIO
            break
        out.append((data, (addr[0], addr[1]), monotonic()))
    return out, err


# -- the entry points -------------------------------------------------------------------------


def send_batch(sock: socket.socket, packets: Sequence[bytes],
               dests: Sequence[Address]) -> SendResult:
    """Send ``packets[i]`` to ``dests[i]``, in order, as few system calls as possible.

    Args:
        sock: a non-blocking UDP socket.
        packets: the datagrams (bytes-like).
        dests: one ``(host, port)`` per packet, the host an IP literal.

    Returns:
        How many were sent, failed one by one, or not tried (send buffer full).

    Raises:
        ValueError: the sequences differ in length, or a host is not an IP literal.
        TypeError: a destination is not a ``(host, port)`` tuple.
    """
    native = _native
    if native is None:
        return python_send_batch(sock, packets, dests)
    sent, failed, err = native.send(sock.fileno(), packets, dests)
    return SendResult(sent, failed, len(packets) - sent - failed, err)


def send_until(sock: socket.socket, packets: Sequence[bytes], dests: Sequence[Address],
               start: int = 0) -> tuple[int, int]:
    """Send ``packets[start:]`` to ``dests[start:]`` in order, stopping at the first refusal.

    Returns:
        ``(sent, errno)``: ``sent`` datagrams from ``start`` on were taken; when
        ``errno`` is not 0, ``packets[start + sent]`` was refused with it (``EAGAIN``:
        the send buffer is full) and nothing after it was tried.

    Raises:
        ValueError: the sequences differ in length, ``start`` is out of range, or a
            host is not an IP literal (native).
        TypeError: a destination is not a ``(host, port)`` tuple.
    """
    native = _native
    if native is None:
        return python_send_until(sock, packets, dests, start)
    return native.send_until(sock.fileno(), packets, dests, start)


def recv_batch(sock: socket.socket, limit: int = 512, bufsize: int = 2048,
               stamps: bool = True) -> tuple[list[Datagram], int]:
    """Read every datagram waiting on ``sock`` (at most ``limit``).

    Args:
        sock: a non-blocking UDP socket (with ``SO_TIMESTAMPNS`` enabled for kernel
            stamps, see :func:`enable_stamps`).
        limit: most datagrams to read in this call.
        bufsize: the largest datagram expected; longer ones are cut to it.
        stamps: use the kernel's receive stamps where the socket gives them.

    Returns:
        ``([(data, (host, port), stamp), ...], errno)``: stamps on the
        ``time.monotonic()`` clock; ``errno`` is the error that ended the read
        early (a queued ICMP error, say), 0 when the socket was simply drained.
    """
    native = _native
    if native is None:
        return python_recv_batch(sock, limit, bufsize, stamps)
    return native.recv(sock.fileno(), limit, bufsize, stamps)


def enable_stamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp each datagram received on ``sock`` (Linux); True if it will."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:  # pragma: no cover - very old kernels
        return False
    return True
