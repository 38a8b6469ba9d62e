"""The asyncio shell of a worker's media: RTP/RTCP sockets ↔ :class:`MediaTable`.

It moves datagrams and re-arms one timer, nothing else:

* the RTP and RTCP sockets are watched with ``loop.add_reader``; when readable,
  they are drained in one go, each datagram with its kernel receive stamp, into
  the table; echoes go back in one batch;
* one timer fires at the table's next deadline (the next 20 ms tick); each due
  tick's packets are sent as one batch, and the delay between the tick's due time
  and the moment its batch starts going out is recorded (send-interval error);
* RTCP reports and the final RTCP BYEs are sent as the table hands them out.

Times are ``time.monotonic() − t0`` where ``t0`` is the engine's start on the
same clock, so the engine's ``now`` and the stamps given here agree.
"""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

from sipload.media import g711
from sipload.media.table import MediaTable
from sipload.stats.histograms import new_histogram
from sipload.transport.rtp import MediaSocket


class MediaPump:
    """Drives one :class:`MediaTable` with a pair of media sockets."""

    def __init__(self, table: MediaTable, rtp: MediaSocket, rtcp: MediaSocket, t0: float) -> None:
        self.table = table
        self.rtp = rtp
        self.rtcp = rtcp
        self.t0 = t0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed = float("inf")
        self.send_error = new_histogram()  #: µs from a tick's due time to its first send
        self.ticks = 0
        self.closed = False

    def now(self) -> float:
        return time.monotonic() - self.t0

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.rtp.fileno(), self._read_rtp)
        self.loop.add_reader(self.rtcp.fileno(), self._read_rtcp)
        self.rearm()

    def close(self) -> None:
        if self.closed:
            return
        self.flush_rtcp()
        self.closed = True
        if self._handle is not None:
            self._handle.cancel()
        if self.loop is not None:
            self.loop.remove_reader(self.rtp.fileno())
            self.loop.remove_reader(self.rtcp.fileno())
        self.rtp.close()
        self.rtcp.close()

    # -- receiving ----------------------------------------------------------------

    def _read_rtp(self) -> None:
        table = self.table
        t0 = self.t0
        echoes: list[bytes] = []
        dests: list[tuple[str, int]] = []
        while True:
            batch = self.rtp.read()
            for data, addr, stamp in batch:
                back = table.on_rtp(data, addr, stamp - t0)
                if back is not None:
                    echoes.append(back)
                    dests.append(addr)
            if len(batch) < 512:
                break
        if echoes:
            self.rtp.send_many(echoes, dests)

    def _read_rtcp(self) -> None:
        for data, addr, stamp in self.rtcp.read():
            self.table.on_rtcp(data, addr, stamp - self.t0)

    # -- sending ------------------------------------------------------------------

    def rearm(self) -> None:
        """Arm the timer for the table's next deadline (call after starting a stream)."""
        loop = self.loop
        if loop is None or self.closed:
            return
        deadline = self.table.next_deadline()
        if deadline is None:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            self._armed = float("inf")
            return
        if deadline >= self._armed and self._handle is not None:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._armed = deadline
        self._handle = loop.call_later(max(deadline - self.now(), 0.0), self._on_timer)

    def _on_timer(self) -> None:
        self._handle = None
        self._armed = float("inf")
        if self.closed:
            return
        now = self.now()
        rtp = self.rtp
        hist = self.send_error
        for tick in self.table.due(now):
            if tick.packets:
                late = time.monotonic() - self.t0 - tick.due
                hist.record_value(max(int(late * 1_000_000), 1))
                rtp.send_many(tick.packets, tick.dests)
                self.ticks += 1
        self.flush_rtcp(now)
        self.rearm()

    def flush_rtcp(self, now: float | None = None) -> None:
        """Send RTCP reports that are due, and the BYEs of calls that ended."""
        table = self.table
        out = table.rtcp_due(self.now() if now is None else now)
        out.extend(table.take_rtcp_outbox())
        if out:
            self.rtcp.send_many([p for p, _ in out], [d for _, d in out])


def write_recordings(recordings: list[tuple[str, int, g711.Samples]], worker: int) -> None:
    """Write each call's received audio as ``DIR/call-<number>.wav`` (8 kHz, 16-bit mono).

    A directory that cannot be written loses its recordings, never the run.
    """
    for directory, call_number, samples in recordings:
        try:
            path = Path(directory)
            path.mkdir(parents=True, exist_ok=True)
            with wave.open(str(path / f"call-{call_number}.wav"), "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(8000)
                out.writeframes(samples.astype("<i2").tobytes())
        except OSError:
            continue
