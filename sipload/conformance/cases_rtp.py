"""The RTP pack: the media a target sends once it answers, judged at the tester's RTP port.

Each case places a call whose offer names an RTP port the tester listens on
(PCMU, PCMA and telephone-event; RTCP on the next port), and, while the call
is up, sends PCMU itself every 20 ms from that port to the address and port of
the answer (so that a target that echoes, or latches onto the source of what
it receives, has media to send).  It records every datagram that reaches the
tester's RTP and RTCP ports with its arrival time, hangs up with BYE and
listens on for a while.  The pack applies to a target whose profile says it
sends media (``uas.media: true``); RTP is parsed with
:mod:`sipload.media.rtp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import dataclass, field

from sipload.conformance.cases_uas import ANSWER_INVITE
from sipload.conformance.model import Case, Outcome, broke, inconclusive, must, passed, should
from sipload.conformance.probe import Probe
from sipload.conformance.profile import Profile
from sipload.conformance.steps import status_text, uas_uri
from sipload.media.errors import MediaParseError
from sipload.media.rtp import RtpHeader, build_rtp, is_rtcp, parse_rtp
from sipload.sip import sdp

SENDS_MEDIA = must("RFC 3264 §6.1, §5.1", "It MUST be prepared to send and receive media for "
                   "any sendrecv streams in the answer, and it MAY send media immediately. "
                   "[...] (§5.1) For recvonly and sendrecv streams, the port number and "
                   "address in the offer indicate where the offerer would like to receive the "
                   "media stream.")
FORMATS = must("RFC 3264 §6.1", "The answerer MUST send using a media format in the offer "
               "that is also listed in the answer, and SHOULD send using the most preferred "
               "media format in the offer that is also listed in the answer.  In the case of "
               "RTP, it MUST use the payload type numbers from the offer, even if they differ "
               "from those in the answer.")
RTCP = should("RFC 3550 §6", "The primary function is to provide feedback on the quality of "
              "the data distribution. [...] Functions 1-3 SHOULD be used in all environments, "
              "but particularly in the IP multicast environment.")
STOPS = should("RFC 3261 §15.1.2", "A UAS core receiving a BYE request for an existing dialog "
               "MUST follow the procedures of Section 12.2.2 to process the request.  Once "
               "done, the UAS SHOULD terminate the session (and therefore stop sending and "
               "listening for media).")

CALL_TIME = 1.5
"""Seconds a call stays up while RTP is recorded."""
AFTER_BYE = 1.0
"""Seconds listened to after the BYE's answer (the first ``BYE_GRACE`` of them forgiven:
packets already on their way)."""
BYE_GRACE = 0.3
RTCP_CALL = 7.0
"""Seconds the RTCP case's call stays up: above RFC 3550's 5 s minimum report interval
(§6.2), its first report randomized over [0.5, 1.5] times half of it."""
OFFERED = ("0", "8", "101")


@dataclass(slots=True)
class Media:
    """What one call brought to the tester's ports."""

    answer: sdp.SessionDescription | None = None
    rtp: list[tuple[float, bytes, tuple[str, int]]] = field(default_factory=list)
    rtcp: list[tuple[float, bytes, tuple[str, int]]] = field(default_factory=list)
    bye_at: float = 0.0
    outcome: Outcome | None = None


def _pair(host: str) -> tuple[socket.socket, socket.socket]:
    """A UDP socket on an even port and one on the port above it."""
    for _ in range(50):
        rtp = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                            socket.SOCK_DGRAM)
        rtp.bind((host, 0))
        port = rtp.getsockname()[1]
        if port % 2 == 0 and port < 65535:
            rtcp = socket.socket(rtp.family, socket.SOCK_DGRAM)
            try:
                rtcp.bind((host, port + 1))
            except OSError:
                rtcp.close()
                rtp.close()
                continue
            rtp.setblocking(False)
            rtcp.setblocking(False)
            return rtp, rtcp
        rtp.close()
    raise OSError("no free RTP/RTCP port pair")


def _audio_target(answer: sdp.SessionDescription) -> tuple[str, int] | None:
    audio = next((m for m in answer.media if m.media == "audio" and m.port), None)
    if audio is None:
        return None
    conn = audio.connection or answer.connection
    if conn is None:
        return None
    return conn.address.split("/")[0], audio.port


async def media_call(probe: Probe, profile: Profile, seconds: float = 0.0) -> Media:
    """A call with RTP both ways, up for ``seconds`` (default :data:`CALL_TIME`)."""
    loop = asyncio.get_running_loop()
    got = Media()
    rtp_sock, rtcp_sock = _pair(probe.local[0])
    port = rtp_sock.getsockname()[1]

    def reader(sock: socket.socket, into: list[tuple[float, bytes, tuple[str, int]]]
               ) -> None:
        while True:
            try:
                data, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            into.append((loop.time(), data, addr[:2]))

    loop.add_reader(rtp_sock.fileno(), reader, rtp_sock, got.rtp)
    loop.add_reader(rtcp_sock.fileno(), reader, rtcp_sock, got.rtcp)
    try:
        offer = sdp.build_audio_offer(probe.local[0], port, session_id=9)
        ex = await probe.invite(uas_uri(profile), body=offer.to_bytes(),
                                timeout=profile.response_timeout + 4)
        if ex.final is None or not 200 <= ex.status < 300:
            await probe.finish(ex.request, ex)
            got.outcome = (broke(ANSWER_INVITE, "no final response to the INVITE")
                           if ex.final is None else
                           inconclusive(f"no call to judge: the INVITE got {status_text(ex)}"))
            return got
        dialog = probe.ack(ex.request, ex.final)
        try:
            got.answer = sdp.parse_sdp(ex.final.body)
        except sdp.SdpError:
            got.answer = None
        dest = _audio_target(got.answer) if got.answer is not None else None
        ssrc = int.from_bytes(os.urandom(4), "big")
        start = loop.time()
        seq = 0
        while loop.time() - start < (seconds or CALL_TIME):
            if dest is not None:
                with contextlib.suppress(OSError):
                    rtp_sock.sendto(build_rtp(0, seq, seq * 160, ssrc, b"\xff" * 160), dest)
            seq += 1
            await asyncio.sleep(0.02)
        if dialog is not None:
            await probe.hang_up(dialog)
        got.bye_at = loop.time()
        await asyncio.sleep(AFTER_BYE)
        if got.answer is None:
            got.outcome = inconclusive("the 2xx carries no usable SDP answer")
        elif dest is None:
            got.outcome = inconclusive("the answer takes no audio stream")
        return got
    finally:
        loop.remove_reader(rtp_sock.fileno())
        loop.remove_reader(rtcp_sock.fileno())
        rtp_sock.close()
        rtcp_sock.close()


def _packets(media: Media, before: float | None = None) -> list[RtpHeader]:
    out: list[RtpHeader] = []
    for at, data, _ in media.rtp:
        if before is not None and at > before:
            continue
        if is_rtcp(data):
            continue
        with contextlib.suppress(MediaParseError):
            out.append(parse_rtp(data))
    return out


async def sends_media(probe: Probe, profile: Profile) -> Outcome:
    media = await media_call(probe, profile)
    if media.outcome is not None:
        return media.outcome
    packets = _packets(media, before=media.bye_at)
    if not packets:
        return broke(SENDS_MEDIA, f"no RTP reached the offer's port in the {CALL_TIME:g} s "
                     "the call was up")
    sources = sorted({f"{a[0]}:{a[1]}" for _, _, a in media.rtp})
    return passed(f"{len(packets)} RTP packets at the offer's port (from {', '.join(sources)})")


async def payload_types(probe: Probe, profile: Profile) -> Outcome:
    media = await media_call(probe, profile)
    if media.outcome is not None:
        return media.outcome
    assert media.answer is not None
    audio = next(m for m in media.answer.media if m.media == "audio" and m.port)
    packets = _packets(media, before=media.bye_at)
    if not packets:
        return inconclusive("no RTP arrived: no payload type to judge")
    allowed = {int(f) for f in audio.formats if f.isdigit() and f in OFFERED}
    seen = sorted({p.payload_type for p in packets})
    wrong = [pt for pt in seen if pt not in allowed]
    if wrong:
        return broke(FORMATS, f"RTP with payload type {', '.join(map(str, wrong))}; the offer "
                     f"has {' '.join(OFFERED)}, the answer {' '.join(audio.formats)}")
    return passed(f"payload types {', '.join(map(str, seen))}, in the offer and the answer")


async def stops_after_bye(probe: Probe, profile: Profile) -> Outcome:
    media = await media_call(probe, profile)
    if media.outcome is not None:
        return media.outcome
    if not _packets(media, before=media.bye_at):
        return inconclusive("no RTP during the call: nothing to stop")
    late = [at for at, data, _ in media.rtp
            if at > media.bye_at + BYE_GRACE and not is_rtcp(data)]
    if late:
        return broke(STOPS, f"{len(late)} RTP packets more than {BYE_GRACE * 1000:.0f} ms after "
                     f"the BYE was answered (the last {late[-1] - media.bye_at:.2f} s after)")
    return passed(f"no RTP from {BYE_GRACE * 1000:.0f} ms to {AFTER_BYE:g} s after the BYE")


async def sends_rtcp(probe: Probe, profile: Profile) -> Outcome:
    media = await media_call(probe, profile, RTCP_CALL)
    if media.outcome is not None:
        return media.outcome
    if not _packets(media, before=media.bye_at):
        return inconclusive("no RTP during the call: a target that sends no media owes no "
                            "sender reports")
    reports = [d for _, d, _ in media.rtcp if is_rtcp(d)]
    muxed = [d for _, d, _ in media.rtp if is_rtcp(d)]
    if not reports and not muxed:
        return broke(RTCP, f"no RTCP at the port after the offer's RTP port in a "
                     f"{RTCP_CALL:g} s call (nor multiplexed on the RTP port)")
    where = "the RTCP port" if reports else "the RTP port (multiplexed)"
    return passed(f"{len(reports) or len(muxed)} RTCP packets at {where}")


_M = ("role:uas", "set:uas.media")

CASES = [
    Case("RTP-001", "3264", "6.1", "a target that sends media sends RTP to the offer's address "
         "and port while the call is up (profile uas.media)", "rtp", _M, sends_media,
         rules=(SENDS_MEDIA, ANSWER_INVITE)),
    Case("RTP-002", "3264", "6.1", "RTP uses payload types of the offer that the answer "
         "lists", "rtp", _M, payload_types, rules=(FORMATS, ANSWER_INVITE)),
    Case("RTP-003", "3261", "15.1.2", "RTP stops once the BYE is answered", "rtp", _M,
         stops_after_bye, rules=(STOPS, ANSWER_INVITE)),
    Case("RTP-004", "3550", "6", "a target sending RTP sends RTCP reports to the port after "
         "the offer's RTP port", "rtp", _M, sends_rtcp, budget=25.0,
         rules=(RTCP, ANSWER_INVITE)),
]
