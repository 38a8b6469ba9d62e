"""The asyncio shell of a worker's media: RTP/RTCP sockets ↔ :class:`MediaTable`.

It moves datagrams and re-arms one timer, nothing else:

* the RTP socket is drained in batches (``recvmmsg`` through
  :mod:`sipload.transport.batch`), each datagram with its kernel receive stamp,
  and each batch goes into the table in one call; echoes go back in one batch.
  While streams are sending it is drained at every pacing tick, not watched: the
  stamps are the kernel's, so reading up to a tick later changes no figure, and
  50,000 packets/s no longer wake the loop one or two at a time (measured: the
  wake-ups cost more than the reads).  With no stream sending (an echoing UAS) it
  is watched with ``loop.add_reader`` and read as packets come;
* the RTCP socket is watched with ``loop.add_reader``;
* one timer (a ``timerfd`` where there is one: the loop's own timers are
  millisecond-grained) fires at the table's next pacing tick; each due tick's
  packets are sent as one batch (``sendmmsg``), and how late each packet left
  against its tick's due time is recorded (the send-interval error);
* RTCP reports and the final RTCP BYEs are sent as the table hands them out.

Times are ``time.monotonic() − t0`` where ``t0`` is the engine's start on the
same clock, so the engine's ``now`` and the stamps given here agree.
"""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from sipload.media import g711
from sipload.media.table import MediaTable
from sipload.stats.histograms import (
    HIGHEST_US,
    decode_histogram,
    encode_histogram,
    new_histogram,
    reset_histogram,
)
from sipload.transport.batch import Address
from sipload.transport.hrtimer import PreciseTimer, precise_timer
from sipload.transport.rtp import MediaSocket

#: Datagrams read per batch; a readable socket is drained batch after batch.
READ_BATCH = 256


class MediaPump:
    """Drives one :class:`MediaTable` with a pair of media sockets.

    Attributes:
        send_late: HdrHistogram of each packet's lateness against its tick (µs, at
            least 1), since the last :meth:`take_send_figures`.
        ticks: batches sent.
    """

    def __init__(self, table: MediaTable, rtp: MediaSocket, rtcp: MediaSocket, t0: float) -> None:
        self.table = table
        self.rtp = rtp
        self.rtcp = rtcp
        self.t0 = t0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._timer: PreciseTimer | None = None
        self._armed = float("inf")
        self.send_late = new_histogram()
        self.ticks = 0
        self.closed = False
        self._base = (0, 0, 0)  # sent, unsent, skipped at the last take_send_figures
        self._watching = False  # the RTP socket is watched (else read at each tick)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._watch(True)
        self.loop.add_reader(self.rtcp.fileno(), self._read_rtcp)
        self._timer = precise_timer(self.loop, self._on_timer)
        self.rearm()

    def close(self) -> None:
        if self.closed:
            return
        self.flush_rtcp()
        self.closed = True
        if self._handle is not None:
            self._handle.cancel()
        if self._timer is not None:
            self._timer.close()
        if self.loop is not None:
            self._watch(False)
            self.loop.remove_reader(self.rtcp.fileno())
        self.rtp.close()
        self.rtcp.close()

    # -- receiving ----------------------------------------------------------------

    def _read_rtp(self) -> None:
        table = self.table
        rtp = self.rtp
        echoes: list[bytes] = []
        dests: list[Address] = []
        while True:
            batch = rtp.read(READ_BATCH)
            table.on_rtp_batch(batch, self.t0, echoes, dests)
            if echoes:
                rtp.send_many(echoes, dests)
                echoes.clear()
                dests.clear()
            if len(batch) < READ_BATCH:
                break

    @property
    def reads_at_ticks(self) -> bool:
        """True while the RTP socket is drained at each pacing tick (not watched)."""
        return self.loop is not None and not self._watching and not self.closed

    def _watch(self, on: bool) -> None:
        if self.loop is None or on == self._watching:
            return
        if on:
            self.loop.add_reader(self.rtp.fileno(), self._read_rtp)
        else:
            self.loop.remove_reader(self.rtp.fileno())
        self._watching = on

    def _read_rtcp(self) -> None:
        for data, addr, stamp in self.rtcp.read():
            self.table.on_rtcp(data, addr, stamp - self.t0)

    # -- sending ------------------------------------------------------------------

    def rearm(self) -> None:
        """Arm the timer for the table's next deadline (call after starting a stream)."""
        loop = self.loop
        if loop is None or self.closed:
            return
        # reading at the tick needs the kernel's stamps (Linux); else read as they come
        self._watch(not (self.rtp.kernel_stamps and self.table.sending()))
        deadline = self.table.next_deadline()
        if deadline is None:
            self._disarm()
            self._armed = float("inf")
            return
        if deadline >= self._armed and (self._handle is not None or self._timer is not None):
            return
        self._armed = deadline
        if self._timer is not None:
            self._timer.arm(self.t0 + deadline)
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle = loop.call_later(max(deadline - self.now(), 0.0), self._on_timer)

    def _disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._timer is not None:
            self._timer.disarm()

    def _on_timer(self) -> None:
        self._handle = None
        self._armed = float("inf")
        if self.closed:
            return
        t0 = self.t0
        rtp = self.rtp
        hist = self.send_late
        for tick in self.table.due(time.monotonic() - t0):
            late = time.monotonic() - t0 - tick.due
            hist.record_value(min(max(int(late * 1_000_000), 1), HIGHEST_US), len(tick.packets))
            rtp.send_many(tick.packets, tick.dests)
            self.ticks += 1
        if not self._watching:  # sending on time first; the stamps keep the reads true
            self._read_rtp()
        self.flush_rtcp(self.now())
        self.rearm()

    def flush_rtcp(self, now: float | None = None) -> None:
        """Send RTCP reports that are due, and the BYEs of calls that ended."""
        table = self.table
        out = table.rtcp_due(self.now() if now is None else now)
        out.extend(table.take_rtcp_outbox())
        if out:
            self.rtcp.send_many([p for p, _ in out], [d for _, d in out])

    def take_send_figures(self) -> dict[str, Any]:
        """The sending figures since the last call, for an interval snapshot.

        Returns:
            ``sent`` (packets the kernel took), ``unsent`` (dropped: send buffer
            full), ``skipped`` (not sent: their tick was over ``max_late`` late) and
            ``late_us`` (the lateness histogram, base64 of its HdrHistogram
            encoding; absent when nothing was sent).
        """
        now = (self.rtp.sent, self.rtp.send_dropped, self.table.packets_skipped())
        out: dict[str, Any] = {name: int(b - a) for name, a, b in
                               zip(("sent", "unsent", "skipped"), self._base, now, strict=True)}
        self._base = now
        if self.send_late.get_total_count():
            out["late_us"] = encode_histogram(self.send_late)
            reset_histogram(self.send_late)
        return out


def merge_send_figures(figures: list[dict[str, Any]]) -> dict[str, Any]:
    """Several pumps' :meth:`MediaPump.take_send_figures` as one (counts added,
    lateness histograms merged): a worker with RTP on several source addresses."""
    if len(figures) == 1:
        return figures[0]
    out: dict[str, Any] = {k: sum(int(f.get(k, 0)) for f in figures)
                           for k in ("sent", "unsent", "skipped")}
    late = [f["late_us"] for f in figures if "late_us" in f]
    if late:
        hist = _merged_late()
        for encoded in late:
            hist.add(decode_histogram(encoded))
        out["late_us"] = encode_histogram(hist)
        reset_histogram(hist)
    return out


_MERGED_LATE: list[HdrHistogram] = []


def _merged_late() -> HdrHistogram:
    """One histogram reused for every merge (a new one per snapshot is a reference cycle)."""
    if not _MERGED_LATE:
        _MERGED_LATE.append(new_histogram())
    return _MERGED_LATE[0]


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
