"""A worker's media: its RTP/RTCP pairs and media tables, tied to the scenario's calls.

A scenario with media (or the default UAS, which echoes every stream) gets one
socket pair and one :class:`~sipload.media.table.MediaTable`, driven by a
:class:`~sipload.mediapump.MediaPump`; with several source addresses, one more pair
and table on each further address (:meth:`WorkerMedia.add`), so a call's RTP leaves
from its own address.  After each pump flush the runner hands its calls' settled
media to the tables (:meth:`WorkerMedia.after_events`); each interval snapshot
carries the media figures of every pair (:meth:`WorkerMedia.figures`).
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from sipload.media.srtpecho import SrtpEcho
from sipload.media.table import MediaTable
from sipload.mediapump import MediaPump, merge_send_figures, write_recordings
from sipload.scenario.interpreter import Runner
from sipload.stats.mediaintervals import MediaIntervals
from sipload.transport.rtp import bind_pair

NO_MEDIA_PORT = 6000
"""The port SDP names when the worker has no media sockets (its scenario sends none)."""


class WorkerMedia:
    """The media sockets of worker ``worker``; ``mono0`` is the engine's clock zero on
    ``time.monotonic()``; ``echo_all``: echo every stream (a UAS)."""

    def __init__(self, worker: int, rng: random.Random, mono0: float, echo_all: bool) -> None:
        self.worker = worker
        self.rng = rng
        self.mono0 = mono0
        self.echo_all = echo_all
        self.pumps: list[MediaPump] = []  #: one per source address, the first's first
        self.ports: list[int] = []  #: the RTP port of each

    @property
    def pump(self) -> MediaPump:
        """The first address's pair."""
        return self.pumps[0]

    @property
    def port(self) -> int:
        """The first address's RTP port (what SDP names)."""
        return self.ports[0]

    def add(self, host: str) -> int:
        """Bind a pair on ``host``, its table and running shell; returns its RTP port."""
        rtp, rtcp = bind_pair(host)
        mono0 = self.mono0
        table = MediaTable(time.monotonic() - mono0, time.time() - time.monotonic(),
                           lambda: self.rng.getrandbits(32), f"sipload-{self.worker}@{host}",
                           random_bytes=os.urandom)  # SRTP master keys: secrets
        table.echo_all = self.echo_all
        pump = MediaPump(table, rtp, rtcp, mono0)
        pump.start()
        self.pumps.append(pump)
        self.ports.append(rtp.address[1])
        return rtp.address[1]

    def srtp_echo(self) -> SrtpEcho:
        """The default UAS's SRTP answers and echoes (SDES), on the first table."""
        return SrtpEcho(self.pump.table)

    def attach(self, runner: Runner) -> None:
        """The runner's calls send and receive through these tables."""
        runner.media.attach(self.pump.table, [p.table for p in self.pumps[1:]])

    def after_events(self, runner: Runner, now: float) -> None:
        """After a flush: calls' media settled, media timers re-armed, recordings written."""
        runner.media_flush(now)
        for pump in self.pumps:
            pump.rearm()
        recordings = runner.media.recordings
        if recordings:
            write_recordings(recordings, self.worker)
            recordings.clear()

    def figures(self, runner: Runner, intervals: MediaIntervals) -> dict[str, Any]:
        """The interval snapshot's media map (closes the media interval)."""
        totals, streams = runner.media.packet_totals()
        pumps = self.pumps
        figures = intervals.snapshot(totals, streams, stray=sum(p.table.foreign for p in pumps))
        figures["send"] = merge_send_figures([p.take_send_figures() for p in pumps])
        return figures

    def flush_rtcp(self) -> None:
        self.pump.flush_rtcp()

    def close(self) -> None:
        for pump in self.pumps:
            pump.close()
