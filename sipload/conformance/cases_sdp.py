"""The SDP pack (RFC 3264 offer/answer), judged on the target's answers as a UAS.

Each case places a call with an offer of two streams -- audio (PCMU, PCMA,
telephone-event) and a video stream few endpoints take (H.261, static payload
type 31) -- reads the answer in the 2xx, and leaves no call behind.  The video
stream is there so that a target must either accept it or reject it the RFC's
way (port 0), never drop its m-line.
"""

from __future__ import annotations

from sipload.conformance.cases_uas import ANSWER_INVITE
from sipload.conformance.model import Case, Outcome, broke, inconclusive, must, passed
from sipload.conformance.probe import Exchange, Probe
from sipload.conformance.profile import Profile
from sipload.conformance.steps import status_text, uas_uri
from sipload.sip import sdp
from sipload.sip.dialog import Dialog
from sipload.sip.message import Response

SAME_M_LINES = must("RFC 3264 §6", "For each \"m=\" line in the offer, there MUST be a "
                    "corresponding \"m=\" line in the answer.  The answer MUST contain exactly "
                    "the same number of \"m=\" lines as the offer.")
COMMON_CODEC = must("RFC 3264 §6.1", "For streams marked as sendrecv in the answer, the \"m=\" "
                    "line MUST contain at least one codec the answerer is willing to both send "
                    "and receive, from amongst those listed in the offer.")
ORIGIN_VERSION = must("RFC 3264 §8", "When issuing an offer that modifies the session, the "
                      "\"o=\" line of the new SDP MUST be identical to that in the previous "
                      "SDP, except that the version in the origin field MUST increment by one "
                      "from the previous SDP.  If the version in the origin line does not "
                      "increment, the SDP MUST be identical to the SDP with that version "
                      "number.")


def offer(probe: Probe, version: int = 0) -> sdp.SessionDescription:
    """Audio and an H.261 video stream, from the tester's address."""
    desc = sdp.build_audio_offer(probe.local[0], 6000, session_id=7, version=version)
    desc.media.append(sdp.MediaDescription("video", 6002, "RTP/AVP", ["31"]))
    return desc


async def _call(probe: Probe, profile: Profile
                ) -> tuple[Exchange, sdp.SessionDescription, Dialog | None] | Outcome:
    ex = await probe.invite(uas_uri(profile), body=offer(probe).to_bytes(),
                            timeout=profile.response_timeout + 4)
    if ex.final is None or not 200 <= ex.status < 300:
        await probe.finish(ex.request, ex)
        return inconclusive(f"no call to judge: the INVITE got {status_text(ex)}")
    dialog = probe.ack(ex.request, ex.final)
    try:
        answer = sdp.parse_sdp(ex.final.body)
    except sdp.SdpError as e:
        if dialog is not None:
            await probe.hang_up(dialog)
        return broke(SAME_M_LINES, f"the 2xx carries no usable SDP answer: {e}")
    return ex, answer, dialog


async def same_m_lines(probe: Probe, profile: Profile) -> Outcome:
    got = await _call(probe, profile)
    if isinstance(got, Outcome):
        return got
    _, answer, dialog = got
    if dialog is not None:
        await probe.hang_up(dialog)
    kinds = [m.media for m in answer.media]
    if kinds != ["audio", "video"]:
        return broke(SAME_M_LINES, f"offered m-lines audio, video; answered "
                     f"{', '.join(kinds) or 'none'}")
    video = answer.media[1]
    return passed("two m-lines in the offer's order"
                  + (" (video rejected with port 0)" if video.port == 0 else " (both taken)"))


async def common_codec(probe: Probe, profile: Profile) -> Outcome:
    got = await _call(probe, profile)
    if isinstance(got, Outcome):
        return got
    _, answer, dialog = got
    if dialog is not None:
        await probe.hang_up(dialog)
    audio = next((m for m in answer.media if m.media == "audio"), None)
    if audio is None or audio.port == 0:
        return inconclusive("the audio stream was not taken: no codec to judge")
    if (audio.direction or "sendrecv") != "sendrecv":
        return inconclusive(f"the audio stream is {audio.direction}: §6.1's rule is for "
                            "sendrecv")
    offered = offer(probe).media[0]
    common = [f for f in audio.formats if f in offered.formats or any(
        (a := audio.codec(f)) is not None and (b := offered.codec(o)) is not None
        and a.same_codec(b) for o in offered.formats)]
    if not common:
        return broke(COMMON_CODEC, f"the audio answer lists {' '.join(audio.formats)}, none "
                     f"of the offered {' '.join(offered.formats)}")
    return passed(f"audio answered with {' '.join(common)} from the offer")


async def origin_version(probe: Probe, profile: Profile) -> Outcome:
    got = await _call(probe, profile)
    if isinstance(got, Outcome):
        return got
    _, first, dialog = got
    if dialog is None:
        return inconclusive("the 2xx makes no dialog: no re-INVITE possible")
    req = probe.in_dialog(dialog, "INVITE")
    req.set_body(offer(probe, version=1).to_bytes(), "application/sdp")
    ex = await probe.transact(req, timeout=profile.response_timeout + 4)
    second: sdp.SessionDescription | None = None
    if ex.final is not None:
        probe.ack(req, ex.final)
        if 200 <= ex.status < 300 and isinstance(ex.final, Response):
            try:
                second = sdp.parse_sdp(ex.final.body)
            except sdp.SdpError:
                second = None
    await probe.hang_up(dialog)
    if ex.final is None:
        return broke(ANSWER_INVITE, "no final response to the re-INVITE")
    if second is None:
        return inconclusive(f"the re-INVITE got {status_text(ex)} without an SDP answer")
    a, b = first.origin, second.origin
    if (a.username, a.sess_id, a.nettype, a.addrtype, a.address) != (
            b.username, b.sess_id, b.nettype, b.addrtype, b.address):
        return broke(ORIGIN_VERSION, f"o= changed beyond its version: '{a.username} "
                     f"{a.sess_id} {a.sess_version}' then '{b.username} {b.sess_id} "
                     f"{b.sess_version}'")
    if b.sess_version not in (a.sess_version, a.sess_version + 1):
        return broke(ORIGIN_VERSION, f"o= version {a.sess_version} then {b.sess_version}, "
                     "neither the same (unchanged SDP) nor one more")
    return passed(f"o= version {a.sess_version} then {b.sess_version}, the rest unchanged")


CASES = [
    Case("SDP-001", "3264", "6", "the answer has exactly the offer's m-lines, in its order "
         "(a stream it does not take is rejected with port 0, not dropped)", "sdp",
         ("role:uas",), same_m_lines, rules=(SAME_M_LINES,)),
    Case("SDP-002", "3264", "6.1", "a sendrecv audio answer carries at least one codec "
         "from the offer", "sdp", ("role:uas",), common_codec, rules=(COMMON_CODEC,)),
    Case("SDP-003", "3264", "8", "the answer to a re-INVITE keeps its o= line, the version "
         "the same or one more", "sdp", ("role:uas",), origin_version,
         rules=(ORIGIN_VERSION, ANSWER_INVITE)),
]
