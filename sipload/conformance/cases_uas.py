"""The UAS pack, part 1: INVITE transactions, OPTIONS and the request checks of §8.2.

Each case calls the profile's ``uas.uri`` (or ``ringing_uri``/``busy_uri``)
and leaves no call behind (:meth:`Probe.finish`).  Requests that a target might
accept by mistake are INVITEs, the one method every UAS serves, so a lenient
target is caught accepting them (its 2xx is then ACKed and hung up).
"""

from __future__ import annotations

from sipload.conformance.judge import (
    echo_problems,
    expected_intervals,
    intervals_to_observe,
    judge_schedule,
)
from sipload.conformance.model import (
    Case,
    Outcome,
    failed,
    inconclusive,
    passed,
)
from sipload.conformance.probe import Exchange, Probe, is_response_to
from sipload.conformance.profile import Profile
from sipload.conformance.steps import no_final, uas_uri
from sipload.sip.build import make_cancel, make_response
from sipload.sip.message import Response

UNKNOWN_OPTION = "x-sipload-unknown-extension"


async def _final_for(probe: Probe, profile: Profile, ex: Exchange,
                     want: tuple[int, ...], what: str) -> Outcome:
    """Judge a request that must be refused with one of ``want`` (and clean up)."""
    await probe.finish(ex.request, ex)
    if ex.final is None:
        return failed(f"{no_final(ex)} within {profile.response_timeout:g} s; "
                      f"expected {'/'.join(map(str, want))} ({what})")
    if ex.status not in want:
        return failed(f"answered {ex.status} {ex.final.reason}; expected "
                      f"{'/'.join(map(str, want))} ({what})")
    return passed(f"answered {ex.status} {ex.final.reason}")


# --------------------------------------------------------------------------- INVITE


async def trying(probe: Probe, profile: Profile) -> Outcome:
    ex = await probe.invite(uas_uri(profile), timeout=profile.response_timeout + 2)
    await probe.finish(ex.request, ex)
    arrivals = [(t, r) for t, r in ex.provisionals]
    if ex.final is not None:
        arrivals.append((ex.final_at, ex.final))
    if not arrivals:
        return failed("no response to the INVITE")
    first_at, first = min(arrivals, key=lambda a: a[0])
    delay = (first_at - ex.sent_at) * 1000
    if any(r.status == 100 for _, r in ex.provisionals):
        at = next(t for t, r in ex.provisionals if r.status == 100)
        return passed(f"100 Trying after {(at - ex.sent_at) * 1000:.0f} ms")
    if delay <= 200 + 50:
        return passed(f"no 100, but {first.status} came after {delay:.0f} ms "
                      "(within 200 ms, which §17.2.1 allows)")
    return failed(f"no 100 Trying, and the first response ({first.status}) took {delay:.0f} ms")


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
        return failed("no response to the INVITE")
    problems: list[str] = []
    tags = {r.to_tag for r in responses if r.status > 100 and r.to_tag}
    for r in responses:
        problems += [f"{r.status}: {p}" for p in echo_problems(ex.request, r)]
    if ex.final is not None and 200 <= ex.status < 300 and not ex.final.has("contact"):
        problems.append(f"{ex.status} without Contact (§12.1.1: MUST)")
    if not any(r.status >= 200 for r in responses):
        problems.append("no final response")
    if len(tags) > 1:
        problems.append(f"the responses carry {len(tags)} different To tags")
    if problems:
        return failed("; ".join(dict.fromkeys(problems)))
    got = " ".join(str(r.status) for r in responses)
    return passed(f"every response ({got}) copies Via, From, To, Call-ID and CSeq"
                  + (" and the 2xx has a Contact" if 200 <= ex.status < 300 else ""))


async def cancel(probe: Probe, profile: Profile) -> Outcome:
    uri = profile.uri(profile.uas.ringing_uri)
    rt = profile.response_timeout
    ex = await probe.invite(uri, timeout=rt, until_provisional=True)
    invite = ex.request
    if ex.final is not None:
        await probe.finish(invite, ex)
        return inconclusive(f"answered {ex.status} before any provisional response: "
                            "nothing to CANCEL (§9.1: CANCEL only after a provisional)")
    if not ex.provisionals:
        return failed(f"no provisional response within {rt:g} s")
    cex = await probe.transact(make_cancel(invite), timeout=rt)
    got = await probe.expect_response(invite, rt, lambda s: s >= 200)
    if got is not None:
        assert isinstance(got.msg, Response)
        ex.final, ex.final_at = got.msg, got.at
    if ex.final is None:
        await probe.finish(invite, ex)
        return failed(f"CANCEL answered {cex.status or 'nothing'}, and no final response "
                      "to the INVITE")
    final = ex.final
    probe.ack(invite, final)
    ack_at = probe.now()
    if cex.final is None:
        await probe.finish(invite, Exchange(invite, ex.sent_at, final, ex.final_at))
        return failed(f"no answer to the CANCEL (§9.2: 200), and the INVITE ended {final.status}")
    if 200 <= final.status < 300:
        dialog_ex = Exchange(invite, ex.sent_at, final, ex.final_at)
        await probe.finish(invite, dialog_ex)
        if cex.final is not None and cex.final_at < ex.final_at:
            return failed("the INVITE was answered 2xx after its CANCEL was accepted")
        return inconclusive("the INVITE was answered 2xx as the CANCEL crossed it")
    if cex.status != 200:
        return failed(f"CANCEL answered {cex.status or 'nothing'}, not 200 (§9.2)")
    if final.status != 487:
        return failed(f"the cancelled INVITE ended {final.status}, not 487 (§9.2)")
    # after the ACK the 487 stops (Timer G, §17.2.1)
    late = await probe.expect(
        lambda m: is_response_to(m, invite) and m.status == 487,  # type: ignore[attr-defined]
        2 * profile.t1 + 0.3)
    if late is not None and late.at - ack_at > 0.1:
        return failed(f"487 still retransmitted {late.at - ack_at:.2f} s after the ACK")
    return passed("CANCEL got 200, the INVITE 487, and the 487 stopped after the ACK")


async def ok_retransmission(probe: Probe, profile: Profile) -> Outcome:
    ex = await probe.invite(uas_uri(profile), timeout=profile.response_timeout + 8)
    invite = ex.request
    if ex.final is None:
        await probe.finish(invite, ex)
        return failed(no_final(ex))
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
        return failed(f"the 2xx was not retransmitted within {expected[0] * 1.6 + 0.2:.2f} s "
                      "without an ACK (§13.3.1.4)")
    if len(times) - 1 < n:
        return failed(f"only {len(times) - 1} retransmissions before they stopped, no ACK "
                      f"sent: {table}")
    if not ok:
        return failed(f"2xx retransmission intervals off the T1-doubling-to-T2 schedule "
                      f"(T1={profile.t1 * 1000:.0f} ms, T2={profile.t2:g} s): {table}")
    if dialog is None:
        return inconclusive(f"retransmitted on schedule ({table}), but the 2xx cannot be "
                            "ACKed (no To tag or Contact): whether an ACK stops it is unknown")
    if late is not None and late.at - ack_at > 0.1:
        return failed(f"the 2xx was still retransmitted {late.at - ack_at:.2f} s after the ACK"
                      f" ({table})")
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
        return failed(f"no BYE within {limit * 1.3 + 2:.1f} s of an unacknowledged 2xx "
                      "(§13.3.1.4: the session SHOULD be ended with a BYE after 64*T1)")
    bye = got.msg
    assert hasattr(bye, "method")
    probe.send(make_response(bye, 200), got.peer)  # type: ignore[arg-type]
    after = got.at - ex.final_at
    if after < limit * 0.8:
        return failed(f"BYE after {after:.1f} s, before 64*T1 = {limit:.1f} s")
    return passed(f"BYE {after:.1f} s after the unacknowledged 2xx (64*T1 = {limit:.1f} s)")


async def final_on_retransmission(probe: Probe, profile: Profile) -> Outcome:
    req = probe.request("INVITE", uas_uri(profile))
    req.add_header("Require", UNKNOWN_OPTION)
    ex = await probe.transact(req, timeout=profile.response_timeout + 8)
    if ex.final is None:
        await probe.finish(req, ex)
        return failed(no_final(ex))
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
        return failed(f"the {ex.status} was not resent within {window * 1000:.0f} ms of the "
                      "retransmitted INVITE (§17.2.1: the Completed state resends it)")
    return passed(f"{ex.status} resent {(got.at - sent) * 1000:.0f} ms after the "
                  "retransmitted INVITE")


# --------------------------------------------------------------------------- §8.2 checks


async def unknown_method(probe: Probe, profile: Profile) -> Outcome:
    req = probe.request("XSIPLOADFOO", uas_uri(profile))
    ex = await probe.transact(req, timeout=profile.response_timeout)
    if ex.final is None:
        return failed(f"{no_final(ex)}; expected 405 or 501 with Allow")
    if ex.status not in (405, 501):
        return failed(f"answered {ex.status}; expected 405 or 501 (§8.2.1)")
    if not ex.final.has("allow"):
        return failed(f"{ex.status} without Allow (§8.2.1; RFC 4475 §3.1.1.2)")
    return passed(f"{ex.status} with Allow: {ex.final.get('allow')}")


async def max_forwards_zero(probe: Probe, profile: Profile) -> Outcome:
    uri = uas_uri(profile)
    if probe.alive_method == "OPTIONS":
        ex = await probe.transact(probe.request("OPTIONS", uri, max_forwards=0),
                                  timeout=profile.response_timeout)
    else:
        req = probe.request("INVITE", uri, max_forwards=0)
        ex = await probe.transact(req, timeout=profile.response_timeout)
        await probe.finish(req, ex)
    if ex.final is None:
        return failed(f"{no_final(ex)} to {ex.request.method} with Max-Forwards: 0")
    if ex.status == 483:
        return failed("answered 483 like a proxy; a UAS is the request's destination and "
                      "processes it normally (§16.3 applies to proxies; RFC 4475 §3.3.11)")
    return passed(f"processed normally: {ex.status} {ex.final.reason}")


async def unknown_require(probe: Probe, profile: Profile) -> Outcome:
    ex = await probe.invite(uas_uri(profile), headers=[("Require", UNKNOWN_OPTION)],
                            timeout=profile.response_timeout)
    outcome = await _final_for(probe, profile, ex, (420,), "§8.2.2.3")
    if outcome.verdict != "pass":
        return outcome
    assert ex.final is not None
    unsupported = ex.final.unsupported
    if UNKNOWN_OPTION not in unsupported:
        return failed(f"420 whose Unsupported ({', '.join(unsupported) or 'absent'}) does not "
                      f"list {UNKNOWN_OPTION}")
    return passed(f"420 with Unsupported: {UNKNOWN_OPTION}")


async def unknown_scheme(probe: Probe, profile: Profile) -> Outcome:
    req = probe.request("INVITE", "xyzzy:conformance-opaque-content",
                        to=f"<{uas_uri(profile)}>")
    ex = await probe.transact(req, timeout=profile.response_timeout)
    return await _final_for(probe, profile, ex, (416,), "§8.2.2.1")


async def missing_to(probe: Probe, profile: Profile) -> Outcome:
    req = probe.request("INVITE", uas_uri(profile))
    req.remove_header("to")
    ex = await probe.transact(req, timeout=profile.response_timeout)
    return await _final_for(probe, profile, ex, (400,), "To is mandatory, §8.1.1")


CASES = [
    Case("UAS-CALL-001", "3665", "2.1", "basic call: INVITE, 200 with an answer, ACK, BYE "
         "answered 200", "uas", ("role:uas",), scenario="uas_basic_call.yaml"),
    Case("UAS-CALL-002", "3665", "3.5", "a busy callee refuses the INVITE with 486 "
         "(profile uas.busy_uri)", "uas", ("role:uas", "set:uas.busy_uri"),
         scenario="uas_busy.yaml"),
    Case("UAS-OPT-001", "3261", "11.2", "OPTIONS is answered 200 with Allow and Supported",
         "uas", ("role:uas",), scenario="uas_options.yaml"),
    Case("UAS-INV-001", "3261", "17.2.1", "INVITE gets 100 Trying, or another response "
         "within 200 ms", "uas", ("role:uas",), trying),
    Case("UAS-INV-002", "3261", "13.3.1.1", "a UAS that rings sends 180/183 before the 2xx "
         "(profile uas.rings)", "uas", ("role:uas", "set:uas.rings"),
         scenario="uas_ringing.yaml"),
    Case("UAS-INV-003", "3261", "9.2", "CANCEL before the answer: 200 to CANCEL, 487 to the "
         "INVITE, 487 stops after the ACK (profile uas.ringing_uri)", "uas",
         ("role:uas", "set:uas.ringing_uri"), cancel),
    Case("UAS-INV-004", "3261", "13.3.1.4", "the 2xx is retransmitted until the ACK, at T1 "
         "doubling up to T2, and stops after it", "uas", ("role:uas",), ok_retransmission,
         budget=30.0),
    Case("UAS-INV-005", "3261", "13.3.1.4", "no ACK for the 2xx: the UAS ends the session "
         "with BYE after 64*T1 (slow: 32 s at T1 = 500 ms)", "uas", ("role:uas",),
         ok_timeout_bye, slow=True),
    Case("UAS-INV-006", "3261", "17.2.1", "the final response is resent when the INVITE is "
         "retransmitted (non-2xx, Completed state)", "uas", ("role:uas",),
         final_on_retransmission),
    Case("UAS-INV-007", "3261", "8.2.6.2", "responses copy Via, From, Call-ID, CSeq and To "
         "(adding one To tag); the 2xx has a Contact", "uas", ("role:uas",), response_fields),
    Case("UAS-REQ-001", "3261", "8.2.1", "an unknown method gets 405 or 501 with Allow",
         "uas", ("role:uas",), unknown_method),
    Case("UAS-REQ-002", "3261", "16.3", "Max-Forwards: 0 to a UAS: processed normally, not "
         "483 (483 is a proxy's answer; RFC 4475 §3.3.11)", "uas", ("role:uas",),
         max_forwards_zero),
    Case("UAS-REQ-003", "3261", "8.2.2.3", "an unknown Require option gets 420 with "
         "Unsupported naming it", "uas", ("role:uas",), unknown_require),
    Case("UAS-REQ-004", "3261", "8.2.2.1", "an unsupported Request-URI scheme gets 416",
         "uas", ("role:uas",), unknown_scheme),
    Case("UAS-REQ-005", "3261", "8.1.1", "a request missing a mandatory header (To) gets 400",
         "uas", ("role:uas",), missing_to),
]
