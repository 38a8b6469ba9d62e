"""RTP, RTCP, G.711 and RFC 4733 payloads: round trips, known values, hostile input."""

from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipload.media import dtmf, g711, rtcp
from sipload.media.errors import MediaParseError
from sipload.media.rtp import build_rtp, is_rtcp, parse_rtp


def test_rtp_round_trip() -> None:
    data = build_rtp(0, 65535, 0xFFFFFFFF, 0xDEADBEEF, b"\x01" * 160, marker=True,
                     csrcs=(1, 2), padding=4)
    h = parse_rtp(data)
    assert (h.marker, h.payload_type, h.seq, h.timestamp, h.ssrc) == (
        True, 0, 65535, 0xFFFFFFFF, 0xDEADBEEF)
    assert h.csrcs == (1, 2)
    assert data[h.payload_start:h.payload_end] == b"\x01" * 160
    assert h.payload_size == 160


def test_rtp_extension_is_skipped() -> None:
    base = bytearray(build_rtp(8, 1, 2, 3, b""))
    base[0] |= 0x10
    data = bytes(base) + struct.pack("!HH", 0xBEDE, 1) + b"\x00" * 4 + b"abc"
    h = parse_rtp(data)
    assert data[h.payload_start:h.payload_end] == b"abc"


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x80\x00\x00", "short"),
    (b"\x40" + b"\x00" * 11, "version"),                                 # version 1
    (b"\x8f" + b"\x00" * 11 + b"\x00" * 8, "csrc-count"),               # 15 CSRCs, 2 present
    (b"\x90" + b"\x00" * 11 + b"\x00\x00", "extension"),                # extension cut short
    (b"\x90" + b"\x00" * 11 + b"\x00\x00\x00\x05", "extension"),        # 5 words announced
    (b"\xa0" + b"\x00" * 11 + b"ab\x00", "padding"),                    # padding count 0
    (b"\xa0" + b"\x00" * 11 + b"ab\x09", "padding"),                    # more than the payload
])
def test_rtp_lies_are_parse_errors(data: bytes, reason: str) -> None:
    with pytest.raises(MediaParseError) as err:
        parse_rtp(data)
    assert err.value.reason == reason


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_rtp_parser_raises_only_its_own_error(data: bytes) -> None:
    try:
        h = parse_rtp(data)
    except MediaParseError:
        return
    assert 12 <= h.payload_start <= h.payload_end <= len(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120))
def test_rtcp_parser_raises_only_its_own_error(data: bytes) -> None:
    try:
        rtcp.parse_rtcp(b"\x80\xc8" + data)
    except MediaParseError:
        pass


def test_rtcp_mux_detection() -> None:
    assert is_rtcp(rtcp.build_report(1, [], None))
    assert not is_rtcp(build_rtp(0, 1, 1, 1, b"x", marker=True))
    assert not is_rtcp(build_rtp(101, 1, 1, 1, b"x", marker=True))


def test_sr_with_block_sdes_bye_round_trip() -> None:
    ntp = rtcp.ntp_of(1_700_000_000.25)
    packet = (rtcp.build_report(0x11, [(0x22, 64, -3, 70000, 123, 0xABCD, 0x10000)],
                                (ntp, 160, 50, 8000))
              + rtcp.build_sdes(0x11, "call-7@sipload") + rtcp.build_bye(0x11))
    report = rtcp.parse_rtcp(packet)
    assert report.sender == 0x11
    assert report.ntp == ntp and report.rtp_timestamp == 160
    assert (report.packets, report.octets) == (50, 8000)
    (block,) = report.blocks
    assert block.source == 0x22
    assert block.fraction_lost == 0.25
    assert block.cumulative_lost == -3
    assert (block.highest_seq, block.jitter, block.lsr, block.dlsr) == (70000, 123, 0xABCD,
                                                                          0x10000)
    assert report.cname == "call-7@sipload"
    assert report.bye


def test_rr_without_blocks() -> None:
    report = rtcp.parse_rtcp(rtcp.build_report(7, [], None))
    assert report.sender == 7 and report.ntp == 0 and report.blocks == []


@pytest.mark.parametrize("data", [
    b"\x80\xc9\x00\x01",                                   # too short for anything
    b"\x81\xc9\x00\x01\x00\x00\x00\x07",                    # RR claims a block it lacks
    b"\x80\xc9\x00\x05\x00\x00\x00\x07",                    # length beyond the datagram
    b"\x40\xc9\x00\x01\x00\x00\x00\x07",                    # version 1
    b"\xa0\xc9\x00\x01\x00\x00\x00\x00",                    # padding count 0
    b"\x81\xca\x00\x01\x00\x00\x00\x07",                    # SDES chunk without items
])
def test_rtcp_lies_are_parse_errors(data: bytes) -> None:
    with pytest.raises(MediaParseError):
        rtcp.parse_rtcp(data)


def test_ntp_middle() -> None:
    ntp = rtcp.ntp_of(0.5 - rtcp.NTP_EPOCH_OFFSET)
    assert ntp == 0x80000000
    assert rtcp.ntp_middle(ntp) == 0x8000


def test_g711_known_values() -> None:
    zero = np.zeros(1, dtype=np.int16)
    assert g711.encode(zero, "PCMU") == b"\xff"
    assert g711.encode(zero, "PCMA") == b"\xd5"
    assert g711.decode(b"\xff", "PCMU")[0] == 0
    assert g711.decode(b"\x00", "PCMU")[0] == -32124
    assert g711.decode(b"\x80", "PCMU")[0] == 32124
    assert g711.decode(b"\xd5", "PCMA")[0] == 8
    assert g711.decode(b"\xaa", "PCMA")[0] == 32256


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_g711_round_trip_error_is_within_a_segment_step(codec: str) -> None:
    samples = np.arange(-32768, 32768, 7, dtype=np.int16)
    back = g711.decode(g711.encode(samples, codec), codec).astype(np.int32)
    error = np.abs(back - samples.astype(np.int32))
    # The quantisation step is at most 1/16 of a segment: 1024 at the top segment.
    assert int(error.max()) <= 1024 + 8
    assert np.all(error <= np.maximum(np.abs(samples.astype(np.int32)) // 16, 8) + 8)


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_g711_matches_audioop_where_it_exists(codec: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    samples = np.arange(-32768, 32768, dtype=np.int16)
    raw = samples.tobytes()
    every = bytes(range(256))
    if codec == "PCMU":
        assert g711.encode(samples, codec) == audioop.lin2ulaw(raw, 2)
        assert g711.decode(every, codec).tobytes() == audioop.ulaw2lin(every, 2)
    else:
        assert g711.encode(samples, codec) == audioop.lin2alaw(raw, 2)
        assert g711.decode(every, codec).tobytes() == audioop.alaw2lin(every, 2)


def test_telephone_event_round_trip_and_layout() -> None:
    payload = dtmf.encode_event(11, True, 10, 800)
    ev = dtmf.parse_event(payload)
    assert (ev.event, ev.end, ev.volume, ev.duration, ev.digit) == (11, True, 10, 800, "#")
    packets = dtmf.event_packets("5", 800, 160)
    durations = [dtmf.parse_event(p).duration for p, _ in packets]
    ends = [dtmf.parse_event(p).end for p, _ in packets]
    markers = [m for _, m in packets]
    assert durations == [160, 320, 480, 640, 800, 800, 800]
    assert ends == [False] * 4 + [True] * 3
    assert markers == [True] + [False] * 6
    with pytest.raises(MediaParseError):
        dtmf.parse_event(b"\x01\x02")
    with pytest.raises(ValueError, match="not a DTMF key"):
        dtmf.digit_code("x")
