"""The UAC pack: the target places calls to the tester, which judges them.

The tester listens on the profile's ``uac.listen`` and takes, for each case,
the next INVITE of a call it has not seen (waiting at most ``uac.wait``).
Requests of calls already judged are answered so the target is not left
hanging (BYE and CANCEL get 200).  After judging, a case lets the call finish
normally where it can (200, ACK, the target's BYE answered 200), so a target
that places a fixed number of calls counts them as successes.

Responses go back to the address the request came from.  While the pack runs,
every message goes to the probe's inbox (:attr:`Probe.divert_all`): the
tester's UA must not answer the target's INVITEs by itself.
"""

from __future__ import annotations

from sipload.conformance.judge import expected_intervals, judge_schedule
from sipload.conformance.model import Case, Outcome, broke, inconclusive, must, passed
from sipload.conformance.probe import Probe
from sipload.conformance.profile import Profile
from sipload.conformance.steps import expect_ack, incoming_call, respond, serve, uac_contact
from sipload.sip.build import make_response
from sipload.sip.errors import ParseError
from sipload.sip.message import Request

WELL_FORMED = must("RFC 3261 §8.1.1", "A valid SIP request formulated by a UAC MUST, at a "
                   "minimum, contain the following header fields: To, From, CSeq, Call-ID, "
                   "Max-Forwards, and Via; all of these header fields are mandatory in all SIP "
                   "requests. [...] (§8.1.1.7) The branch ID inserted by an element compliant "
                   "with this specification MUST always begin with the characters \"z9hG4bK\".")
TIMER_A = must("RFC 3261 §17.1.1.2", "If an unreliable transport is being used, the client "
               "transaction MUST start timer A with a value of T1. [...] When timer A fires, "
               "the client transaction MUST retransmit the request by passing it to the "
               "transport layer, and MUST reset the timer with a value of 2*T1.")
ACK_NON2XX = must("RFC 3261 §17.1.1.3", "The ACK request constructed by the client "
                  "transaction MUST contain values for the Call-ID, From, and Request-URI that "
                  "are equal to the values of those header fields in the request passed to "
                  "the transport by the client transaction [...] The To header field in the "
                  "ACK MUST equal the To header field in the response being acknowledged.")
ACK_2XX = must("RFC 3261 §13.2.2.4", "The UAC core MUST generate an ACK request for each 2xx "
               "received from the transaction layer. [...] The CSeq header field's sequence "
               "number MUST be the same as the INVITE being acknowledged")
CANCEL_MATCHES = must("RFC 3261 §9.1", "The Request-URI, Call-ID, To, the numeric part of "
                      "CSeq, and From header fields in the CANCEL request MUST be identical "
                      "to those in the request being cancelled, including tags.")


def invite_problems(req: Request) -> list[str]:
    out: list[str] = []
    try:
        via = req.via
        if not via.rfc3261_branch:
            out.append(f"branch {via.branch!r} lacks the magic cookie z9hG4bK (§8.1.1.7)")
        if req.max_forwards is None:
            out.append("no Max-Forwards (§8.1.1.6: MUST)")
        contacts = req.contacts or []
        if len(contacts) != 1:
            out.append(f"{len(contacts)} Contact values, not exactly one (§8.1.1.8)")
        elif contacts[0].uri.scheme not in ("sip", "sips"):
            out.append(f"Contact scheme {contacts[0].uri.scheme}, not sip/sips (§8.1.1.8)")
        cseq = req.cseq
        if cseq.method != "INVITE":
            out.append(f"CSeq method {cseq.method} (§8.1.1.5)")
        if cseq.seq >= 2 ** 31:
            out.append(f"CSeq number {cseq.seq} not below 2**31 (§8.1.1.5)")
        if not req.from_tag:
            out.append("From without a tag (§8.1.1.3)")
        if req.to_tag:
            out.append("To with a tag in an initial request (§8.1.1.2)")
        _ = req.call_id
    except ParseError as e:
        out.append(f"unparsable header: {e.reason}")
    return out


async def well_formed(probe: Probe, profile: Profile) -> Outcome:
    call = await incoming_call(probe, profile)
    if not isinstance(call, tuple):
        return call
    got, invite = call
    problems = invite_problems(invite)
    await serve(probe, profile, got, probe.tag())
    if problems:
        return broke(WELL_FORMED, "; ".join(problems))
    return passed(f"branch {invite.via.branch}, Max-Forwards {invite.max_forwards}, one SIP "
                  f"Contact, CSeq {invite.cseq.seq} INVITE, From tag, no To tag")


async def timer_a(probe: Probe, profile: Profile) -> Outcome:
    call = await incoming_call(probe, profile)
    if not isinstance(call, tuple):
        return call
    got, invite = call
    if got.peer[0] != "udp":
        await serve(probe, profile, got, probe.tag())
        return inconclusive("Timer A applies to unreliable transports only")
    expected = expected_intervals(profile.t1, None, 3)
    times = [got.at]
    for e in expected:
        again = await probe.expect(
            lambda m: isinstance(m, Request) and m.method == "INVITE"
            and m.call_id == invite.call_id and m.via.branch == invite.via.branch,
            e * 1.6 + 0.2)
        if again is None:
            break
        times.append(again.at)
    await serve(probe, profile, got, probe.tag())
    ok, table = judge_schedule(times, expected)
    if len(times) == 1:
        return broke(TIMER_A, f"the unanswered INVITE was not retransmitted within "
                     f"{expected[0] * 1.6 + 0.2:.2f} s")
    if len(times) < 4:
        return broke(TIMER_A, f"only {len(times) - 1} retransmissions of the unanswered "
                     f"INVITE: {table}")
    if not ok:
        return broke(TIMER_A, f"INVITE retransmissions off the Timer A schedule (T1 = "
                     f"{profile.t1 * 1000:.0f} ms, doubling): {table}")
    return passed(f"retransmitted on the Timer A schedule: {table}")


async def ack_non2xx(probe: Probe, profile: Profile) -> Outcome:
    call = await incoming_call(probe, profile)
    if not isinstance(call, tuple):
        return call
    got, invite = call
    tag = probe.tag()
    respond(probe, profile, got, 486, tag)
    ack = await expect_ack(probe, profile, invite.call_id)
    if ack is None:
        return broke(ACK_NON2XX, f"no ACK for the 486 within {profile.response_timeout:g} s")
    req = ack.msg
    assert isinstance(req, Request)
    problems: list[str] = []
    try:
        if req.via.branch != invite.via.branch:
            problems.append("its branch is not the INVITE's (the ACK for a non-2xx is part "
                            "of the INVITE transaction)")
        if req.cseq.seq != invite.cseq.seq or req.cseq.method != "ACK":
            problems.append(f"CSeq '{req.cseq.seq} {req.cseq.method}', not "
                            f"'{invite.cseq.seq} ACK'")
        if req.uri_text != invite.uri_text:
            problems.append(f"Request-URI {req.uri_text!r} is not the INVITE's")
        if req.to_tag != tag:
            problems.append("To does not carry the 486's tag")
        if req.from_tag != invite.from_tag:
            problems.append("From is not the INVITE's")
    except ParseError as e:
        problems.append(f"unparsable ACK: {e.reason}")
    if problems:
        return broke(ACK_NON2XX, "ACK for the 486: " + "; ".join(problems))
    return passed("ACK for the 486 in the INVITE's transaction, with the 486's To tag")


async def ack_2xx(probe: Probe, profile: Profile) -> Outcome:
    call = await incoming_call(probe, profile)
    if not isinstance(call, tuple):
        return call
    got, invite = call
    tag = probe.tag()
    ack = await serve(probe, profile, got, tag)
    if ack is None:
        return broke(ACK_2XX, f"no ACK for the 200 within {profile.response_timeout:g} s")
    req = ack.msg
    assert isinstance(req, Request)
    problems: list[str] = []
    try:
        if req.via.branch == invite.via.branch:
            problems.append("it reuses the INVITE's branch (the ACK for a 2xx is a new "
                            "transaction, §17.1.1.3)")
        if req.cseq.seq != invite.cseq.seq or req.cseq.method != "ACK":
            problems.append(f"CSeq '{req.cseq.seq} {req.cseq.method}', not "
                            f"'{invite.cseq.seq} ACK'")
        if req.to_tag != tag:
            problems.append("To does not carry the 200's tag")
        ours = uac_contact(profile).strip("<>")
        if req.uri_text != ours and not invite.has("record-route"):
            problems.append(f"Request-URI {req.uri_text!r} is not our Contact {ours} "
                            "(§12.2.1.1: the remote target)")
    except ParseError as e:
        problems.append(f"unparsable ACK: {e.reason}")
    if problems:
        return broke(ACK_2XX, "ACK for the 200: " + "; ".join(problems))
    return passed("ACK for the 200 in the dialog: new branch, the INVITE's CSeq number, "
                  "sent to our Contact")


async def cancel(probe: Probe, profile: Profile) -> Outcome:
    call = await incoming_call(probe, profile)
    if not isinstance(call, tuple):
        return call
    got, invite = call
    tag = probe.tag()
    respond(probe, profile, got, 180, tag)
    c = await probe.expect(lambda m: isinstance(m, Request) and m.method == "CANCEL"
                           and m.call_id == invite.call_id, profile.uac.wait)
    if c is None:
        await serve(probe, profile, got, tag)
        return inconclusive("the target did not CANCEL while ringing")
    req = c.msg
    assert isinstance(req, Request)
    probe.send(make_response(req, 200), c.peer)
    respond(probe, profile, got, 487, tag)
    ack = await expect_ack(probe, profile, invite.call_id)
    problems: list[str] = []
    try:
        if req.uri_text != invite.uri_text:
            problems.append("Request-URI differs from the INVITE's")
        if req.via.branch != invite.via.branch:
            problems.append("branch differs from the INVITE's")
        if req.cseq.seq != invite.cseq.seq:
            problems.append(f"CSeq number {req.cseq.seq}, not the INVITE's {invite.cseq.seq}")
        if req.get("to") != invite.get("to") or req.get("from") != invite.get("from"):
            problems.append("To or From differs from the INVITE's")
    except ParseError as e:
        problems.append(f"unparsable CANCEL: {e.reason}")
    if problems:
        return broke(CANCEL_MATCHES, "CANCEL: " + "; ".join(problems))
    if ack is None:
        return broke(ACK_NON2XX, "no ACK for the 487 after the CANCEL")
    return passed("CANCEL matches the INVITE (URI, branch, CSeq, To, From); 487 ACKed")


CASES = [
    Case("UAC-INV-001", "3261", "8.1.1", "the target's INVITE is well formed: magic-cookie "
         "branch, Max-Forwards, one SIP Contact, CSeq, From tag", "uac", ("role:uac",),
         well_formed, rules=(WELL_FORMED,)),
    Case("UAC-INV-002", "3261", "17.1.1.2", "an unanswered INVITE is retransmitted at T1, "
         "2*T1, 4*T1 (Timer A, UDP)", "uac", ("role:uac",), timer_a, rules=(TIMER_A,)),
    Case("UAC-INV-003", "3261", "17.1.1.3", "a non-2xx final response (486) is ACKed in the "
         "INVITE's transaction", "uac", ("role:uac",), ack_non2xx, rules=(ACK_NON2XX,)),
    Case("UAC-INV-004", "3261", "13.2.2.4", "the 2xx is ACKed in the dialog, as a new "
         "transaction", "uac", ("role:uac",), ack_2xx, rules=(ACK_2XX,)),
    Case("UAC-INV-005", "3261", "9.1", "a CANCEL while ringing matches the INVITE, and the "
         "487 is ACKed (profile uac.cancels)", "uac", ("role:uac", "set:uac.cancels"), cancel,
         rules=(CANCEL_MATCHES, ACK_NON2XX)),
]
