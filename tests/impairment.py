"""A UDP impairment relay of the tests' own, with an echo behind it.

Test infrastructure, not a test module.  The kernel here has no netem, so the media
accuracy test puts this relay in the RTP path::

    sipload --RTP--> relay.port --> echo          (forwarded as is)
    sipload <-drop p / delay U(0, D)-- relay <-- echo

Each packet coming back from the echo is dropped with probability ``loss`` (a seeded
``random.Random``) or sent on to sipload after a delay drawn uniformly from
``[0, max_delay]``.  The relay keeps, per SSRC, which sequence numbers it dropped and,
for every packet it sent, the time it sent it (``time.monotonic()`` right after
``sendto``) and its RTP timestamp: what RFC 3550's jitter of that stream is, as the
relay made it.  One thread serves both sockets; ``close()`` ends it.
"""

from __future__ import annotations

import heapq
import random
import select
import socket
import struct
import threading
import time
from types import TracebackType
from typing import Self

from tests.peers import LOOPBACK, free_port


class StreamLog:
    """What the relay did to one SSRC's packets on the way back to sipload."""

    def __init__(self, first_seen: float) -> None:
        self.first_seen = first_seen
        self.dropped: list[int] = []  # sequence numbers
        self.sent: list[tuple[float, int, int]] = []  # (send time, seq, RTP timestamp)

    def jitter_ms(self, packets: int, clock_rate: int = 8000) -> float:
        """RFC 3550 A.8 interarrival jitter over the first ``packets`` the relay sent, in
        the order it sent them, with its send times as the arrivals; milliseconds.

        Over loopback sipload reads them in that order; ``packets`` is how many it
        received (the rest were still in the relay when the call hung up).
        """
        jitter = 0.0
        last = None
        for at, _, ts in self.sent[:packets]:
            transit = at * clock_rate - ts
            if last is not None:
                jitter += (abs(transit - last) - jitter) / 16.0
            last = transit
        return jitter * 1000.0 / clock_rate


def _even_pair() -> tuple[socket.socket, socket.socket]:
    """An RTP socket on an even port and the RTCP one above it (which drops everything)."""
    for _ in range(50):
        port = free_port("udp")
        port -= port % 2
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rtp.bind((LOOPBACK, port))
            rtcp.bind((LOOPBACK, port + 1))
        except OSError:
            rtp.close()
            rtcp.close()
            continue
        return rtp, rtcp
    raise RuntimeError("no free even UDP port pair on 127.0.0.1")


class ImpairmentRelay:
    """Relay RTP between sipload (which sends to ``port``) and a built-in echo."""

    def __init__(self, *, loss: float, max_delay: float, seed: int) -> None:
        self.loss = loss
        self.max_delay = max_delay
        self.rng = random.Random(seed)
        self.front, self._rtcp = _even_pair()
        self.port = self.front.getsockname()[1]
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind((LOOPBACK, 0))
        self.echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.echo.bind((LOOPBACK, 0))
        self.streams: dict[int, StreamLog] = {}
        #: where each SSRC came from (a run's workers each have their own RTP port)
        self._callers: dict[int, tuple[str, int]] = {}
        self._queue: list[tuple[float, int, bytes]] = []
        self._count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.errors: list[str] = []

    def start(self) -> Self:
        self._thread.start()
        return self

    def _serve(self) -> None:
        sockets = [self.front, self.back, self.echo, self._rtcp]
        while not self._stop.is_set():
            now = time.monotonic()
            while self._queue and self._queue[0][0] <= now:
                _, _, data = heapq.heappop(self._queue)
                seq, ts, ssrc = struct.unpack_from("!HII", data, 2)
                self.front.sendto(data, self._callers[ssrc])
                at = time.monotonic()
                self.streams[ssrc].sent.append((at, seq, ts))
            timeout = 0.05
            if self._queue:
                timeout = max(0.0, min(timeout, self._queue[0][0] - time.monotonic()))
            ready, _, _ = select.select(sockets, [], [], timeout)
            for sock in ready:
                try:
                    data, source = sock.recvfrom(2048)
                except OSError as e:
                    self.errors.append(str(e))
                    continue
                if sock is self.front:
                    if len(data) >= 12:
                        self._callers[struct.unpack_from("!I", data, 8)[0]] = source
                    self.back.sendto(data, self.echo.getsockname())
                elif sock is self.echo:
                    self.echo.sendto(data, source)
                elif sock is self.back and len(data) >= 12 and 128 <= data[0] < 192 \
                        and not 192 <= data[1] <= 223 \
                        and struct.unpack_from("!I", data, 8)[0] in self._callers:
                    self._impair(data)

    def _impair(self, data: bytes) -> None:
        seq, _, ssrc = struct.unpack_from("!HII", data, 2)
        stream = self.streams.get(ssrc)
        if stream is None:
            stream = self.streams[ssrc] = StreamLog(time.monotonic())
        if self.rng.random() < self.loss:
            stream.dropped.append(seq)
            return
        due = time.monotonic() + self.rng.uniform(0.0, self.max_delay)
        self._count += 1
        heapq.heappush(self._queue, (due, self._count, data))

    def in_order(self) -> list[StreamLog]:
        """The streams in the order their first packet came back (the calls' order)."""
        return sorted(self.streams.values(), key=lambda s: s.first_seen)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for s in (self.front, self._rtcp, self.back, self.echo):
            s.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
