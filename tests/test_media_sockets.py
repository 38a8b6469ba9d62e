"""The media shell on real loopback sockets: two tables, one playing, one echoing."""

from __future__ import annotations

import asyncio
import gc
import itertools
import time

from sipload.cluster.checks import check_snapshot
from sipload.media.negotiate import StreamPlan
from sipload.media.source import tone_frames
from sipload.media.table import MediaSpec, MediaTable
from sipload.mediapump import MediaPump
from sipload.transport.rtp import bind_pair


def _bits() -> itertools.count[int]:
    return itertools.count(0x1000, 7919)


async def _talk(seconds: float, calls: int) -> tuple[MediaPump, MediaPump, list[dict[str, float]],
                                                     list[dict[str, float]]]:
    # the tone's first computation imports numpy (~0.1 s): done before the clock starts,
    # or the player's streams begin that much before the echo's and send more than 1 s
    tone_frames("PCMU", 160)
    # and no collection while streams start and play, as in a worker (transport/loop.py):
    # deep into the suite the 20 streams' start once took 0.1-0.2 s (a full collection of
    # the suite's heap, the likely cause), their first ticks were that late, and the
    # pacing sent 5 packets late and skipped the rest (CI: 55 sent in a 1.0 s sleep,
    # three runs in a row)
    gc.collect()
    gc.disable()
    try:
        return await _play(seconds, calls)
    finally:
        gc.enable()


async def _play(seconds: float, calls: int) -> tuple[MediaPump, MediaPump,
                                                     list[dict[str, float]],
                                                     list[dict[str, float]]]:
    t0 = time.monotonic()
    a_rtp, a_rtcp = bind_pair("127.0.0.1")
    b_rtp, b_rtcp = bind_pair("127.0.0.1")
    bits_a, bits_b = _bits(), itertools.count(0x9000, 104729)
    a = MediaPump(MediaTable(0.0, 0.0, lambda: next(bits_a), "a@test"), a_rtp, a_rtcp, t0)
    b = MediaPump(MediaTable(0.0, 0.0, lambda: next(bits_b), "b@test"), b_rtp, b_rtcp, t0)
    a.start()
    b.start()
    assert a_rtp.kernel_stamps
    play = MediaSpec(play="tone")
    echo = MediaSpec(echo=True)
    for k in range(calls):
        # both sides use one port for every call: the SSRC announced in the SDP tells them apart
        ssrc_a, ssrc_b = a.table.reserve_ssrc(k), b.table.reserve_ssrc(k)
        a.table.start(k, play, StreamPlan("PCMU", 0, 101, b_rtp.address, True, True, 0, ssrc_b),
                      a.now())
        b.table.start(k, echo, StreamPlan("PCMU", 0, 101, a_rtp.address, True, True, 0, ssrc_a),
                      b.now())
    a.rearm()
    b.rearm()
    await asyncio.sleep(seconds)
    # the player reads at its ticks, the echo (no stream of its own) as packets come
    assert a.reads_at_ticks and not b.reads_at_ticks
    a_figs = [f for k in range(calls) if (f := a.table.stop(k, a.now())) is not None]
    a.rearm()
    assert not a.reads_at_ticks  # nothing to send: watched again
    b_figs = [f for k in range(calls) if (f := b.table.stop(k, b.now())) is not None]
    a.close()
    b.close()
    return a, b, a_figs, b_figs


def test_tone_echoed_over_loopback() -> None:
    a, b, a_figs, b_figs = asyncio.run(_talk(1.0, 20))
    assert len(a_figs) == 20
    for fig, back in zip(a_figs, b_figs, strict=True):
        assert 45 <= fig["sent"] <= 52
        assert fig["received"] >= fig["sent"] - 2  # the last in flight at the stop
        assert fig["lost"] == 0 and fig["malformed"] == 0 and fig["foreign"] == 0
        assert fig["jitter_ms"] < 5
        assert fig["mos"] > 4.3
        assert back["received"] == back["sent"]  # an echo sends back all it received
    assert a.table.foreign == 0 and b.table.foreign == 0
    assert a.send_late.get_total_count() >= 45 * 20  # one entry per packet
    figures = a.take_send_figures()
    assert figures["sent"] >= 45 * 20 and figures["unsent"] == figures["skipped"] == 0
    assert "late_us" in figures and a.send_late.get_total_count() == 0
    # the map travels in interval snapshots: the coordinator's checks accept it ...
    media = {"streams": 0, "calls": 0, "sent": 0, "received": 0, "expected": 0, "lost": 0,
             "histograms": {}}
    snap = {"t": 1.0, "worker": 0, "started": 1, "succeeded": 1, "failed": 0, "active": 0,
            "late": 0, "dropped": 0, "retransmissions": 0, "loop_lag_ms": 0.1, "cpu": 0.1,
            "target_rate": 1.0, "histograms": {}, "failures": {}, "codes": {}}
    assert check_snapshot({**snap, "media": {**media, "send": figures}}) is None
    # ... and refuse a broken one
    for bad in ({**figures, "sent": -1}, {**figures, "late_us": "garbage"}, [1]):
        assert check_snapshot({**snap, "media": {**media, "send": bad}}) is not None, bad
    assert b.table.echoed_unattributed == 0


def test_send_figures_of_several_pumps_merge() -> None:
    """A worker with RTP on several source addresses has a pump per address: their
    lateness histograms merge into one the coordinator's checks accept (once, an
    encoded histogram was handed to hdrh's own decoder and every snapshot failed)."""
    from sipload.mediapump import merge_send_figures
    from sipload.stats.histograms import (
        decode_histogram,
        encode_histogram,
        new_histogram,
        record_us,
    )

    figures = []
    for values in ((120, 130, 4000), (90, 70000)):
        h = new_histogram()
        for v in values:
            record_us(h, v)
        figures.append({"sent": len(values), "unsent": 1, "skipped": 0,
                        "late_us": encode_histogram(h)})
    figures.append({"sent": 0, "unsent": 0, "skipped": 2})  # a pump that sent nothing
    merged = merge_send_figures(figures)
    assert (merged["sent"], merged["unsent"], merged["skipped"]) == (5, 2, 2)
    late = decode_histogram(merged["late_us"])
    assert late.get_total_count() == 5
    assert late.get_min_value() == 90 and 69000 <= late.get_max_value() <= 71000
    assert merge_send_figures(figures)["late_us"] == merged["late_us"]  # the merger is reused
