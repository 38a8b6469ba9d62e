"""RTP and RTCP sockets of one worker: a port pair, stamped batched reads, batched sends.

Theory of operation
===================

1. A worker binds one even RTP port and the odd RTCP port above it (RFC 3550
   §11) on its media address; every call's SDP carries that port and
   :class:`sipload.media.table.MediaTable` demultiplexes.  Buffers are
   :data:`SOCKET_BUFFER` bytes (a 20 ms tick of 1,000 calls is ~200 KB).
2. Reads drain the socket in one go (:meth:`MediaSocket.read`, up to ``limit``
   datagrams, with ``recvmmsg`` through :mod:`sipload.transport.batch`).  Each
   datagram carries the kernel's receive time (``SO_TIMESTAMPNS``), moved onto the
   monotonic clock with an offset measured at each read: the stamp is when the
   packet reached the socket, not when the event loop got round to it.  Where the
   kernel gives no stamp the monotonic clock is read at the read.
3. :meth:`MediaSocket.send_many` sends a tick's packets back to back (``sendmmsg``
   through :mod:`sipload.transport.batch`, or a ``sendto`` loop); a full
   send buffer drops the rest of the batch and counts it (UDP has no backlog to
   wait on and a late RTP packet is worth nothing).
4. Nothing here parses RTP: datagrams go to the caller as bytes.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from sipload.transport.batch import Address, Datagram, enable_stamps, recv_batch, send_batch
from sipload.transport.udp import SOCKET_BUFFER, set_socket_buffers

RECV_SIZE = 2048


class MediaSocket:
    """One bound, non-blocking UDP socket for RTP or RTCP.

    Attributes:
        sent, send_dropped: datagrams sent, and ones not sent (the send buffer was full).
        send_errors: datagrams the kernel refused one by one (an ICMP error, too large).
        received: datagrams read; read_errors: reads ended by a queued socket error.
        kernel_stamps: reads take the kernel's receive time.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        set_socket_buffers(sock, SOCKET_BUFFER)
        self.kernel_stamps = enable_stamps(sock)
        self.sent = 0
        self.send_dropped = 0
        self.send_errors = 0
        self.received = 0
        self.read_errors = 0

    @property
    def address(self) -> Address:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, limit: int = 512) -> list[Datagram]:
        """Every datagram waiting (at most ``limit``), each with its receive stamp."""
        out, err = recv_batch(self.sock, limit, RECV_SIZE, self.kernel_stamps)
        if err:
            self.read_errors += 1
        self.received += len(out)
        return out

    def send_many(self, packets: Sequence[bytes], dests: Sequence[Address]) -> int:
        """Send each packet to its destination; returns how many the kernel took."""
        result = send_batch(self.sock, packets, dests)
        self.sent += result.sent
        self.send_dropped += result.unsent
        self.send_errors += result.failed
        return result.sent

    def send(self, packet: bytes, dest: Address) -> bool:
        return self.send_many([packet], [dest]) == 1

    def close(self) -> None:
        self.sock.close()


def bind_pair(host: str, first_port: int = 0, attempts: int = 64) -> tuple[MediaSocket,
                                                                          MediaSocket]:
    """Bind an even RTP port and RTCP on the next one.

    Args:
        host: the media address.
        first_port: try this even port first (0: let the kernel pick, then pair up).
        attempts: how many ports to try.

    Raises:
        OSError: no free pair was found.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    port = first_port
    for _ in range(attempts):
        rtp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            rtp.bind((host, port & ~1 if port else 0))
            got = rtp.getsockname()[1]
            if got % 2:
                rtp.close()
                port = 0
                continue
            rtcp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                rtcp.bind((host, got + 1))
            except OSError as exc:
                rtcp.close()
                raise exc
            return MediaSocket(rtp), MediaSocket(rtcp)
        except OSError as exc:
            last = exc
            rtp.close()
            port = port + 2 if port else 0
    raise OSError(f"no free RTP/RTCP port pair on {host}: {last}")
