"""Tests for sipload.sip.sdp: parsing, serialization, offer/answer, hold/resume."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipload.sip.sdp import (
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SdpError,
    SdpNegotiationError,
    SessionDescription,
    Timing,
    build_answer,
    build_audio_offer,
    bump_version,
    hold,
    negotiated_codecs,
    parse_sdp,
    resume,
)

SEED = (
    b"v=0\r\n"
    b"o=jack 0 0 IN IP4 192.0.2.10\r\n"
    b"s=conversation\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 8000 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-11\r\n"
)

RFC8866_EXAMPLE = """v=0
o=jdoe 3724394400 3724394405 IN IP4 198.51.100.1
s=Call to John Smith
i=SDP Offer #1
u=http://www.jdoe.example.com/home.html
e=Jane Doe <jane@jdoe.example.com>
p=+1 617 555-6011
c=IN IP4 198.51.100.1
t=0 0
m=audio 49170 RTP/AVP 0
m=audio 49180 RTP/AVP 0
m=video 51372 RTP/AVP 99
c=IN IP6 2001:db8::2
a=rtpmap:99 h263-1998/90000
"""

RFC4475 = Path(__file__).parent / "data" / "rfc4475"


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def offer_sdp(*media_sections: str, session_attrs: str = "") -> SessionDescription:
    text = "v=0\no=alice 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"
    return parse_sdp(text + session_attrs + "".join(media_sections))


PCMU_PCMA_TE = (
    "m=audio 4000 RTP/AVP 0 8 101\n"
    "a=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n"
    "a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\n"
)


def answer(offer: SessionDescription, **kwargs: object) -> SessionDescription:
    return build_answer(offer, address="192.0.2.99", port=20000, session_id=42, **kwargs)  # type: ignore[arg-type]


# --- parsing ------------------------------------------------------------------


def test_parse_seed_example() -> None:
    sd = parse_sdp(SEED)
    assert sd.version == 0
    assert sd.origin == Origin("jack", 0, 0, "IN", "IP4", "192.0.2.10")
    assert sd.session_name == "conversation"
    assert sd.connection == Connection("IN", "IP4", "192.0.2.10")
    assert sd.timing == [Timing(0, 0)]
    assert sd.attributes == [] and sd.bandwidths == [] and sd.other_lines == []
    assert len(sd.media) == 1
    md = sd.media[0]
    assert (md.media, md.port, md.port_count, md.proto) == ("audio", 8000, None, "RTP/AVP")
    assert md.formats == ["0", "8", "101"]
    assert md.connection is None
    assert md.attributes == [
        ("rtpmap", "0 PCMU/8000"),
        ("rtpmap", "8 PCMA/8000"),
        ("rtpmap", "101 telephone-event/8000"),
        ("fmtp", "101 0-11"),
    ]
    assert md.rtpmap("101") == RtpMap("101", "telephone-event", 8000)
    assert md.rtpmap("8") == RtpMap("8", "PCMA", 8000)
    assert md.rtpmap("18") is None
    assert md.fmtp("101") == "0-11"
    assert md.fmtp("0") is None
    assert md.direction is None
    assert sd.direction == "sendrecv"
    assert sd.media_direction(0) == "sendrecv"
    assert sd.media_connection(0) == sd.connection


def test_seed_round_trip_is_byte_exact() -> None:
    sd = parse_sdp(SEED)
    assert sd.to_bytes() == SEED
    assert parse_sdp(sd.to_bytes()) == sd
    assert parse_sdp(SEED.decode()) == sd


def test_lf_only_and_trailing_whitespace_tolerated() -> None:
    sloppy = SEED.decode().replace("\r\n", " \t\n") + "\n\n"
    sd = parse_sdp(sloppy)
    assert sd == parse_sdp(SEED)
    assert sd.to_bytes() == SEED


def test_parse_rfc8866_example() -> None:
    sd = parse_sdp(RFC8866_EXAMPLE)
    assert sd.origin == Origin("jdoe", 3724394400, 3724394405, "IN", "IP4", "198.51.100.1")
    assert sd.session_name == "Call to John Smith"
    assert sd.other_lines == [
        ("i", "SDP Offer #1"),
        ("u", "http://www.jdoe.example.com/home.html"),
        ("e", "Jane Doe <jane@jdoe.example.com>"),
        ("p", "+1 617 555-6011"),
    ]
    assert [(m.media, m.port, m.formats) for m in sd.media] == [
        ("audio", 49170, ["0"]),
        ("audio", 49180, ["0"]),
        ("video", 51372, ["99"]),
    ]
    assert sd.media_connection(0) == Connection("IN", "IP4", "198.51.100.1")
    assert sd.media[2].connection == Connection("IN", "IP6", "2001:db8::2")
    assert sd.media_connection(2) == sd.media[2].connection
    assert sd.media[2].rtpmap("99") == RtpMap("99", "h263-1998", 90000)
    assert sd.media[0].codec("0") == RtpMap("0", "PCMU", 8000)  # static default
    # Already in canonical order, so serialization reproduces the input with CRLF.
    assert sd.to_bytes() == crlf(RFC8866_EXAMPLE)
    assert parse_sdp(sd.to_bytes()) == sd


def test_unknown_and_optional_line_types_survive_round_trip() -> None:
    text = (
        "v=0\no=- 1 2 IN IP4 10.0.0.1\ns=x\ni=info\nc=IN IP4 10.0.0.1\nb=AS:64\n"
        "t=10 20\nr=604800 3600 0 90000\nt=0 0\nz=2882844526 -1h\nk=prompt\ny=unknown thing\n"
        "a=tool:sipload\na=recvonly\n"
        "m=audio 5004/2 RTP/AVP 0\ni=voice\nb=TIAS:64000\nk=clear:x\nQ=upper case\n"
        "a=ptime:20\na=foo:\n"
    )
    sd = parse_sdp(text)
    assert sd.bandwidths == [("AS", 64)]
    assert sd.timing == [Timing(10, 20, ("604800 3600 0 90000",)), Timing(0, 0)]
    assert sd.other_lines == [
        ("i", "info"),
        ("z", "2882844526 -1h"),
        ("k", "prompt"),
        ("y", "unknown thing"),
    ]
    md = sd.media[0]
    assert md.port_count == 2
    assert md.bandwidths == [("TIAS", 64000)]
    assert md.other_lines == [("i", "voice"), ("k", "clear:x"), ("Q", "upper case")]
    assert md.ptime == 20
    assert ("foo", "") in md.attributes  # empty value differs from a flag
    assert sd.direction == "recvonly"
    assert sd.media_direction(0) == "recvonly"  # inherited from session level
    assert sd.to_bytes() == crlf(text)
    assert parse_sdp(sd.to_bytes()) == sd


def test_out_of_order_other_lines_are_normalised_stably() -> None:
    text = "v=0\no=- 1 2 IN IP4 h\ns=x\ny=first\ni=late info\nt=0 0\n"
    sd = parse_sdp(text)
    assert sd.other_lines == [("i", "late info"), ("y", "first")]
    assert parse_sdp(sd.to_bytes()) == sd


def test_empty_session_name_written_as_single_space() -> None:
    sd = parse_sdp("v=0\no=- 1 2 IN IP4 h\ns= \nt=0 0\n")
    assert sd.session_name == ""
    assert b"\r\ns= \r\n" in sd.to_bytes()
    assert parse_sdp(sd.to_bytes()) == sd


def test_media_direction_overrides_session_direction() -> None:
    sd = offer_sdp(
        "m=audio 4000 RTP/AVP 0\na=sendonly\n",
        "m=audio 4002 RTP/AVP 0\n",
        session_attrs="a=inactive\n",
    )
    assert sd.direction == "inactive"
    assert sd.media[0].direction == "sendonly"
    assert sd.media_direction(0) == "sendonly"
    assert sd.media[1].direction is None
    assert sd.media_direction(1) == "inactive"


HEAD = "v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\n"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", None, "empty"),
        ("o=- 1 1 IN IP4 h\nv=0\n", 1, "first line"),
        ("v=1\no=- 1 1 IN IP4 h\ns=-\nt=0 0\n", 1, "version"),
        ("v=0\nv=0\n", 2, "v="),
        (HEAD + "m=audio 4000 RTP/AVP 0\nmissing equals\n", 6, "<letter>=<value>"),
        (HEAD + "a =foo\n", 5, "<letter>=<value>"),
        (HEAD + "=foo\n", 5, "<letter>=<value>"),
        (HEAD + "1=foo\n", 5, "<letter>=<value>"),
        (HEAD + "\nm=audio 4000 RTP/AVP 0\n", 5, "<letter>=<value>"),
        (HEAD + "m=audio notaport RTP/AVP 0\n", 5, "m= port"),
        (HEAD + "m=audio 70000 RTP/AVP 0\n", 5, "out of range"),
        (HEAD + "m=audio 4000/x RTP/AVP 0\n", 5, "port count"),
        (HEAD + "m=audio 4000\n", 5, "m= needs"),
        ("v=0\no=- 1 IN IP4 h\ns=-\nt=0 0\n", 2, "6 fields"),
        ("v=0\no=- x 1 IN IP4 h\ns=-\nt=0 0\n", 2, "sess-id"),
        ("v=0\no=- 1 -1 IN IP4 h\ns=-\nt=0 0\n", 2, "sess-version"),
        ("v=0\no=- 1 1 IN IP4 h\no=- 1 1 IN IP4 h\n", 3, "duplicate o="),
        (HEAD + "s=again\n", 5, "duplicate s="),
        (HEAD + "c=IN IP4\n", 5, "c= needs"),
        (HEAD + "c=IN IP4 a\nc=IN IP4 b\n", 6, "more than one c="),
        (HEAD + "b=AS\n", 5, "b= needs"),
        (HEAD + "b=AS:lots\n", 5, "b= bandwidth"),
        (HEAD + "t=0\n", 5, "t= needs"),
        (HEAD + "t=now 0\n", 5, "t= start"),
        ("v=0\no=- 1 1 IN IP4 h\ns=-\nr=1 2 3\nt=0 0\n", 4, "r= line before"),
        (HEAD + "a=\n", 5, "a= needs"),
        (HEAD + "a=:value\n", 5, "a= needs"),
        (HEAD + "a=bad name:1\n", 5, "a= needs"),
        (HEAD + "m=audio 4000 RTP/AVP 0\nt=0 0\n", 6, "not allowed in a media section"),
        (HEAD + "m=audio 4000 RTP/AVP 0\no=- 1 1 IN IP4 h\n", 6, "not allowed"),
        ("v=0\ns=-\nt=0 0\n", None, "missing o="),
        ("v=0\no=- 1 1 IN IP4 h\nt=0 0\n", None, "missing s="),
        ("v=0\no=- 1 1 IN IP4 h\ns=-\n", None, "missing t="),
        (HEAD + "s=a\0b\n", 5, "NUL or stray CR"),
        (HEAD + "a=x:a\0b\n", 5, "NUL or stray CR"),
        (HEAD + "a=x:a\rb\r\n", 5, "NUL or stray CR"),
    ],
)
def test_malformed_sdp_rejected(text: str, line: int | None, fragment: str) -> None:
    with pytest.raises(SdpError) as info:
        parse_sdp(text)
    assert info.value.line == line
    assert fragment in str(info.value)
    if line is not None:
        assert f"line {line}" in str(info.value)


def test_sdp_error_is_value_error() -> None:
    assert issubclass(SdpError, ValueError)
    assert issubclass(SdpNegotiationError, SdpError)


def test_sdp_error_pickles_with_line_number() -> None:
    err = pickle.loads(pickle.dumps(SdpError("bad thing", 7)))
    assert (type(err), err.line, err.reason, str(err)) == (
        SdpError,
        7,
        "bad thing",
        "SDP line 7: bad thing",
    )
    neg = pickle.loads(pickle.dumps(SdpNegotiationError("nothing")))
    assert type(neg) is SdpNegotiationError and neg.line is None and str(neg) == "nothing"


def test_malformed_rtpmap_is_kept_but_not_decoded() -> None:
    sd = offer_sdp("m=audio 4000 RTP/AVP 96\na=rtpmap:96 nonsense\n")
    assert sd.media[0].rtpmap("96") is None
    assert sd.media[0].codec("96") is None
    assert parse_sdp(sd.to_bytes()) == sd


@pytest.mark.parametrize(
    "mutate",
    [
        lambda sd: setattr(sd, "session_name", "evil\r\nm=video 1 RTP/AVP 31"),
        lambda sd: setattr(sd, "origin", Origin("two words", 1, 1, "IN", "IP4", "h")),
        lambda sd: sd.attributes.append(("na:me", None)),
        lambda sd: sd.attributes.append(("x", "line\nbreak")),
        lambda sd: sd.other_lines.append(("m", "audio 1 RTP/AVP 0")),
        lambda sd: sd.bandwidths.append(("A:S", 1)),
        lambda sd: setattr(sd.media[0], "port", 70000),
        lambda sd: setattr(sd.media[0], "port", -1),
        lambda sd: sd.media[0].formats.append(""),
    ],
)
def test_serialization_refuses_unrepresentable_fields(mutate: object) -> None:
    sd = parse_sdp(SEED)
    mutate(sd)  # type: ignore[operator]
    with pytest.raises(SdpError, match="cannot serialize"):
        sd.to_bytes()


def _rfc4475_sdp_bodies() -> list[tuple[str, bytes]]:
    bodies = []
    for path in sorted(RFC4475.glob("*.dat")):
        data = path.read_bytes()
        _, sep, body = data.partition(b"\r\n\r\n")
        if sep and body.startswith(b"v=0"):
            bodies.append((path.name, body))
    return bodies


@pytest.mark.parametrize(("name", "body"), _rfc4475_sdp_bodies())
def test_rfc4475_torture_bodies(name: str, body: bytes) -> None:
    if name == "mismatch02.dat":  # truncated body: no s= or t= line
        with pytest.raises(SdpError):
            parse_sdp(body)
        return
    sd = parse_sdp(body)
    assert sd.media
    assert parse_sdp(sd.to_bytes()) == sd


# --- building offers --------------------------------------------------------------


def test_build_audio_offer_matches_seed() -> None:
    sd = build_audio_offer(
        "192.0.2.10", 8000, session_id=0, username="jack", session_name="conversation"
    )
    assert sd.to_bytes() == SEED
    assert sd == parse_sdp(SEED)


def test_build_audio_offer_options() -> None:
    sd = build_audio_offer(
        "192.0.2.1",
        4000,
        session_id=123456789012,
        version=3,
        codecs=("G729", "pcmu", "opus", "telephone-event", "iLBC"),
        ptime=20,
        direction="sendonly",
        dtmf_events="0-15",
    )
    md = sd.media[0]
    assert sd.origin == Origin("sipload", 123456789012, 3, "IN", "IP4", "192.0.2.1")
    assert md.formats == ["18", "0", "96", "101", "97"]
    assert md.rtpmap("96") == RtpMap("96", "opus", 48000, 2)
    assert md.rtpmap("97") == RtpMap("97", "iLBC", 8000)
    assert md.fmtp("101") == "0-15"
    assert md.ptime == 20
    assert md.direction == "sendonly"
    assert b"a=rtpmap:96 opus/48000/2\r\n" in sd.to_bytes()
    assert parse_sdp(sd.to_bytes()) == sd


def test_build_audio_offer_rejects_unknown_codec() -> None:
    with pytest.raises(ValueError, match="unknown codec"):
        build_audio_offer("192.0.2.1", 4000, session_id=1, codecs=("PCMU", "AMR-WB-ish"))
    with pytest.raises(ValueError, match="at least one"):
        build_audio_offer("192.0.2.1", 4000, session_id=1, codecs=())


@pytest.mark.parametrize("ipv6", [True, False])
def test_ipv6_offer(ipv6: bool) -> None:
    sd = build_audio_offer("::1", 4000, session_id=5, ipv6=ipv6)
    assert sd.connection == Connection("IN", "IP6", "::1")
    assert sd.origin.addrtype == "IP6"
    data = sd.to_bytes()
    assert b"c=IN IP6 ::1\r\n" in data
    assert b"o=sipload 5 0 IN IP6 ::1\r\n" in data
    assert parse_sdp(data) == sd


def test_parse_ipv6() -> None:
    sd = parse_sdp("v=0\no=- 1 1 IN IP6 ::1\ns=-\nc=IN IP6 ::1\nt=0 0\nm=audio 4000 RTP/AVP 0\n")
    assert sd.connection == Connection("IN", "IP6", "::1")
    assert sd.origin.address == "::1"
    ans = build_answer(sd, address="2001:db8::7", port=6000, session_id=9)
    assert ans.connection == Connection("IN", "IP6", "2001:db8::7")


# --- offer/answer ---------------------------------------------------------------


def test_answer_subset_of_codecs_in_offerer_order() -> None:
    offer = offer_sdp(PCMU_PCMA_TE)
    ans = answer(offer, supported=("telephone-event", "PCMA"))
    md = ans.media[0]
    assert (md.media, md.port, md.proto) == ("audio", 20000, "RTP/AVP")
    assert md.formats == ["8", "101"]
    assert md.attributes == [
        ("rtpmap", "8 PCMA/8000"),
        ("rtpmap", "101 telephone-event/8000"),
        ("fmtp", "101 0-15"),
    ]
    assert ans.origin == Origin("sipload", 42, 0, "IN", "IP4", "192.0.2.99")
    assert ans.connection == Connection("IN", "IP4", "192.0.2.99")
    assert ans.timing == offer.timing
    assert negotiated_codecs(offer, ans) == ["PCMA", "telephone-event"]
    assert parse_sdp(ans.to_bytes()) == ans


def test_answer_keeps_offerers_dynamic_payload_numbers() -> None:
    offer = offer_sdp(
        "m=audio 4000 RTP/AVP 8 96 97\n"
        "a=rtpmap:8 PCMA/8000\na=rtpmap:96 TELEPHONE-EVENT/8000\na=fmtp:96 0-16\n"
        "a=rtpmap:97 telephone-event/48000\n"
    )
    ans = answer(offer)
    md = ans.media[0]
    assert md.formats == ["8", "96"]  # 48 kHz telephone-event is not ours
    assert md.rtpmap("96") == RtpMap("96", "TELEPHONE-EVENT", 8000)
    assert md.fmtp("96") == "0-16"
    assert "101" not in md.formats
    assert negotiated_codecs(offer, ans) == ["PCMA", "TELEPHONE-EVENT"]


def test_answer_matches_static_payload_without_rtpmap() -> None:
    offer = offer_sdp("m=audio 4000 RTP/AVP 18 0 3\n")
    ans = answer(offer)
    assert ans.media[0].formats == ["0"]
    assert ans.media[0].attributes == [("rtpmap", "0 PCMU/8000")]
    assert negotiated_codecs(offer, ans) == ["PCMU"]


def test_answer_static_number_remapped_by_rtpmap_is_matched_by_name() -> None:
    # A (non-conforming) offer re-using PT 0 for G729: match by rtpmap, not number.
    offer = offer_sdp("m=audio 4000 RTP/AVP 0 8\na=rtpmap:0 G729/8000\n")
    assert answer(offer).media[0].formats == ["8"]


def test_answer_no_common_codec_rejects_that_stream_only() -> None:
    offer = offer_sdp(
        "m=audio 4000 RTP/AVP 18\na=rtpmap:18 G729/8000\n",
        PCMU_PCMA_TE,
    )
    ans = answer(offer)
    assert len(ans.media) == 2
    rejected, accepted = ans.media
    assert (rejected.media, rejected.port, rejected.proto) == ("audio", 0, "RTP/AVP")
    assert rejected.formats == ["18"]
    assert rejected.attributes == []
    assert accepted.port == 20000
    assert accepted.formats == ["0", "8", "101"]
    # The first audio stream was rejected, so nothing was agreed for it.
    assert negotiated_codecs(offer, ans) == []


def test_answer_only_telephone_event_in_common_is_rejected() -> None:
    offer = offer_sdp(
        "m=audio 4000 RTP/AVP 18 101\na=rtpmap:18 G729/8000\na=rtpmap:101 telephone-event/8000\n"
    )
    with pytest.raises(SdpNegotiationError, match="no common codec"):
        answer(offer)


def test_answer_all_rejected_raises_negotiation_error() -> None:
    offer = offer_sdp("m=audio 4000 RTP/AVP 18\n", "m=video 5000 RTP/AVP 31\n")
    with pytest.raises(SdpNegotiationError) as info:
        answer(offer)
    assert isinstance(info.value, SdpError)
    assert "m-line 1" in str(info.value) and "m-line 2" in str(info.value)


def test_answer_rejects_video_with_port_zero() -> None:
    offer = offer_sdp(
        PCMU_PCMA_TE,
        "m=video 5000 RTP/AVP 31 34\na=rtpmap:31 H261/90000\n",
    )
    ans = answer(offer)
    assert [m.media for m in ans.media] == ["audio", "video"]
    video = ans.media[1]
    assert (video.port, video.proto, video.formats) == (0, "RTP/AVP", ["31", "34"])
    assert b"m=video 0 RTP/AVP 31 34\r\n" in ans.to_bytes()
    assert negotiated_codecs(offer, ans) == ["PCMU", "PCMA", "telephone-event"]


def test_answer_keeps_disabled_and_unsupported_proto_streams_rejected() -> None:
    offer = offer_sdp(
        "m=audio 0 RTP/AVP 0\n",
        "m=audio 4002 RTP/SAVP 0\n",
        "m=audio 4004 RTP/AVP 0\n",
    )
    ans = answer(offer)
    assert [(m.port, m.proto) for m in ans.media] == [
        (0, "RTP/AVP"),
        (0, "RTP/SAVP"),
        (20000, "RTP/AVP"),
    ]
    assert negotiated_codecs(offer, ans) == []  # the first audio stream was disabled


def test_answer_multiple_audio_streams_get_distinct_ports() -> None:
    offer = offer_sdp(PCMU_PCMA_TE, PCMU_PCMA_TE)
    ans = answer(offer, ptime=30)
    assert [m.port for m in ans.media] == [20000, 20002]
    assert all(m.ptime == 30 for m in ans.media)


def test_answer_to_offer_without_media_has_no_media() -> None:
    offer = parse_sdp("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\n")
    assert answer(offer).media == []
    assert negotiated_codecs(offer, answer(offer)) == []


@pytest.mark.parametrize(
    ("offered", "wanted", "expected"),
    [
        ("sendrecv", None, "sendrecv"),
        ("sendonly", None, "recvonly"),
        ("recvonly", None, "sendonly"),
        ("inactive", None, "inactive"),
        ("sendrecv", "sendonly", "sendonly"),
        ("sendrecv", "recvonly", "recvonly"),
        ("sendrecv", "inactive", "inactive"),
        ("sendonly", "sendrecv", "recvonly"),
        ("sendonly", "sendonly", "inactive"),
        ("recvonly", "recvonly", "inactive"),
        ("recvonly", "sendrecv", "sendonly"),
        ("inactive", "sendrecv", "inactive"),
    ],
)
def test_answer_direction(
    offered: Direction, wanted: Direction | None, expected: Direction
) -> None:
    offer = offer_sdp(PCMU_PCMA_TE + f"a={offered}\n")
    ans = answer(offer, direction=wanted)
    assert ans.media_direction(0) == expected
    # sendrecv is the default and is left implicit, like the seed offer.
    assert ans.media[0].direction == (None if expected == "sendrecv" else expected)
    assert parse_sdp(ans.to_bytes()).media_direction(0) == expected


def test_answer_direction_uses_session_level_attribute() -> None:
    offer = offer_sdp(PCMU_PCMA_TE, session_attrs="a=sendonly\n")
    assert answer(offer).media_direction(0) == "recvonly"


def test_answer_unknown_supported_codec_is_value_error() -> None:
    with pytest.raises(ValueError, match="unknown codec"):
        answer(offer_sdp(PCMU_PCMA_TE), supported=("PCMU", "nope"))


def test_negotiated_codecs_with_answer_lacking_rtpmap() -> None:
    offer = offer_sdp(PCMU_PCMA_TE)
    ans = parse_sdp("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=audio 5000 RTP/AVP 8 101\n")
    assert negotiated_codecs(offer, ans) == ["PCMA", "telephone-event"]


# --- hold / resume ---------------------------------------------------------------


def test_hold_and_resume() -> None:
    offer = build_audio_offer("192.0.2.1", 4000, session_id=77, version=4)
    held = hold(offer)
    assert held.origin.sess_version == 5
    assert held.origin.sess_id == 77
    assert held.media_direction(0) == "sendonly"
    assert b"a=sendonly\r\n" in held.to_bytes()
    # The input is not modified.
    assert offer.origin.sess_version == 4
    assert offer.media[0].direction is None

    resumed = resume(held)
    assert resumed.origin.sess_version == 6
    assert resumed.media_direction(0) == "sendrecv"
    assert resumed.media[0].direction == "sendrecv"
    assert resumed.media[0].attributes.count(("sendrecv", None)) == 1
    assert [a for a in resumed.media[0].attributes if a[1] is None] == [("sendrecv", None)]
    assert parse_sdp(resumed.to_bytes()) == resumed


def test_hold_inactive_and_from_recvonly() -> None:
    offer = build_audio_offer("192.0.2.1", 4000, session_id=1)
    assert hold(offer, inactive=True).media_direction(0) == "inactive"
    recvonly = build_audio_offer("192.0.2.1", 4000, session_id=1, direction="recvonly")
    assert hold(recvonly).media_direction(0) == "inactive"  # RFC 6337 §5.3


def test_hold_replaces_session_level_direction_and_skips_rejected_streams() -> None:
    sd = offer_sdp(PCMU_PCMA_TE, "m=video 0 RTP/AVP 31\n", session_attrs="a=sendrecv\n")
    held = hold(sd)
    assert held.attributes == []
    assert held.media[0].direction == "sendonly"
    assert held.media[1].direction is None and held.media[1].port == 0
    assert held.origin.sess_version == sd.origin.sess_version + 1


def test_versions_increase_with_each_reoffer() -> None:
    sd = build_audio_offer("192.0.2.1", 4000, session_id=1)
    versions = [sd.origin.sess_version]
    for step in (hold, resume, bump_version, hold, resume):
        sd = step(sd)
        versions.append(sd.origin.sess_version)
    assert versions == [0, 1, 2, 3, 4, 5]


# --- property test ---------------------------------------------------------------

_TOKEN_CHARS = st.characters(min_codepoint=33, max_codepoint=0x2FF)
token = st.text(_TOKEN_CHARS, min_size=1, max_size=12)
name_token = st.text(
    st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters=":"),
    min_size=1,
    max_size=12,
)
text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\0"), max_size=24).map(
    lambda s: s.rstrip(" \t")
)
uint = st.integers(min_value=0, max_value=2**64)
attribute = st.tuples(name_token, st.none() | text)
bandwidth = st.tuples(name_token, uint)
connection = st.builds(Connection, token, token, token)
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [
    chr(c) for c in range(ord("A"), ord("Z") + 1)
]


def other_lines(early: str) -> st.SearchStrategy[list[tuple[str, str]]]:
    late = [c for c in LETTERS if c not in "vosctrbam" + early]
    first = st.lists(st.tuples(st.sampled_from(list(early)), text), max_size=3)
    rest = st.lists(st.tuples(st.sampled_from(late), text), max_size=3)
    return st.builds(lambda a, b: a + b, first, rest)


media_description = st.builds(
    MediaDescription,
    media=token,
    port=st.integers(0, 65535),
    proto=token,
    formats=st.lists(token, max_size=5),
    port_count=st.none() | st.integers(1, 16),
    connection=st.none() | connection,
    bandwidths=st.lists(bandwidth, max_size=2),
    attributes=st.lists(attribute, max_size=5),
    other_lines=other_lines("i"),
)
session_description = st.builds(
    SessionDescription,
    origin=st.builds(Origin, token, uint, uint, token, token, token),
    session_name=text,
    connection=st.none() | connection,
    timing=st.lists(
        st.builds(Timing, uint, uint, st.lists(text, max_size=2).map(tuple)),
        min_size=1,
        max_size=3,
    ),
    bandwidths=st.lists(bandwidth, max_size=2),
    attributes=st.lists(attribute, max_size=5),
    media=st.lists(media_description, max_size=3),
    other_lines=other_lines("iuep"),
)


@given(session_description)
def test_any_session_description_round_trips(sd: SessionDescription) -> None:
    data = sd.to_bytes()
    assert data.endswith(b"\r\n")
    parsed = parse_sdp(data)
    assert parsed == sd
    assert parsed.to_bytes() == data
    assert parse_sdp(data.replace(b"\r\n", b"\n")) == sd


_LINES = st.sampled_from(
    ["v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "r=7d 1h 0", "c=IN IP4 h", "b=AS:9",
     "m=audio 4000 RTP/AVP 0", "a=sendonly", "a=rtpmap:0 PCMU/8000", "i=x", "y= z"]
)  # fmt: skip


@given(st.lists(_LINES | st.text(max_size=12), max_size=12), st.sampled_from(["\n", "\r\n"]))
def test_parser_accepts_or_raises_sdp_error_and_accepted_input_round_trips(
    lines: list[str], newline: str
) -> None:
    try:
        sd = parse_sdp(newline.join(lines))
    except SdpError:
        return
    assert parse_sdp(sd.to_bytes()) == sd
