"""RTP and RTCP sockets of one worker: a port pair, stamped batched reads, batched sends.

Theory of operation
===================

1. A worker binds one even RTP port and the odd RTCP port above it (RFC 3550
   §11) on its media address; every call's SDP carries that port and
   :class:`sipload.media.table.MediaTable` demultiplexes.  Buffers are
   :data:`SOCKET_BUFFER` bytes (a 20 ms tick of 1,000 calls is ~200 KB).
2. Reads drain the socket in one go (:meth:`MediaSocket.read`, up to ``limit``
   datagrams).  Each datagram carries the kernel's receive time
   (``SO_TIMESTAMPNS``, CLOCK_REALTIME), converted to the monotonic clock with
   an offset measured at each read: the stamp is when the packet reached the
   socket, not when the event loop got round to it.  Where the kernel gives no
   stamp the monotonic clock is read after each datagram.
3. :meth:`MediaSocket.send_many` sends a tick's packets back to back; a full
   send buffer drops the rest of the batch and counts it (UDP has no backlog to
   wait on and a late RTP packet is worth nothing).
4. Nothing here parses RTP: datagrams go to the caller as bytes.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
import time

from sipload.transport.udp import SOCKET_BUFFER, set_socket_buffers

Address = tuple[str, int]
#: <asm-generic/socket.h>: SO_TIMESTAMPNS (SCM_TIMESTAMPNS is the same number).
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("=qq")
_ANC_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)
RECV_SIZE = 2048


class MediaSocket:
    """One bound, non-blocking UDP socket for RTP or RTCP.

    Attributes:
        sent, send_dropped: datagrams sent, and ones the kernel refused (buffer full).
        received: datagrams read.
        kernel_stamps: reads take the kernel's receive time.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        set_socket_buffers(sock, SOCKET_BUFFER)
        self.kernel_stamps = False
        if sys.platform.startswith("linux"):
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                self.kernel_stamps = True
            except OSError:  # pragma: no cover - very old kernels
                pass
        self.sent = 0
        self.send_dropped = 0
        self.send_errors = 0
        self.received = 0

    @property
    def address(self) -> Address:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, limit: int = 512) -> list[tuple[bytes, Address, float]]:
        """Every datagram waiting (at most ``limit``), each with its receive stamp."""
        out: list[tuple[bytes, Address, float]] = []
        sock = self.sock
        if self.kernel_stamps:
            offset = time.time() - time.monotonic()
            unpack = _TIMESPEC.unpack
            for _ in range(limit):
                try:
                    data, anc, _flags, addr = sock.recvmsg(RECV_SIZE, _ANC_SIZE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # an ICMP error queued for this socket: skip it
                    continue
                stamp = 0.0
                for level, kind, payload in anc:
                    if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and \
                            len(payload) >= _TIMESPEC.size:
                        sec, nsec = unpack(payload[:_TIMESPEC.size])
                        stamp = sec + nsec * 1e-9 - offset
                if stamp == 0.0:
                    stamp = time.monotonic()
                out.append((data, (addr[0], addr[1]), stamp))
        else:
            for _ in range(limit):
                try:
                    data, addr = sock.recvfrom(RECV_SIZE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue
                out.append((data, (addr[0], addr[1]), time.monotonic()))
        self.received += len(out)
        return out

    def send_many(self, packets: list[bytes], dests: list[Address]) -> int:
        """Send each packet to its destination; returns how many the kernel took."""
        sendto = self.sock.sendto
        n = 0
        for packet, dest in zip(packets, dests, strict=True):
            try:
                sendto(packet, dest)
                n += 1
            except (BlockingIOError, InterruptedError):
                self.send_dropped += len(packets) - n
                break
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    raise
                self.send_errors += 1
        self.sent += n
        return n

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
