"""The UAS pack, part 2: dialogs (§12, §14, §15), 100rel, session timers, digest.

Cases that need an established call make it with
:func:`~sipload.conformance.steps.establish` (INVITE,
2xx, ACK) and hang it up at the end, whatever the verdict.
"""

from __future__ import annotations

import asyncio

from sipload.conformance.cases_uas import ANSWER_INVITE
from sipload.conformance.judge import challenge_problems, judge_schedule
from sipload.conformance.model import (
    Case,
    Outcome,
    broke,
    inconclusive,
    must,
    passed,
    should,
)
from sipload.conformance.probe import Exchange, Probe, is_response_to
from sipload.conformance.profile import Profile
from sipload.conformance.steps import authorize, establish, status_text, uas_uri
from sipload.sip import sdp
from sipload.sip.dialog import Dialog, uac_dialog
from sipload.sip.errors import ParseError
from sipload.sip.message import Message, Request, Response

BYE_2XX = must("RFC 3261 §15.1.2", "Whether or not it ends its participation on the session, "
               "the UAS core MUST generate a 2xx response to the BYE, and MUST pass that to "
               "the server transaction for transmission.")
BYE_481 = should("RFC 3261 §15.1.2", "If the BYE does not match an existing dialog, the UAS "
                 "core SHOULD generate a 481 (Call/Transaction Does Not Exist) response and "
                 "pass that to the server transaction.")
LOWER_CSEQ = must("RFC 3261 §12.2.2", "If the remote sequence number was not empty, but the "
                  "sequence number of the request is lower than the remote sequence number, "
                  "the request is out of order and MUST be rejected with a 500 (Server "
                  "Internal Error) response.")
GLARE = must("RFC 3261 §14.2", "A UAS that receives a second INVITE before it sends the final "
             "response to a first INVITE with a lower CSeq sequence number on the same dialog "
             "MUST return a 500 (Server Internal Error) response to the second INVITE and MUST "
             "include a Retry-After header field with a randomly chosen value of between 0 "
             "and 10 seconds.")
RELIABLE = must("RFC 3262 §3", "The UAS MUST send any non-100 provisional response reliably "
                "if the initial request contained a Require header field with the option tag "
                "100rel. [...] it MUST contain a Require header field containing the option "
                "tag 100rel, and MUST include an RSeq header field.")
PRACK_2XX = must("RFC 3262 §3", "If the PRACK does match an unacknowledged reliable "
                 "provisional response, it MUST be responded to with a 2xx response.")
RELIABLE_RETRANSMITTED = must("RFC 3262 §3", "The reliable provisional response is passed to "
                              "the transaction layer periodically with an interval that starts "
                              "at T1 seconds and doubles for each retransmission [...] "
                              "Retransmissions of the reliable provisional response cease when "
                              "a matching PRACK is received by the UA core.")
MIN_SE = must("RFC 4028 §9", "When sending the 422 response, the UAS MUST include a Min-SE "
              "header field with the value of its minimum interval.  This minimum interval "
              "MUST NOT be lower than 90 seconds.")
CHALLENGE = must("RFC 3261 §22.2, §22.4", "The WWW-Authenticate response-header field MUST be "
                 "included in 401 (Unauthorized) response messages. [...] servers MUST always "
                 "send a \"qop\" parameter in WWW-Authenticate and Proxy-Authenticate header "
                 "field values.")
REFUSE_WRONG = must("RFC 3261 §22.2, §22.1", "When a UAS receives a request from a UAC, the "
                    "UAS MAY authenticate the originator before the request is processed. "
                    "[...] (§22.1) the potential exists that these credentials may no longer be "
                    "valid or that the challenging server will not accept these credentials "
                    "[...] In this instance a server may repeat its challenge, or it may "
                    "respond with a 403 Forbidden.  (The profile claims digest: the target "
                    "authenticates, and credentials made with a wrong password are not valid.)")


async def bye(probe: Probe, profile: Profile) -> Outcome:
    got = await establish(probe, profile)
    if isinstance(got, Outcome):
        return got
    _, dialog = got
    first = await probe.hang_up(dialog)
    if not 200 <= first.status < 300:
        return broke(BYE_2XX, f"BYE answered {status_text(first)}, not 2xx")
    second = await probe.hang_up(dialog)
    if second.status != 481:
        return broke(BYE_481, f"BYE ended the call ({first.status}), but a BYE in the ended "
                     f"dialog got {status_text(second)}, not 481")
    return passed("BYE answered 200; a BYE in the ended dialog 481")


async def unknown_dialog(probe: Probe, profile: Profile) -> Outcome:
    uri = uas_uri(profile)
    req = probe.request("BYE", uri, to=f"<{uri}>;tag=nosuchdialog{probe.tag()}", cseq=7)
    ex = await probe.transact(req, timeout=profile.response_timeout)
    if ex.status != 481:
        return broke(BYE_481, f"BYE outside any dialog got {status_text(ex)}, not 481")
    return passed("481 for a request in an unknown dialog")


async def lower_cseq(probe: Probe, profile: Profile) -> Outcome:
    got = await establish(probe, profile, cseq=100)
    if isinstance(got, Outcome):
        return got
    _, dialog = got
    low = probe.in_dialog(dialog, "BYE", cseq=99)
    ex = await probe.transact(low, timeout=profile.response_timeout)
    if 200 <= ex.status < 300:
        return broke(LOWER_CSEQ, "a BYE with CSeq 99, below the INVITE's 100, was accepted")
    dialog.local_seq = 100
    await probe.hang_up(dialog)
    if ex.status != 500:
        return broke(LOWER_CSEQ, f"a BYE with a lower CSeq got {status_text(ex)}, not 500")
    return passed("500 for a lower CSeq in the dialog")


async def glare(probe: Probe, profile: Profile) -> Outcome:
    got = await establish(probe, profile)
    if isinstance(got, Outcome):
        return got
    _, dialog = got
    offer = sdp.build_audio_offer(probe.local[0], 6000, session_id=2, version=1).to_bytes()
    first = probe.in_dialog(dialog, "INVITE")
    first.set_body(offer, "application/sdp")
    second = first.copy()
    second.remove_header("via")
    second.prepend_header("Via", probe.via())
    second.set_header("CSeq", f"{first.cseq.seq + 1} INVITE")
    dialog.local_seq = first.cseq.seq + 1
    rt = profile.response_timeout + 4
    # both re-INVITEs are full client transactions (Timer A over UDP), run side by side
    task = asyncio.ensure_future(probe.transact(first, timeout=rt))
    await asyncio.sleep(0)
    ex2 = await probe.transact(second, timeout=rt)
    ex1 = await task
    for ex in (ex1, ex2):
        if ex.final is not None:
            probe.ack(ex.request, ex.final)
        else:
            await probe.finish(ex.request, ex)
    await probe.hang_up(dialog)
    if ex2.final is None:
        return broke(GLARE, "no final response to the overlapping re-INVITE")
    if ex2.status == 491:
        return passed("the overlapping re-INVITE got 491 Request Pending")
    if ex2.status == 500:
        if not ex2.final.has("retry-after"):
            return broke(GLARE, "500 without Retry-After")
        return passed(f"500 with Retry-After: {ex2.final.get('retry-after')} (§14.2)")
    if ex1.final is not None and ex1.final_at <= ex2.final_at:
        return inconclusive(f"the first re-INVITE was answered at once, so the second "
                            f"({ex2.status}) did not overlap it: no glare to judge")
    return broke(GLARE, f"the re-INVITE overlapping a pending one got {status_text(ex2)}, "
                 "not 491/500")


# --------------------------------------------------------------------------- 100rel


def _reliable(m: Message, invite: Request) -> bool:
    return (isinstance(m, Response) and 100 < m.status < 200 and is_response_to(m, invite))


async def _reliable_provisional(probe: Probe, profile: Profile
                                ) -> tuple[Exchange, Response | None, float]:
    req = probe.request("INVITE", uas_uri(profile))
    req.add_header("Supported", "100rel")
    req.add_header("Require", "100rel")
    offer = sdp.build_audio_offer(probe.local[0], 6000, session_id=1)
    req.set_body(offer.to_bytes(), "application/sdp")
    ex = await probe.transact(req, timeout=profile.response_timeout + 4, until_provisional=True)
    prov: Response | None = None
    at = 0.0
    for t, r in ex.provisionals:
        if r.status > 100:
            prov, at = r, t
    if prov is None and ex.final is None:
        got = await probe.expect(lambda m: is_response_to(m, req), profile.response_timeout)
        if got is not None and isinstance(got.msg, Response):
            if got.msg.status < 200:
                prov, at = got.msg, got.at
            else:
                ex.final, ex.final_at = got.msg, got.at
    return ex, prov, at


async def finish_reliable(probe: Probe, profile: Profile, ex: Exchange,
                           early: Dialog | None) -> None:
    invite = ex.request
    if ex.final is None:
        got = await probe.expect(lambda m: is_response_to(m, invite) and m.status >= 200,  # type: ignore[attr-defined]
                                 profile.response_timeout)
        if got is not None and isinstance(got.msg, Response):
            ex.final, ex.final_at = got.msg, got.at
    if ex.final is None:
        await probe.finish(invite, ex)
        return
    dialog = probe.ack(invite, ex.final)
    if dialog is not None:
        if early is not None and early.local_seq is not None:
            dialog.local_seq = max(dialog.local_seq or 0, early.local_seq)
        await probe.hang_up(dialog)


def prack_for(probe: Probe, invite: Request, prov: Response, early: Dialog | None = None,
              rseq: int | None = None) -> tuple[Request, Dialog] | None:
    """A PRACK for ``prov`` in its early dialog (``early``, or one made from ``prov``),
    naming ``rseq`` (default: ``prov``'s RSeq); None when ``prov`` cannot be PRACKed."""
    try:
        if early is None:
            early = uac_dialog(invite, prov)
        named = prov.rseq if rseq is None else rseq
    except ParseError:
        return None
    if named is None:
        return None
    prack = probe.in_dialog(early, "PRACK")
    prack.add_header("RAck", f"{named} {invite.cseq.seq} INVITE")
    return prack, early


async def reliable_provisional(probe: Probe, profile: Profile) -> Outcome:
    ex, prov, _ = await _reliable_provisional(probe, profile)
    if prov is None:
        await finish_reliable(probe, profile, ex, None)
        return inconclusive(f"no provisional response above 100 (final: {status_text(ex)})")
    if "100rel" not in prov.require or prov.rseq is None:
        await finish_reliable(probe, profile, ex, None)
        return broke(RELIABLE, f"{prov.status} to an INVITE with Require: 100rel lacks "
                     "Require: 100rel and RSeq")
    made = prack_for(probe, ex.request, prov)
    if made is None:
        await finish_reliable(probe, profile, ex, None)
        return broke(RELIABLE, f"cannot PRACK the {prov.status} (no To tag, Contact or RSeq)")
    prack, early = made
    pex = await probe.transact(prack, timeout=profile.response_timeout)
    await finish_reliable(probe, profile, ex, early)
    if not 200 <= pex.status < 300:
        return broke(PRACK_2XX, f"PRACK answered {status_text(pex)}, not 2xx")
    return passed(f"{prov.status} with Require: 100rel, RSeq: {prov.rseq}; PRACK answered 200")


async def reliable_retransmission(probe: Probe, profile: Profile) -> Outcome:
    ex, prov, at = await _reliable_provisional(probe, profile)
    if prov is None or "100rel" not in prov.require or prov.rseq is None:
        await finish_reliable(probe, profile, ex, None)
        return inconclusive("no reliable provisional response to watch")
    invite = ex.request
    times = [at]
    expected = [profile.t1, 2 * profile.t1]
    final: Response | None = None
    for e in expected:
        got = await probe.expect(lambda m: is_response_to(m, invite), e * 1.6 + 0.2)
        if got is None or not isinstance(got.msg, Response):
            break
        if got.msg.status >= 200:
            final = got.msg
            ex.final, ex.final_at = got.msg, got.at
            break
        if got.msg.rseq == prov.rseq:
            times.append(got.at)
    made = prack_for(probe, invite, prov)
    early = None
    if made is not None:
        early = made[1]
        await probe.transact(made[0], timeout=profile.response_timeout)
    await finish_reliable(probe, profile, ex, early)
    ok, table = judge_schedule(times, expected)
    if len(times) == 1:
        if final is not None:
            return inconclusive(f"the final response ({final.status}) came before a "
                                "retransmission was due")
        return broke(RELIABLE_RETRANSMITTED, "the reliable provisional was not retransmitted "
                     "without PRACK")
    if len(times) < 3 and final is not None:
        return passed(f"retransmitted until the final response: {table}") if ok else broke(
            RELIABLE_RETRANSMITTED, f"retransmission off schedule: {table}")
    if not ok:
        return broke(RELIABLE_RETRANSMITTED, f"retransmission off the T1-doubling schedule: "
                     f"{table}")
    return passed(f"retransmitted on schedule until PRACK: {table}")


# --------------------------------------------------------------------------- timers, digest


async def session_timer_min_se(probe: Probe, profile: Profile) -> Outcome:
    ex = await probe.invite(uas_uri(profile), headers=[("Supported", "timer"),
                                                    ("Session-Expires", "30")],
                            timeout=profile.response_timeout + 4)
    await probe.finish(ex.request, ex)
    if ex.final is None:
        return broke(ANSWER_INVITE, f"no final response to the INVITE ({status_text(ex)})")
    if ex.status != 422:
        return passed(f"answered {status_text(ex)}: rejecting a brief Session-Expires with "
                      "422 is a MAY (RFC 4028 §9), not judged")
    try:
        min_se = ex.final.min_se
    except ParseError as e:
        return broke(MIN_SE, f"422 with a malformed Min-SE: {e.reason}")
    if min_se is None or min_se < 90:
        return broke(MIN_SE, f"422 whose Min-SE ({min_se}) is absent or below 90")
    return passed(f"422 with Min-SE: {min_se}")


async def uas_challenge(probe: Probe, profile: Profile) -> Outcome:
    ex = await probe.invite(uas_uri(profile), timeout=profile.response_timeout + 4)
    await probe.finish(ex.request, ex)
    if ex.status not in (401, 407):
        return broke(CHALLENGE, f"INVITE without credentials got {status_text(ex)}, not "
                     "401/407 (the profile claims digest)")
    assert ex.final is not None
    problems, summary = challenge_problems(ex.final, profile.digest_algorithms)
    if problems:
        return broke(CHALLENGE, "; ".join(problems))
    return passed(f"{ex.status} challenge: {summary}")


async def uas_wrong_password(probe: Probe, profile: Profile) -> Outcome:
    ex = await probe.invite(uas_uri(profile), timeout=profile.response_timeout + 4)
    if ex.status not in (401, 407) or ex.final is None:
        await probe.finish(ex.request, ex)
        return inconclusive(f"no challenge to answer (INVITE got {status_text(ex)})")
    probe.ack(ex.request, ex.final)
    retry = authorize(probe, ex.request, ex.final, profile.username,
                      "wrong-" + profile.password, ex.request.cseq.seq + 1)
    if retry is None:
        return inconclusive("the challenge offers nothing the tester can answer")
    ex2 = await probe.transact(retry, timeout=profile.response_timeout + 4)
    await probe.finish(retry, ex2)
    if 200 <= ex2.status < 300:
        return broke(REFUSE_WRONG, "a wrong password was accepted")
    if ex2.final is None:
        return broke(ANSWER_INVITE, "no answer to the INVITE with wrong credentials")
    return passed(f"wrong password refused with {status_text(ex2)}")


CASES = [
    Case("UAS-BYE-001", "3261", "15.1.2", "BYE is answered 200; a BYE in the ended dialog "
         "gets 481", "uas", ("role:uas",), bye, rules=(BYE_2XX, BYE_481)),
    Case("UAS-DLG-001", "3261", "12.2.2", "a request in an unknown dialog gets 481", "uas",
         ("role:uas",), unknown_dialog, rules=(BYE_481,)),
    Case("UAS-DLG-002", "3261", "12.2.2", "a request with a lower CSeq in the dialog gets 500",
         "uas", ("role:uas",), lower_cseq, rules=(LOWER_CSEQ,)),
    Case("UAS-DLG-003", "3261", "14.2", "a re-INVITE overlapping a pending one is refused "
         "(491 in glare, 500 + Retry-After when the earlier one is unanswered)", "uas",
         ("role:uas",), glare, rules=(GLARE,)),
    Case("UAS-100REL-001", "3262", "3", "with Require: 100rel the provisional is reliable "
         "(Require: 100rel, RSeq) and PRACK is answered 200", "uas",
         ("role:uas", "ext:100rel"), reliable_provisional, rules=(RELIABLE, PRACK_2XX)),
    Case("UAS-100REL-002", "3262", "3", "a reliable provisional is retransmitted at T1 "
         "doubling until PRACK", "uas", ("role:uas", "ext:100rel"), reliable_retransmission,
         rules=(RELIABLE_RETRANSMITTED,)),
    Case("UAS-TIMER-001", "4028", "9", "Session-Expires below the minimum gets 422 with "
         "Min-SE", "uas", ("role:uas", "ext:timer"), session_timer_min_se, rules=(MIN_SE,)),
    Case("UAS-AUTH-001", "3261", "22.4", "the digest challenge is well formed (realm, nonce, "
         "algorithm, qop)", "uas", ("role:uas", "ext:digest"), uas_challenge, rules=(CHALLENGE,)),
    Case("UAS-AUTH-002", "3261", "22.4", "digest credentials with a wrong password are "
         "refused", "uas", ("role:uas", "ext:digest"), uas_wrong_password, rules=(REFUSE_WRONG,)),
]
