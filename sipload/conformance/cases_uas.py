"""The UAS pack, part 1: INVITE transactions, OPTIONS and the request checks of §8.2.

Each case calls the profile's ``uas.uri`` (or ``ringing_uri``/``busy_uri``)
and leaves no call behind (:meth:`Probe.finish`).  Requests that a target might
accept by mistake are INVITEs, the one method every UAS serves, so a lenient
target is caught accepting them (its 2xx is then ACKed and hung up).
"""

from __future__ import annotations

from sipload.conformance.judge import (
    earlier_step,
    echo_problems,
    expected_intervals,
    intervals_to_observe,
    judge_schedule,
)
from sipload.conformance.model import (
    Case,
    Outcome,
    Rule,
    broke,
    inconclusive,
    must,
    passed,
    should,
)
from sipload.conformance.probe import Exchange, Probe, is_response_to
from sipload.conformance.profile import Profile
from sipload.conformance.steps import no_final, status_text, uas_uri
from sipload.sip import sdp
from sipload.sip.build import make_cancel, make_response
from sipload.sip.message import Request, Response

UNKNOWN_OPTION = "x-sipload-unknown-extension"
RING_SETTLE = 0.2
"""Seconds a target that rings on its own is watched before the CANCEL: a final answer
in that time means it does not stay ringing, and there is nothing to cancel."""

# --------------------------------------------------------------------------- the rules

ANSWER_INVITE = must("RFC 3261 §17.2.1", "The server transaction MUST generate a 100 (Trying) "
                     "response unless it knows that the TU will generate a provisional or "
                     "final response within 200 ms")
OPTIONS_CODE = must("RFC 3261 §11.2", "The response code chosen MUST be the same that would "
                    "have been chosen had the request been an INVITE.")
OPTIONS_HEADERS = should("RFC 3261 §11.2", "Allow, Accept, Accept-Encoding, Accept-Language, "
                         "and Supported header fields SHOULD be present in a 200 (OK) "
                         "response to an OPTIONS request.")
CANCEL_ANSWERED = must("RFC 3261 §9.2", "as long as the CANCEL matched an existing "
                       "transaction, the UAS answers the CANCEL request itself with a 200 "
                       "(OK) response.")
CANCEL_487 = should("RFC 3261 §9.2", "If the original request was an INVITE, the UAS SHOULD "
                    "immediately respond to the INVITE with a 487 (Request Terminated).")
ACK_CONFIRMS = must("RFC 3261 §17.2.1", "If an ACK is received while the server transaction "
                    "is in the \"Completed\" state, the server transaction MUST transition to "
                    "the \"Confirmed\" state.  [...] Timer G is ignored in this state.")
OK_RETRANSMITTED = must("RFC 3261 §13.3.1.4", "it is necessary to periodically pass the "
                        "response directly to the transport until the ACK arrives.  The 2xx "
                        "response is passed to the transport with an interval that starts at "
                        "T1 seconds and doubles for each retransmission until it reaches T2 "
                        "seconds")
OK_STOPS = must("RFC 3261 §13.3.1.4", "Response retransmissions cease when an ACK request for "
                "the response is received.")
BYE_AFTER_64T1 = should("RFC 3261 §13.3.1.4", "If the server retransmits the 2xx response for "
                        "64*T1 seconds without receiving an ACK, the dialog is confirmed, but "
                        "the session SHOULD be terminated.  This is accomplished with a BYE")
RESEND_FINAL = should("RFC 3261 §17.2.1", "While in the \"Completed\" state, if a request "
                      "retransmission is received, the server SHOULD pass the response to the "
                      "transport for retransmission.")
ECHO = must("RFC 3261 §8.2.6.2", "The From field of the response MUST equal the From header "
            "field of the request.  The Call-ID header field of the response MUST equal the "
            "Call-ID header field of the request.  The CSeq header field of the response MUST "
            "equal the CSeq field of the request.  The Via header field values in the "
            "response MUST equal the Via header field values in the request")
TO_TAG = must("RFC 3261 §8.2.6.2", "the UAS MUST add a tag to the To header field in the "
              "response (with the exception of the 100 (Trying) response [...]).  The same "
              "tag MUST be used for all responses to that request")
CONTACT_2XX = must("RFC 3261 §12.1.1", "The UAS MUST add a Contact header field to the "
                   "response.")
METHOD = must("RFC 3261 §8.2.1", "If the UAS recognizes but does not support the method of a "
              "request, it MUST generate a 405 (Method Not Allowed) response.  [...] The UAS "
              "MUST also add an Allow header field to the 405 (Method Not Allowed) response. "
              "(§21.5.2: 501 is the appropriate response when a UAS does not recognize the "
              "request method)")
MAX_FORWARDS_ZERO = should("RFC 3261 §16.3 step 3", "(informational) (a proxy's check, which a "
                           "UAS's §8.2 does not have) If the request contains a Max-Forwards "
                           "header field with a field value of zero (0), the element MUST NOT "
                           "forward the request.  If the request was for OPTIONS, the element "
                           "MAY act as the final recipient and respond per Section 11.  "
                           "Otherwise, the element MUST return a 483 (Too many hops) response.")
REQUIRE = must("RFC 3261 §8.2.2.3", "If a UAS does not understand an option-tag listed in a "
               "Require header field, it MUST respond by generating a response with status "
               "code 420 (Bad Extension).  The UAS MUST add an Unsupported header field, and "
               "list in it those options it does not understand")
SCHEME = should("RFC 3261 §8.2.2.1", "If the Request-URI uses a scheme not supported by the "
                "UAS, it SHOULD reject the request with a 416 (Unsupported URI Scheme) "
                "response.")
MISSING_TO = should("RFC 3261 §8.1.1, §21.4.1", "A valid SIP request formulated by a UAC "
                    "MUST, at a minimum, contain the following header fields: To, From, CSeq, "
                    "Call-ID, Max-Forwards, and Via [...] (§21.4.1, 400 Bad Request) The request "
                    "could not be understood due to malformed syntax.  The Reason-Phrase SHOULD "
                    "identify the syntax problem in more detail, for example, \"Missing Call-ID "
                    "header field\".")


async def _final_for(probe: Probe, profile: Profile, ex: Exchange,
                     want: tuple[int, ...], rule: Rule, step: str) -> Outcome:
    """Judge an INVITE that must be refused with one of ``want`` at §8.2 step ``step``
    (an answer right at an earlier step passes), and clean up."""
    await probe.finish(ex.request, ex)
    wanted = "/".join(map(str, want))
    if ex.final is None:
        return broke(ANSWER_INVITE, f"{no_final(ex)} within {profile.response_timeout:g} s; "
                     f"expected {wanted}")
    if ex.status in want:
        return passed(f"answered {ex.status} {ex.final.reason}")
    earlier = earlier_step(ex.status, step, skip=("method",))
    if earlier is not None:
        return passed(f"answered {ex.status} {ex.final.reason}: right at an earlier step of "
                      f"§8.2 ({earlier}), before {wanted} is due")
    return broke(rule, f"answered {ex.status} {ex.final.reason}; expected {wanted}")


# --------------------------------------------------------------------------- INVITE


async def trying(probe: Probe, profile: Profile) -> Outcome:
    ex = await probe.invite(uas_uri(profile), timeout=profile.response_timeout + 2)
    await probe.finish(ex.request, ex)
    arrivals = [(t, r) for t, r in ex.provisionals]
    if ex.final is not None:
        arrivals.append((ex.final_at, ex.final))
    if not arrivals:
        return broke(ANSWER_INVITE, "no response to the INVITE")
    first_at, first = min(arrivals, key=lambda a: a[0])
    delay = (first_at - ex.sent_at) * 1000
    if any(r.status == 100 for _, r in ex.provisionals):
        at = next(t for t, r in ex.provisionals if r.status == 100)
        return passed(f"100 Trying after {(at - ex.sent_at) * 1000:.0f} ms")
    if delay <= 200 + 50:
        return passed(f"no 100, but {first.status} came after {delay:.0f} ms "
                      "(within 200 ms, which §17.2.1 allows)")
    return broke(ANSWER_INVITE, f"no 100 Trying, and the first response ({first.status}) "
                 f"took {delay:.0f} ms")


async def options(probe: Probe, profile: Profile) -> Outcome:
    req = probe.request("OPTIONS", uas_uri(profile))
    req.add_header("Accept", "application/sdp")
    ex = await probe.transact(req, timeout=profile.response_timeout)
    if ex.final is None:
        return broke(OPTIONS_CODE, f"{no_final(ex)} within {profile.response_timeout:g} s; "
                     "the target answers an INVITE to the same URI")
    if ex.status != 200:
        inv = await probe.invite(uas_uri(profile), timeout=profile.response_timeout + 2)
        await probe.finish(inv.request, inv)
        if inv.status != ex.status and not (200 <= inv.status < 300 and ex.status < 300):
            return broke(OPTIONS_CODE, f"OPTIONS answered {status_text(ex)}, but an INVITE to "
                         f"the same URI {status_text(inv)}")
        return passed(f"OPTIONS answered {status_text(ex)}, as an INVITE is")
    missing = [h for h in ("Allow", "Supported") if not ex.final.has(h.lower())]
    if missing:
        return broke(OPTIONS_HEADERS, f"200 without {' and '.join(missing)}")
    return passed(f"200 with Allow: {ex.final.get('allow')}; Supported: "
                  f"{ex.final.get('supported')}")


async def response_fields(probe: Probe, profile: Profile) -> Outcome:
    ex = await probe.invite(uas_uri(profile), timeout=profile.response_timeout + 2)
    call_id = ex.request.call_id
    responses = [r for _, r in ex.provisionals]
    if ex.final is not None:
        responses.append(ex.final)
    while True:  # responses of the call that did not match the transaction (a wrong CSeq)
        stray = await probe.expect(
            lambda m: isinstance(m, Response) and m.call_id == call_id, 0.0)
        if stray is None:
            break
        assert isinstance(stray.msg, Response)
        responses.append(stray.msg)
    await probe.finish(ex.request, ex)
    if not responses:
        return broke(ANSWER_INVITE, "no response to the INVITE")
    echo: list[str] = []
    tagging: list[str] = []
    tags = {r.to_tag for r in responses if r.status > 100 and r.to_tag}
    for r in responses:
        for p in echo_problems(ex.request, r):
            (tagging if "To" in p else echo).append(f"{r.status}: {p}")
    if len(tags) > 1:
        tagging.append(f"the responses carry {len(tags)} different To tags")
    if echo:
        return broke(ECHO, "; ".join(dict.fromkeys(echo + tagging)))
    if tagging:
        return broke(TO_TAG, "; ".join(dict.fromkeys(tagging)))
    if ex.final is not None and 200 <= ex.status < 300 and not ex.final.has("contact"):
        return broke(CONTACT_2XX, f"{ex.status} without Contact")
    if not any(r.status >= 200 for r in responses):
        return broke(ANSWER_INVITE, "no final response")
    got = " ".join(str(r.status) for r in responses)
    return passed(f"every response ({got}) copies Via, From, To, Call-ID and CSeq"
                  + (" and the 2xx has a Contact" if 200 <= ex.status < 300 else ""))


async def cancel(probe: Probe, profile: Profile) -> Outcome:
    """CANCEL a ringing INVITE: to ``uas.ringing_uri`` when the profile names one (it rings
    and is never answered), else to ``uas.uri`` if the target rings there on its own."""
    rt = profile.response_timeout
    own = not profile.uas.ringing_uri
    uri = uas_uri(profile) if own else profile.uri(profile.uas.ringing_uri)
    req = probe.request("INVITE", uri)
    req.set_body(sdp.build_audio_offer(probe.local[0], 6000, session_id=1).to_bytes(),
                 "application/sdp")
    ex = await probe.transact(req, timeout=rt + (2 if own else 0), until_provisional=not own,
                              until_ringing=own)
    invite = ex.request
    if ex.final is not None:
        await probe.finish(invite, ex)
        if own:
            return inconclusive(f"the target never rang: it answered {status_text(ex)} "
                                "without a provisional response above 100 (name a URI that "
                                "rings in the profile's uas.ringing_uri)")
        return inconclusive(f"answered {ex.status} before any provisional response: "
                            "nothing to CANCEL (§9.1: CANCEL only after a provisional)")
    if not ex.provisionals:
        if own:
            return inconclusive(f"the target never rang within {rt + 2:g} s (name a URI that "
                                "rings in the profile's uas.ringing_uri)")
        return broke(ANSWER_INVITE, f"no provisional response within {rt:g} s")
    if own:  # a target ringing on its own may answer at once: then there is no CANCEL
        early = await probe.expect_response(invite, RING_SETTLE, lambda s: s >= 200)
        if early is not None:
            assert isinstance(early.msg, Response)
            ex.final, ex.final_at = early.msg, early.at
            await probe.finish(invite, ex)
            rang = ex.provisionals[-1]
            return inconclusive(f"the target rang ({rang[1].status}) but answered "
                                f"{status_text(ex)} {(ex.final_at - rang[0]) * 1000:.0f} ms "
                                "later: no time to CANCEL (name a URI that rings in the "
                                "profile's uas.ringing_uri)")
    cex = await probe.transact(make_cancel(invite), timeout=rt)
    got = await probe.expect_response(invite, rt, lambda s: s >= 200)
    if got is not None:
        assert isinstance(got.msg, Response)
        ex.final, ex.final_at = got.msg, got.at
    if ex.final is None:
        await probe.finish(invite, ex)
        if cex.final is None:
            return broke(CANCEL_ANSWERED, "no answer to the CANCEL, and no final response to "
                         "the INVITE")
        return broke(CANCEL_487, f"CANCEL answered {status_text(cex)}, and no final response "
                     "to the INVITE")
    final = ex.final
    if 200 <= final.status < 300:
        await probe.finish(invite, ex)
        if cex.final is not None and cex.status == 200 and cex.final_at < ex.final_at - 0.05:
            return broke(CANCEL_487, f"the INVITE was answered {final.status} "
                         f"{(ex.final_at - cex.final_at) * 1000:.0f} ms after its CANCEL was "
                         "accepted")
        if cex.final is None:
            return broke(CANCEL_ANSWERED, f"no answer to the CANCEL; the INVITE was answered "
                         f"{final.status}")
        return inconclusive(f"the INVITE was answered {final.status} as the CANCEL crossed it")
    probe.ack(invite, final)
    ack_at = probe.now()
    if cex.final is None:
        return broke(CANCEL_ANSWERED, f"no answer to the CANCEL; the INVITE ended "
                     f"{final.status}")
    if cex.status != 200:
        return broke(CANCEL_ANSWERED, f"CANCEL answered {status_text(cex)}, not 200")
    # after the ACK the 487 stops (Timer G, §17.2.1)
    late = await probe.expect(
        lambda m: is_response_to(m, invite) and m.status == final.status,  # type: ignore[attr-defined]
        2 * profile.t1 + 0.3)
    if late is not None and late.at - ack_at > 0.1:
        return broke(ACK_CONFIRMS, f"{final.status} still retransmitted "
                     f"{late.at - ack_at:.2f} s after the ACK")
    if final.status != 487:
        return broke(CANCEL_487, f"CANCEL got 200, but the INVITE ended {final.status}, "
                     "not 487")
    return passed("CANCEL got 200, the INVITE 487, and the 487 stopped after the ACK"
                  + (" (the target rang on its own)" if own else ""))


async def ok_retransmission(probe: Probe, profile: Profile) -> Outcome:
    ex = await probe.invite(uas_uri(profile), timeout=profile.response_timeout + 8)
    invite = ex.request
    if ex.final is None:
        await probe.finish(invite, ex)
        return broke(ANSWER_INVITE, no_final(ex))
    if not 200 <= ex.status < 300:
        await probe.finish(invite, ex)
        return inconclusive(f"answered {ex.status}: a 2xx is needed to judge its retransmission")
    n = intervals_to_observe(profile.t1, profile.t2)
    expected = expected_intervals(profile.t1, profile.t2, n)
    times = [ex.final_at]
    for e in expected:
        got = await probe.expect(
            lambda m: isinstance(m, Response) and 200 <= m.status < 300
            and is_response_to(m, invite), e * 1.6 + 0.2)
        if got is None:
            break
        times.append(got.at)
    ok, table = judge_schedule(times, expected)
    dialog = probe.ack(invite, ex.final)
    ack_at = probe.now()
    late = await probe.expect(
        lambda m: isinstance(m, Response) and is_response_to(m, invite),
        expected[min(len(times) - 1, n - 1)] * 1.5 + 0.2)
    if dialog is not None:
        await probe.hang_up(dialog)
    if len(times) == 1:
        return broke(OK_RETRANSMITTED, f"the 2xx was not retransmitted within "
                     f"{expected[0] * 1.6 + 0.2:.2f} s without an ACK")
    if len(times) - 1 < n:
        return broke(OK_RETRANSMITTED, f"only {len(times) - 1} retransmissions before they "
                     f"stopped, no ACK sent: {table}")
    if not ok:
        return broke(OK_RETRANSMITTED, f"2xx retransmission intervals off the "
                     f"T1-doubling-to-T2 schedule (T1={profile.t1 * 1000:.0f} ms, "
                     f"T2={profile.t2:g} s): {table}")
    if dialog is None:
        return inconclusive(f"retransmitted on schedule ({table}), but the 2xx cannot be "
                            "ACKed (no To tag or Contact): whether an ACK stops it is unknown")
    if late is not None and late.at - ack_at > 0.1:
        return broke(OK_STOPS, f"the 2xx was still retransmitted {late.at - ack_at:.2f} s "
                     f"after the ACK ({table})")
    return passed(f"retransmitted on schedule, stopped by the ACK: {table}")


async def ok_timeout_bye(probe: Probe, profile: Profile) -> Outcome:
    ex = await probe.invite(uas_uri(profile), timeout=profile.response_timeout + 8)
    invite = ex.request
    if ex.final is None or not 200 <= ex.status < 300:
        await probe.finish(invite, ex)
        return inconclusive(f"answered {ex.status or 'nothing'}: a 2xx is needed")
    limit = 64 * profile.t1
    got = await probe.expect_request("BYE", limit * 1.3 + 2.0, call_id=invite.call_id)
    if got is None:
        dialog = probe.ack(invite, ex.final)
        if dialog is not None:
            await probe.hang_up(dialog)
        return broke(BYE_AFTER_64T1, f"no BYE within {limit * 1.3 + 2:.1f} s of an "
                     "unacknowledged 2xx")
    bye = got.msg
    assert isinstance(bye, Request)
    probe.send(make_response(bye, 200), got.peer)
    after = got.at - ex.final_at
    if after < limit * 0.8:
        return broke(BYE_AFTER_64T1, f"BYE after {after:.1f} s, before 64*T1 = {limit:.1f} s")
    return passed(f"BYE {after:.1f} s after the unacknowledged 2xx (64*T1 = {limit:.1f} s)")


async def final_on_retransmission(probe: Probe, profile: Profile) -> Outcome:
    req = probe.request("INVITE", uas_uri(profile))
    req.add_header("Require", UNKNOWN_OPTION)
    ex = await probe.transact(req, timeout=profile.response_timeout + 8)
    if ex.final is None:
        await probe.finish(req, ex)
        return broke(ANSWER_INVITE, no_final(ex))
    if ex.status < 300:
        await probe.finish(req, ex)
        return inconclusive(f"the INVITE (Require: {UNKNOWN_OPTION}) was answered {ex.status}:"
                            " a non-2xx final response is needed")
    sent = probe.send(req)
    window = max(0.5 * profile.t1, 0.04)
    got = await probe.expect(
        lambda m: is_response_to(m, req) and m.status == ex.status,  # type: ignore[attr-defined]
        window)
    probe.ack(req, ex.final)
    if got is None:
        return broke(RESEND_FINAL, f"the {ex.status} was not resent within "
                     f"{window * 1000:.0f} ms of the retransmitted INVITE")
    return passed(f"{ex.status} resent {(got.at - sent) * 1000:.0f} ms after the "
                  "retransmitted INVITE")


# --------------------------------------------------------------------------- §8.2 checks


async def unknown_method(probe: Probe, profile: Profile) -> Outcome:
    req = probe.request("XSIPLOADFOO", uas_uri(profile))
    ex = await probe.transact(req, timeout=profile.response_timeout)
    if ex.final is None:
        return broke(METHOD, f"{no_final(ex)}; expected 405 (with Allow) or 501")
    if ex.status in (401, 407):
        return passed(f"answered {ex.status}: authentication comes before method "
                      "inspection (§8.2)")
    if ex.status not in (405, 501):
        return broke(METHOD, f"answered {status_text(ex)}; expected 405 or 501")
    if ex.status == 405 and not ex.final.has("allow"):
        return broke(METHOD, "405 without Allow")
    allow = ex.final.get("allow")
    return passed(f"{status_text(ex)}" + (f" with Allow: {allow}" if allow else
                                          " (Allow is required only in a 405)"))


async def max_forwards_zero(probe: Probe, profile: Profile) -> Outcome:
    uri = uas_uri(profile)
    if probe.alive_method == "OPTIONS":
        ex = await probe.transact(probe.request("OPTIONS", uri, max_forwards=0),
                                  timeout=profile.response_timeout)
        if ex.final is None:
            return broke(OPTIONS_CODE, f"{no_final(ex)} to OPTIONS with Max-Forwards: 0")
    else:
        req = probe.request("INVITE", uri, max_forwards=0)
        ex = await probe.transact(req, timeout=profile.response_timeout)
        await probe.finish(req, ex)
        if ex.final is None:
            return broke(ANSWER_INVITE, f"{no_final(ex)} to INVITE with Max-Forwards: 0")
    if ex.status == 483:
        return broke(MAX_FORWARDS_ZERO, "answered 483 like a proxy; a UAS is the request's "
                     "destination and processes it normally")
    return passed(f"processed normally: {status_text(ex)}")


async def unknown_require(probe: Probe, profile: Profile) -> Outcome:
    ex = await probe.invite(uas_uri(profile), headers=[("Require", UNKNOWN_OPTION)],
                            timeout=profile.response_timeout)
    outcome = await _final_for(probe, profile, ex, (420,), REQUIRE, "require")
    if outcome.verdict != "pass" or ex.status != 420:
        return outcome
    assert ex.final is not None
    unsupported = ex.final.unsupported
    if UNKNOWN_OPTION not in unsupported:
        return broke(REQUIRE, f"420 whose Unsupported ({', '.join(unsupported) or 'absent'}) "
                     f"does not list {UNKNOWN_OPTION}")
    return passed(f"420 with Unsupported: {UNKNOWN_OPTION}")


async def unknown_scheme(probe: Probe, profile: Profile) -> Outcome:
    req = probe.request("INVITE", "xyzzy:conformance-opaque-content",
                        to=f"<{uas_uri(profile)}>")
    ex = await probe.transact(req, timeout=profile.response_timeout)
    await probe.finish(req, ex)
    if ex.final is None:
        return broke(ANSWER_INVITE, f"{no_final(ex)} within {profile.response_timeout:g} s; "
                     "expected 416")
    if ex.status in (416, 401, 407):
        return passed(f"answered {status_text(ex)}"
                      + ("" if ex.status == 416 else ": authentication comes first (§8.2)"))
    return broke(SCHEME, f"answered {status_text(ex)}, not 416")


async def missing_to(probe: Probe, profile: Profile) -> Outcome:
    req = probe.request("INVITE", uas_uri(profile))
    req.remove_header("to")
    ex = await probe.transact(req, timeout=profile.response_timeout)
    await probe.finish(req, ex)
    if ex.final is None and not ex.provisionals:
        alive = await probe.alive(uas_uri(profile), timeout=max(profile.response_timeout, 2.0))
        if not alive:
            return broke(ANSWER_INVITE, "the request without To was dropped, and the target "
                         "then stopped answering valid requests")
        return passed("dropped (allowed for a malformed request); a valid request is still "
                      "answered")
    if ex.status == 400:
        return passed(f"answered {status_text(ex)}")
    return broke(MISSING_TO, f"a request without To got {status_text(ex)}, not 400")


CASES = [
    Case("UAS-CALL-001", "3665", "2.1", "basic call: INVITE, 200 with an answer, ACK, BYE "
         "answered 200", "uas", ("role:uas",), scenario="uas_basic_call.yaml",
         rules=(ANSWER_INVITE,)),
    Case("UAS-CALL-002", "3665", "3.5", "a busy callee refuses the INVITE with 486 "
         "(profile uas.busy_uri)", "uas", ("role:uas", "set:uas.busy_uri"),
         scenario="uas_busy.yaml", rules=(ANSWER_INVITE,)),
    Case("UAS-OPT-001", "3261", "11.2", "OPTIONS is answered as an INVITE would be; a 200 "
         "carries Allow and Supported", "uas", ("role:uas",), options,
         rules=(OPTIONS_CODE, OPTIONS_HEADERS)),
    Case("UAS-INV-001", "3261", "17.2.1", "INVITE gets 100 Trying, or another response "
         "within 200 ms", "uas", ("role:uas",), trying, rules=(ANSWER_INVITE,)),
    Case("UAS-INV-002", "3261", "13.3.1.1", "a UAS that rings sends 180/183 before the 2xx "
         "(profile uas.rings)", "uas", ("role:uas", "set:uas.rings"),
         scenario="uas_ringing.yaml", rules=(ANSWER_INVITE,)),
    Case("UAS-INV-003", "3261", "9.2", "CANCEL before the answer: 200 to CANCEL, 487 to the "
         "INVITE, 487 stops after the ACK (uas.ringing_uri, or a target that rings on its "
         "own)", "uas", ("role:uas",), cancel,
         rules=(CANCEL_ANSWERED, CANCEL_487, ACK_CONFIRMS)),
    Case("UAS-INV-004", "3261", "13.3.1.4", "the 2xx is retransmitted until the ACK, at T1 "
         "doubling up to T2, and stops after it", "uas", ("role:uas",), ok_retransmission,
         budget=30.0, rules=(OK_RETRANSMITTED, OK_STOPS)),
    Case("UAS-INV-005", "3261", "13.3.1.4", "no ACK for the 2xx: the UAS ends the session "
         "with BYE after 64*T1 (slow: 32 s at T1 = 500 ms)", "uas", ("role:uas",),
         ok_timeout_bye, slow=True, rules=(BYE_AFTER_64T1,)),
    Case("UAS-INV-006", "3261", "17.2.1", "the final response is resent when the INVITE is "
         "retransmitted (non-2xx, Completed state)", "uas", ("role:uas",),
         final_on_retransmission, rules=(RESEND_FINAL,)),
    Case("UAS-INV-007", "3261", "8.2.6.2", "responses copy Via, From, Call-ID, CSeq and To "
         "(adding one To tag); the 2xx has a Contact", "uas", ("role:uas",), response_fields,
         rules=(ECHO, TO_TAG, CONTACT_2XX)),
    Case("UAS-REQ-001", "3261", "8.2.1", "an unknown method gets 405 (with Allow) or 501",
         "uas", ("role:uas",), unknown_method, rules=(METHOD,)),
    Case("UAS-REQ-002", "3261", "16.3", "Max-Forwards: 0 to a UAS: processed normally, not "
         "483 (483 is a proxy's answer; RFC 4475 §3.3.11)", "uas", ("role:uas",),
         max_forwards_zero, rules=(MAX_FORWARDS_ZERO,)),
    Case("UAS-REQ-003", "3261", "8.2.2.3", "an unknown Require option gets 420 with "
         "Unsupported naming it (or an answer of an earlier §8.2 step)", "uas",
         ("role:uas",), unknown_require, rules=(REQUIRE,)),
    Case("UAS-REQ-004", "3261", "8.2.2.1", "an unsupported Request-URI scheme gets 416",
         "uas", ("role:uas",), unknown_scheme, rules=(SCHEME,)),
    Case("UAS-REQ-005", "3261", "8.1.1", "a request missing a mandatory header (To) gets 400, "
         "or is dropped and the target still answers", "uas", ("role:uas",), missing_to,
         rules=(MISSING_TO,)),
]
