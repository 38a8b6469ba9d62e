"""The send schedule, one call's media wired to another in memory, and payload sources."""

from __future__ import annotations

import io
import itertools
import wave

import numpy as np
import pytest

from sipload.media import g711, source
from sipload.media.call import FIELDS, CallMedia
from sipload.media.dtmf import parse_event
from sipload.media.errors import MediaConfigError
from sipload.media.rtp import build_rtp, parse_rtp
from sipload.media.schedule import OutStream, SendSchedule

T0 = 1000.0
A = ("127.0.0.1", 40000)
B = ("127.0.0.1", 40002)


def stream(dest: tuple[str, int] | None = B, ptime_ticks: int = 1, ssrc: int = 0x1234,
           event_pt: int = -1) -> OutStream:
    frames = source.tone_frames("PCMU", 160 * ptime_ticks)
    return OutStream(ssrc, 0, frames, 160 * ptime_ticks, ptime_ticks, 65534, 1000, dest,
                     event_pt=event_pt)


def test_ticks_on_the_grid() -> None:
    sched = SendSchedule(T0)
    s1, s2 = stream(), stream(ssrc=2)
    sched.add(1, s1)
    sched.add(2, s2)
    assert sched.next_deadline() == T0
    assert sched.due(T0 - 0.001) == []
    ticks = sched.due(T0 + 0.0999)
    assert [t.due for t in ticks] == pytest.approx([T0 + 0.02 * k for k in range(5)])
    assert all(len(t.packets) == 2 and t.dests == [B, B] for t in ticks)
    headers = [parse_rtp(t.packets[0]) for t in ticks]
    assert [h.seq for h in headers] == [65534, 65535, 0, 1, 2]
    assert [h.timestamp for h in headers] == [1000 + 160 * k for k in range(5)]
    assert [h.marker for h in headers] == [True, False, False, False, False]
    assert sched.next_deadline() == pytest.approx(T0 + 0.1)
    assert s1.packets_sent == 5 and s1.octets_sent == 800


def test_payload_loops_over_the_frames() -> None:
    s = stream()
    frames = s.frames
    sent = [s.next_packet()[12:] for _ in range(len(frames) + 1)]
    assert sent[0] == frames[0] and sent[-1] == frames[0] and sent[1] == frames[1]


def test_longer_ptime_sends_every_other_tick() -> None:
    sched = SendSchedule(T0)
    s = stream(ptime_ticks=2)
    sched.add(1, s)
    ticks = sched.due(T0 + 0.09)  # only the ticks with packets come back
    assert [t.due for t in ticks] == pytest.approx([T0, T0 + 0.04, T0 + 0.08])
    assert [parse_rtp(t.packets[0]).timestamp for t in ticks] == [1000, 1320, 1640]


def test_streams_spread_over_the_fine_grid() -> None:
    """100 streams of 20 ms on a 1 ms grid: 5 packets a tick, each stream every 20 ticks."""
    sched = SendSchedule(T0, grid=0.001)
    for key in range(100):
        sched.add(key, stream(ptime_ticks=20, ssrc=key))
    ticks = sched.due(T0 + 0.0995)  # 100 ticks: 0..99
    assert len(ticks) == 100 and {len(t.packets) for t in ticks} == {5}
    sent: dict[int, list[float]] = {}
    for t in ticks:
        for p in t.packets:
            sent.setdefault(parse_rtp(p).ssrc, []).append(t.due)
    assert len(sent) == 100
    for times in sent.values():
        gaps = {round(b - a, 9) for a, b in itertools.pairwise(times)}
        assert gaps == {0.02}
    # a stream that stops frees its slot: the next one takes it
    sched.remove(7)
    phase = sched.streams[8].phase
    sched.due(T0 + 0.1195)
    late = stream(ptime_ticks=20, ssrc=999)
    sched.add(1000, late)
    assert late.phase == 7 % 20 and phase == 8 % 20


def test_removed_then_added_again_sends_once_a_ptime() -> None:
    sched = SendSchedule(T0)
    s = stream()
    sched.add(1, s)
    sched.due(T0)
    sched.remove(1)
    sched.add(1, s)
    ticks = sched.due(T0 + 0.0999)
    assert [len(t.packets) for t in ticks] == [1, 1, 1, 1]


def test_catching_up_keeps_the_grid() -> None:
    """Late calls send every due tick once, with its own due time: no drift."""
    sched = SendSchedule(T0, grid=0.001)
    s = stream(ptime_ticks=20)
    sched.add(1, s)
    dues: list[float] = []
    now = T0
    for step in (0.0, 0.013, 0.047, 0.05, 0.0999, 0.1999):  # the last: 100 ms late
        now = T0 + step
        dues += [t.due for t in sched.due(now)]
    assert dues == pytest.approx([T0 + 0.02 * k for k in range(10)], abs=1e-9)
    assert sched.next_deadline() == pytest.approx(T0 + 0.2)
    assert sched.skipped_ticks == 0


def test_hold_keeps_time_and_resume_marks() -> None:
    sched = SendSchedule(T0)
    s = stream()
    sched.add(1, s)
    sched.due(T0)
    s.pause()
    assert all(not t.packets for t in sched.due(T0 + 0.06))
    s.resume()
    (tick,) = sched.due(T0 + 0.08)
    h = parse_rtp(tick.packets[0])
    assert h.marker and h.timestamp == 1000 + 4 * 160 and h.seq == 65535


def test_stream_without_destination_sends_nothing() -> None:
    sched = SendSchedule(T0)
    s = stream(dest=None)
    sched.add(1, s)
    assert all(not t.packets for t in sched.due(T0 + 0.04))
    s.dest = A
    (tick,) = sched.due(T0 + 0.06)
    assert tick.dests == [A]


def test_a_stalled_shell_skips_old_ticks() -> None:
    sched = SendSchedule(T0, max_late=0.1)
    s = stream()
    sched.add(1, s)
    ticks = sched.due(T0 + 1.0)  # 51 ticks due
    assert len(ticks) == 5
    assert sched.skipped_ticks == 46 and s.skipped == 46
    assert parse_rtp(ticks[0].packets[0]).timestamp == 1000 + 46 * 160
    assert sched.next_deadline() == pytest.approx(T0 + 1.02)


def test_empty_schedule_advances() -> None:
    sched = SendSchedule(T0)
    assert sched.due(T0 + 5) == [] and sched.next_deadline() is None
    sched.add(1, stream())
    assert sched.next_deadline() == pytest.approx(T0 + 5.02)
    assert sched.remove(1) is not None and sched.remove(1) is None


def test_dtmf_replaces_audio() -> None:
    s = stream(event_pt=101)
    s.queue_dtmf("7", duration=0.06, gap=0.04)
    packets = [parse_rtp(s.next_packet()) for _ in range(8)]
    assert [p.payload_type for p in packets] == [101] * 5 + [0] * 3
    assert {p.timestamp for p in packets[:5]} == {1000}
    assert packets[0].marker and packets[5].marker
    assert [p.seq for p in packets] == [(65534 + k) & 0xFFFF for k in range(8)]
    assert packets[7].timestamp == 1000 + 7 * 160
    with pytest.raises(ValueError, match="telephone-event"):
        stream().queue_dtmf("1")


def pair(echo_b: bool = False) -> tuple[CallMedia, CallMedia]:
    a = CallMedia("PCMU", 0, 101, 0xAAAA, B, stream(B, ssrc=0xAAAA, event_pt=101), False, 0.02,
                  0.0, "a@test", False, T0)
    b_out = None if echo_b else stream(A, ssrc=0xBBBB, event_pt=101)
    b = CallMedia("PCMU", 0, 101, 0xBBBB, A, b_out, echo_b, 0.02, 0.0, "b@test", True, T0)
    return a, b


def test_two_calls_wired_in_memory() -> None:
    a, b = pair()
    assert a.out is not None
    for k in range(50):
        data = a.out.next_packet()
        if k in (10, 30):
            continue  # dropped on the way
        assert b.on_rtp(data, A, T0 + 0.02 * k + 0.005) is None
    a.out.queue_dtmf("9", duration=0.04)
    for k in range(50, 60):
        b.on_rtp(a.out.next_packet(), A, T0 + 0.02 * k + 0.005)
    fig = b.figures()
    assert list(fig) == list(FIELDS)
    assert fig["received"] == 58 and fig["lost"] == 2 and fig["expected"] == 60
    assert b.stats.digits == "9"
    assert 4.0 < fig["mos"] < 4.41
    assert b.recorder is not None
    audio = b.recorder.samples()
    assert len(audio) >= 50 * 160
    assert not audio[10 * 160:11 * 160].any()  # the lost packet is silence


def test_echo_returns_packets_and_own_ssrc_is_a_valid_stream() -> None:
    a, b = pair(echo_b=True)
    assert a.out is not None
    for k in range(20):
        data = a.out.next_packet()
        back = b.on_rtp(data, A, T0 + 0.02 * k)
        assert back == data
        a.on_rtp(back, B, T0 + 0.02 * k + 0.001)
    fig = a.figures()
    assert fig["received"] == 20 and fig["lost"] == 0 and fig["ssrc_changes"] == 0
    assert a.stats.ssrc == a.ssrc
    assert b.figures()["sent"] == 20


def test_hostile_and_foreign_datagrams_are_counted() -> None:
    _a, b = pair()
    assert b.on_rtp(b"\x80\x00", A, T0) is None
    b.on_rtp(build_rtp(0, 1, 1, 1, b"x"), ("127.0.0.9", 1), T0)
    b.on_rtp(b"\x81\xc9\x00\x01\x00\x00\x00\x07", A, T0)  # RTCP muxed, lying
    b.on_rtp(build_rtp(101, 1, 1, 1, b"\x01"), A, T0)     # short telephone-event
    fig = b.figures()
    assert fig["malformed"] == 3 and fig["foreign"] == 1 and fig["received"] == 0
    assert fig["mos"] == -1


def test_rtcp_gives_far_end_view_and_rtt() -> None:
    a, b = pair()
    assert a.out is not None
    for k in range(100):
        if k % 10 != 5:
            b.on_rtp(a.out.next_packet(), A, T0 + 0.02 * k)
        else:
            a.out.next_packet()
    assert a.rtcp_due(T0 + 1.0) is None
    sr = a.rtcp_due(T0 + 5.0)
    assert sr is not None
    b.on_rtcp(sr, T0 + 5.010)          # 10 ms on the way
    rr = b.rtcp_bye(T0 + 5.500)        # b holds it 490 ms
    a.on_rtcp(rr, T0 + 5.510)          # 10 ms back
    fig = a.figures()
    assert fig["remote_lost"] == 10
    assert fig["remote_fraction_lost"] == pytest.approx(0.1, abs=0.004)
    assert fig["rtt_ms"] == pytest.approx(20.0, abs=0.1)


def test_move_changes_destination() -> None:
    a, _ = pair()
    a.move(("127.0.0.1", 50000))
    assert a.out is not None and a.out.dest == ("127.0.0.1", 50000)
    assert a.remote_rtcp == ("127.0.0.1", 50001)


def test_tone_and_silence_frames() -> None:
    frames = source.tone_frames("PCMA", 160)
    assert len(frames) == 50 and all(len(f) == 160 for f in frames)
    assert source.tone_frames("PCMA", 160) is frames  # shared between calls
    samples = g711.decode(b"".join(frames), "PCMA").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    assert int(np.argmax(spectrum)) == source.TONE_HZ
    assert source.silence_frames("PCMU", 160) == (b"\xff" * 160,)
    with pytest.raises(MediaConfigError):
        source.tone_samples(5000)


def wav_bytes(rate: int, channels: int, width: int, freq: float, seconds: float) -> bytes:
    n = int(rate * seconds)
    t = np.arange(n) / rate
    mono = 0.5 * np.sin(2 * np.pi * freq * t)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 1:
            data = np.round(mono * 127 + 128).astype(np.uint8)
        else:
            data = np.round(mono * 32767).astype("<i2")
        w.writeframes(np.repeat(data, channels).tobytes())
    return buf.getvalue()


@pytest.mark.parametrize(("rate", "channels", "width"), [(44100, 2, 2), (8000, 1, 1),
                                                          (16000, 1, 2)])
def test_wav_is_resampled_to_8k(rate: int, channels: int, width: int) -> None:
    samples = source.wav_samples(wav_bytes(rate, channels, width, 1000, 0.5), "hello.wav")
    assert len(samples) == pytest.approx(4000, abs=2)
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    assert int(np.argmax(spectrum)) * 8000 / len(samples) == pytest.approx(1000, abs=4)
    frames = source.wav_frames(samples, "PCMU", 160)
    assert len(frames) == 25


def test_float_wav() -> None:
    from scipy.io import wavfile

    buf = io.BytesIO()
    wavfile.write(buf, 48000, (0.25 * np.sin(np.arange(4800) / 10)).astype(np.float32))
    assert len(source.wav_samples(buf.getvalue(), "f.wav")) == 800


@pytest.mark.parametrize(("data", "words"), [
    (b"", "empty"),
    (b"hello world, not audio", "not a WAV"),
    (b"RIFF\x10\x00\x00\x00WAVEfmt ", "cannot read"),
])
def test_bad_wav_names_the_file(data: bytes, words: str) -> None:
    with pytest.raises(MediaConfigError, match=words) as err:
        source.wav_samples(data, "prompts/bad.wav")
    assert "prompts/bad.wav" in str(err.value)


def test_parse_event_helper_from_stream() -> None:
    s = stream(event_pt=101)
    s.queue_dtmf("#", duration=0.02)
    p = s.next_packet()
    h = parse_rtp(p)
    assert parse_event(p[h.payload_start:]).digit == "#"
