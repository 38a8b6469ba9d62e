"""From a settled SDP offer/answer to what one call's RTP stream does (RFC 3264).

:func:`plan_stream` reads the first audio stream the two descriptions agree on
and returns a :class:`StreamPlan`: the codec and payload types of the *answer*
(RFC 3264 §6.1: the answerer's list is what both will use), the far end's RTP
address, and whether we send and receive given both sides' directions (§5.1,
§8.4: hold is sendonly/inactive; an old-style c=0.0.0.0 also holds).  A pair of
descriptions with no usable audio line, or only codecs sipload cannot encode,
gives a :class:`MediaPlanError` whose message is the call's media failure detail.

An ``RTP/SAVP`` stream (SRTP keyed with SDES, RFC 4568) needs both sides on
RTP/SAVP and an ``a=crypto`` exchange that :func:`sipload.media.sdes.negotiate`
accepts; the plan then carries the stream's :class:`~sipload.media.sdes.Keys`.
A far end that answers an SRTP offer with RTP/AVP, or the other way round, or
whose crypto lines cannot key the stream, fails the plan with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from sipload.media import sdes
from sipload.sip import sdp

#: Codecs sipload can send and decode.
AUDIO_CODECS = ("PCMU", "PCMA")
Address = tuple[str, int]


class MediaPlanError(ValueError):
    """The SDP exchange leaves no stream sipload can use (the message says why)."""


class StreamPlan:
    """What a call's RTP stream does after an offer/answer.

    Attributes:
        codec: "PCMU" or "PCMA".
        payload_type: its payload type number in this session.
        event_pt: the telephone-event payload type, or -1.
        remote: the far end's RTP address, or None when it holds with c=0.0.0.0.
        send: we may send (their side receives and ours sends).
        receive: we expect packets.
        ptime_ms: the far end's a=ptime, or 0 when it gave none.
        remote_ssrc: the SSRC the far end announced with a=ssrc (RFC 5576), or -1.
        srtp: the SRTP keys of an RTP/SAVP stream, or None for plain RTP.
    """

    __slots__ = ("codec", "event_pt", "payload_type", "ptime_ms", "receive", "remote",
                 "remote_ssrc", "send", "srtp")

    def __init__(self, codec: str, payload_type: int, event_pt: int, remote: Address | None,
                 send: bool, receive: bool, ptime_ms: int, remote_ssrc: int = -1,
                 srtp: sdes.Keys | None = None) -> None:
        self.codec = codec
        self.payload_type = payload_type
        self.event_pt = event_pt
        self.remote = remote
        self.send = send
        self.receive = receive
        self.ptime_ms = ptime_ms
        self.remote_ssrc = remote_ssrc
        self.srtp = srtp


def plan_stream(local: sdp.SessionDescription, remote: sdp.SessionDescription,
                remote_is_answer: bool,
                suites: Sequence[str] = sdes.DEFAULT_SUITES) -> StreamPlan:
    """The stream plan of a completed offer/answer.

    Args:
        local: our description (offer or answer).
        remote: the far end's description.
        remote_is_answer: True when ``remote`` answered our offer.
        suites: the SRTP suites we accept on an RTP/SAVP stream.

    Raises:
        MediaPlanError: no usable audio stream, no codec sipload can encode, or an
            RTP/SAVP stream whose SDES exchange cannot key it.
    """
    answer = remote if remote_is_answer else local
    why: list[str] = []
    for index, md in enumerate(remote.media):
        if md.media != "audio":
            why.append(f"m={md.media} is not audio")
            continue
        if md.port == 0:
            why.append("its audio stream is rejected (port 0)")
            continue
        if md.proto not in (sdes.AVP, sdes.SAVP):
            why.append(f"its audio stream is {md.proto}, sipload sends RTP/AVP or RTP/SAVP "
                       "(SRTP with SDES keys)")
            continue
        if index >= len(local.media) or local.media[index].port == 0:
            why.append("it has an audio stream where ours has none")
            continue
        mine = local.media[index].proto
        if md.proto != mine:
            theirs_is = "answered" if remote_is_answer else "offered"
            raise MediaPlanError(f"the far end {theirs_is} {md.proto} where ours is {mine}"
                                 + (" (it did not take SRTP)" if mine == sdes.SAVP else ""))
        keys: sdes.Keys | None = None
        if md.proto == sdes.SAVP:
            try:
                keys = sdes.negotiate(local.media[index], md, remote_is_answer, suites)
            except sdes.CryptoError as e:
                raise MediaPlanError(f"SRTP: {e}") from None
        if index >= len(answer.media):
            continue
        answered = answer.media[index]
        codec = ""
        payload_type = -1
        event_pt = -1
        for fmt in answered.formats:
            rtpmap = answered.codec(fmt)
            if rtpmap is None or not fmt.isdigit():
                continue
            name = rtpmap.encoding.upper()
            if name == "TELEPHONE-EVENT" and event_pt < 0:
                event_pt = int(fmt)
            elif name in AUDIO_CODECS and not codec and rtpmap.clock_rate == 8000:
                codec = name
                payload_type = int(fmt)
        if not codec:
            names = [c.encoding for c in map(answered.codec, answered.formats) if c is not None]
            raise MediaPlanError("no codec sipload can send in the answer (offered: "
                                 + (", ".join(names) or "none") + "; sipload sends PCMU, PCMA)")
        conn = remote.media_connection(index)
        if conn is None:
            raise MediaPlanError("the far end's SDP has no c= line for its audio stream")
        held_by_address = conn.address in ("0.0.0.0", "::")
        theirs = remote.media_direction(index)
        ours = local.media_direction(index)
        send = theirs in ("sendrecv", "recvonly") and ours in ("sendrecv", "sendonly") \
            and not held_by_address
        receive = theirs in ("sendrecv", "sendonly") and ours in ("sendrecv", "recvonly")
        address = None if held_by_address else (conn.address, md.port)
        ptime = md.ptime or 0
        return StreamPlan(codec, payload_type, event_pt, address, send, receive, ptime,
                          announced_ssrc(md), keys)
    if not remote.media:
        why.append("it has no m= line")
    raise MediaPlanError("no usable audio stream in the far end's SDP: " + "; ".join(why))


def announced_ssrc(md: sdp.MediaDescription) -> int:
    """The first SSRC of an m-line's ``a=ssrc`` attributes (RFC 5576 §4.1), or -1."""
    for name, value in md.attributes:
        if name == "ssrc" and value:
            head = value.split(" ", 1)[0]
            if head.isdigit() and int(head) <= 0xFFFFFFFF:
                return int(head)
    return -1


def with_ssrc(desc: sdp.SessionDescription, ssrc: int, cname: str) -> sdp.SessionDescription:
    """A copy of ``desc`` whose audio m-lines announce ``ssrc`` (RFC 5576 §4.1).

    The far end can then tell our calls apart even when they all use one port.
    """
    new = desc.copy()
    for md in new.media:
        if md.media == "audio" and md.port != 0:
            md.attributes = [a for a in md.attributes if a[0] != "ssrc"]
            md.attributes.append(("ssrc", f"{ssrc} cname:{cname}"))
    return new
