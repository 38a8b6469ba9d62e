"""The UAS pack, part 2: dialogs (§12, §14, §15), 100rel, session timers, digest.

Cases that need an established call make it with
:func:`~sipload.conformance.steps.establish` (INVITE,
2xx, ACK) and hang it up at the end, whatever the verdict.
"""

from __future__ import annotations

from sipload.conformance.judge import challenge_problems, judge_schedule
from sipload.conformance.model import (
    Case,
    Outcome,
    failed,
    inconclusive,
    passed,
)
from sipload.conformance.probe import Exchange, Probe, is_response_to
from sipload.conformance.profile import Profile
from sipload.conformance.steps import authorize, establish, status_text, uas_uri
from sipload.sip import sdp
from sipload.sip.dialog import Dialog, uac_dialog
from sipload.sip.errors import ParseError
from sipload.sip.message import Message, Request, Response


async def bye(probe: Probe, profile: Profile) -> Outcome:
    got = await establish(probe, profile)
    if isinstance(got, Outcome):
        return got
    _, dialog = got
    first = await probe.hang_up(dialog)
    if first.status != 200:
        return failed(f"BYE answered {status_text(first)}, not 200 (§15.1.2)")
    second = await probe.hang_up(dialog)
    if second.status != 481:
        return failed(f"BYE ended the call (200), but a BYE in the ended dialog got "
                      f"{status_text(second)}, not 481 (§12.2.2)")
    return passed("BYE answered 200; a BYE in the ended dialog 481")


async def unknown_dialog(probe: Probe, profile: Profile) -> Outcome:
    uri = uas_uri(profile)
    req = probe.request("BYE", uri, to=f"<{uri}>;tag=nosuchdialog{probe.tag()}", cseq=7)
    ex = await probe.transact(req, timeout=profile.response_timeout)
    if ex.status != 481:
        return failed(f"BYE outside any dialog got {status_text(ex)}, not 481 (§12.2.2)")
    return passed("481 for a request in an unknown dialog")


async def lower_cseq(probe: Probe, profile: Profile) -> Outcome:
    got = await establish(probe, profile, cseq=100)
    if isinstance(got, Outcome):
        return got
    _, dialog = got
    low = probe.in_dialog(dialog, "BYE", cseq=99)
    ex = await probe.transact(low, timeout=profile.response_timeout)
    if 200 <= ex.status < 300:
        return failed("a BYE with CSeq 99, below the INVITE's 100, was accepted (§12.2.2: "
                      "500)")
    dialog.local_seq = 100
    await probe.hang_up(dialog)
    if ex.status != 500:
        return failed(f"a BYE with a lower CSeq got {status_text(ex)}, not 500 (§12.2.2)")
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
    probe.send(first)
    ex2 = await probe.transact(second, timeout=profile.response_timeout + 4)
    a = await probe.expect_response(first, profile.response_timeout, lambda s: s >= 200)
    first_at = a.at if a is not None else None
    for req, resp in ((first, a.msg if a is not None else None), (second, ex2.final)):
        if isinstance(resp, Response):
            probe.ack(req, resp)
    await probe.hang_up(dialog)
    if ex2.final is None:
        return failed("no final response to the overlapping re-INVITE")
    if ex2.status == 491:
        return passed("the overlapping re-INVITE got 491 Request Pending")
    if ex2.status == 500:
        if not ex2.final.has("retry-after"):
            return failed("500 without Retry-After (§14.2: MUST, 0-10 s)")
        return passed(f"500 with Retry-After: {ex2.final.get('retry-after')} (§14.2)")
    if first_at is not None and first_at <= ex2.final_at:
        return inconclusive(f"the first re-INVITE was answered at once, so the second "
                            f"({ex2.status}) did not overlap it: no glare to judge")
    return failed(f"the re-INVITE overlapping a pending one got {status_text(ex2)}, not 491/500")


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


async def _finish_reliable(probe: Probe, profile: Profile, ex: Exchange,
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


def _prack(probe: Probe, invite: Request, prov: Response) -> tuple[Request, Dialog] | None:
    try:
        early = uac_dialog(invite, prov)
        rseq = prov.rseq
    except ParseError:
        return None
    if rseq is None:
        return None
    prack = probe.in_dialog(early, "PRACK")
    prack.add_header("RAck", f"{rseq} {invite.cseq.seq} INVITE")
    return prack, early


async def reliable_provisional(probe: Probe, profile: Profile) -> Outcome:
    ex, prov, _ = await _reliable_provisional(probe, profile)
    if prov is None:
        await _finish_reliable(probe, profile, ex, None)
        return inconclusive(f"no provisional response above 100 (final: {status_text(ex)})")
    if "100rel" not in prov.require or prov.rseq is None:
        await _finish_reliable(probe, profile, ex, None)
        return failed(f"{prov.status} to an INVITE with Require: 100rel lacks "
                      "Require: 100rel and RSeq (RFC 3262 §3)")
    made = _prack(probe, ex.request, prov)
    if made is None:
        await _finish_reliable(probe, profile, ex, None)
        return failed(f"cannot PRACK the {prov.status} (no To tag, Contact or RSeq)")
    prack, early = made
    pex = await probe.transact(prack, timeout=profile.response_timeout)
    await _finish_reliable(probe, profile, ex, early)
    if pex.status != 200:
        return failed(f"PRACK answered {status_text(pex)}, not 200 (RFC 3262 §3)")
    return passed(f"{prov.status} with Require: 100rel, RSeq: {prov.rseq}; PRACK answered 200")


async def reliable_retransmission(probe: Probe, profile: Profile) -> Outcome:
    ex, prov, at = await _reliable_provisional(probe, profile)
    if prov is None or "100rel" not in prov.require or prov.rseq is None:
        await _finish_reliable(probe, profile, ex, None)
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
    made = _prack(probe, invite, prov)
    early = None
    if made is not None:
        early = made[1]
        await probe.transact(made[0], timeout=profile.response_timeout)
    await _finish_reliable(probe, profile, ex, early)
    ok, table = judge_schedule(times, expected)
    if len(times) == 1:
        if final is not None:
            return inconclusive(f"the final response ({final.status}) came before a "
                                "retransmission was due")
        return failed("the reliable provisional was not retransmitted without PRACK "
                      "(RFC 3262 §3)")
    if len(times) < 3 and final is not None:
        return passed(f"retransmitted until the final response: {table}") if ok else failed(
            f"retransmission off schedule: {table}")
    if not ok:
        return failed(f"retransmission off the T1-doubling schedule: {table}")
    return passed(f"retransmitted on schedule until PRACK: {table}")


# --------------------------------------------------------------------------- timers, digest


async def session_timer_min_se(probe: Probe, profile: Profile) -> Outcome:
    ex = await probe.invite(uas_uri(profile), headers=[("Supported", "timer"),
                                                    ("Session-Expires", "30")],
                            timeout=profile.response_timeout + 4)
    await probe.finish(ex.request, ex)
    if ex.status != 422:
        return failed(f"Session-Expires: 30 (below the 90 s floor) got {status_text(ex)}, not 422")
    assert ex.final is not None
    try:
        min_se = ex.final.min_se
    except ParseError as e:
        return failed(f"422 with a malformed Min-SE: {e.reason}")
    if min_se is None or min_se <= 30:
        return failed(f"422 whose Min-SE ({min_se}) is not above the 30 requested (RFC 4028 §9)")
    return passed(f"422 with Min-SE: {min_se}")


async def uas_challenge(probe: Probe, profile: Profile) -> Outcome:
    ex = await probe.invite(uas_uri(profile), timeout=profile.response_timeout + 4)
    await probe.finish(ex.request, ex)
    if ex.status not in (401, 407):
        return failed(f"INVITE without credentials got {status_text(ex)}, not 401/407")
    assert ex.final is not None
    problems, summary = challenge_problems(ex.final, profile.digest_algorithms)
    if problems:
        return failed("; ".join(problems))
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
        return failed("a wrong password was accepted")
    if ex2.final is None:
        return failed("no answer to the INVITE with wrong credentials")
    return passed(f"wrong password refused with {status_text(ex2)}")


CASES = [
    Case("UAS-BYE-001", "3261", "15.1.2", "BYE is answered 200; a BYE in the ended dialog "
         "gets 481", "uas", ("role:uas",), bye),
    Case("UAS-DLG-001", "3261", "12.2.2", "a request in an unknown dialog gets 481", "uas",
         ("role:uas",), unknown_dialog),
    Case("UAS-DLG-002", "3261", "12.2.2", "a request with a lower CSeq in the dialog gets 500",
         "uas", ("role:uas",), lower_cseq),
    Case("UAS-DLG-003", "3261", "14.2", "a re-INVITE overlapping a pending one is refused "
         "(491 in glare, 500 + Retry-After when the earlier one is unanswered)", "uas",
         ("role:uas",), glare),
    Case("UAS-100REL-001", "3262", "3", "with Require: 100rel the provisional is reliable "
         "(Require: 100rel, RSeq) and PRACK is answered 200", "uas",
         ("role:uas", "ext:100rel"), reliable_provisional),
    Case("UAS-100REL-002", "3262", "3", "a reliable provisional is retransmitted at T1 "
         "doubling until PRACK", "uas", ("role:uas", "ext:100rel"), reliable_retransmission),
    Case("UAS-TIMER-001", "4028", "9", "Session-Expires below the minimum gets 422 with "
         "Min-SE", "uas", ("role:uas", "ext:timer"), session_timer_min_se),
    Case("UAS-AUTH-001", "3261", "22.4", "the digest challenge is well formed (realm, nonce, "
         "algorithm, qop)", "uas", ("role:uas", "ext:digest"), uas_challenge),
    Case("UAS-AUTH-002", "3261", "22.4", "digest credentials with a wrong password are "
         "refused", "uas", ("role:uas", "ext:digest"), uas_wrong_password),
]
