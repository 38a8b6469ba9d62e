"""The PRACK pack (RFC 3262): reliable provisional responses, judged on the target as a UAS.

Each case sends an INVITE with an SDP offer (``Supported``/``Require: 100rel``
as the case needs), watches the provisional responses, PRACKs them (or, where
the case is about what happens without a PRACK, holds the PRACK back for a few
T1), and leaves no call behind: the final answer is ACKed, a 2xx hung up, a
call still ringing cancelled.

A response is *reliable* when it carries ``Require: 100rel`` and an ``RSeq``
(RFC 3262 §3); its retransmissions repeat its RSeq and are not new responses.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

from sipload.conformance.cases_dialog import PRACK_2XX, finish_reliable, prack_for
from sipload.conformance.cases_uas import ANSWER_INVITE
from sipload.conformance.model import (
    Case,
    CaseFunc,
    Outcome,
    broke,
    inconclusive,
    must,
    passed,
    should,
)
from sipload.conformance.probe import Exchange, Probe, is_response_to
from sipload.conformance.profile import Profile
from sipload.conformance.steps import status_text, uas_uri
from sipload.sip import sdp
from sipload.sip.dialog import Dialog
from sipload.sip.errors import ParseError
from sipload.sip.message import Request, Response

WILLING_OR_420 = must("RFC 3262 §3", "The UAS MUST send any non-100 provisional response "
                      "reliably if the initial request contained a Require header field with "
                      "the option tag 100rel.  If the UAS is unwilling to do so, it MUST reject "
                      "the initial request with a 420 (Bad Extension) and include an "
                      "Unsupported header field containing the option tag 100rel.")
NOT_ASKED = must("RFC 3262 §3", "If the request did not include either a Supported or Require "
                 "header field indicating this feature, the UAS MUST NOT send the provisional "
                 "response reliably.")
FIRST_RSEQ = must("RFC 3262 §3", "The value of the header field for the first reliable "
                  "provisional response in a transaction MUST be between 1 and 2**31 - 1.")
NO_MATCH_481 = must("RFC 3262 §3", "If a PRACK request is received by the UA core that does "
                    "not match any unacknowledged reliable provisional response, the UAS MUST "
                    "respond to the PRACK with a 481 response.")
HOLD_2XX = must("RFC 3262 §3", "The UAS MAY send a final response to the initial request "
                "before having received PRACKs for all unacknowledged reliable provisional "
                "responses, unless the final response is 2xx and any of the unacknowledged "
                "reliable provisional responses contained a session description.  In that "
                "case, it MUST NOT send a final response until those provisional responses "
                "are acknowledged.")
RSEQ_PLUS_ONE = must("RFC 3262 §3", "The value of the RSeq in each subsequent reliable "
                     "provisional response for the same request MUST be greater by exactly "
                     "one.")
ONE_AT_A_TIME = must("RFC 3262 §3", "The UAS MUST NOT send a second reliable provisional "
                     "response until the first is acknowledged.")
GIVE_UP_5XX = should("RFC 3262 §3", "If a reliable provisional response is retransmitted for "
                     "64*T1 seconds without reception of a corresponding PRACK, the UAS SHOULD "
                     "reject the original request with a 5xx response.")


SETTLE = 0.1
"""Seconds the tester listens on after the response a case waited for, before it PRACKs:
responses the target sends back to back arrive first (a target busy sending may take
a PRACK for an unexpected message)."""


def reliable(resp: Response) -> bool:
    """Whether ``resp`` is a reliable provisional response (Require: 100rel and RSeq)."""
    try:
        return 100 < resp.status < 200 and "100rel" in resp.require and resp.rseq is not None
    except ParseError:
        return False


def _rseq(resp: Response) -> int | None:
    try:
        return resp.rseq
    except ParseError:
        return None


def _invite(probe: Probe, profile: Profile, *, require: bool = True) -> Request:
    req = probe.request("INVITE", uas_uri(profile))
    if require:
        req.add_header("Supported", "100rel")
        req.add_header("Require", "100rel")
    req.set_body(sdp.build_audio_offer(probe.local[0], 6000, session_id=1).to_bytes(),
                 "application/sdp")
    return req


async def _watch(probe: Probe, ex: Exchange, window: float, *, stop_reliable: int = 0
                 ) -> None:
    """Add the responses of ``ex``'s INVITE arriving within ``window`` s to it; stop at
    the final response, or when ``stop_reliable`` distinct reliable provisionals came."""
    deadline = probe.now() + window
    while ex.final is None:
        left = deadline - probe.now()
        if left <= 0:
            return
        got = await probe.expect(lambda m: is_response_to(m, ex.request), left)
        if got is None or not isinstance(got.msg, Response):
            return
        if got.msg.status >= 200:
            ex.final, ex.final_at = got.msg, got.at
            return
        ex.provisionals.append((got.at, got.msg))
        if stop_reliable and len(_distinct(ex)) >= stop_reliable:
            return


def _distinct(ex: Exchange) -> list[tuple[float, Response]]:
    """The reliable provisionals of ``ex``, one per RSeq (retransmissions dropped)."""
    seen: set[int | None] = set()
    out: list[tuple[float, Response]] = []
    for at, r in ex.provisionals:
        if reliable(r) and _rseq(r) not in seen:
            seen.add(_rseq(r))
            out.append((at, r))
    return out


async def _start(probe: Probe, profile: Profile, *, require: bool = True,
                 window: float | None = None, stop_reliable: int = 1) -> Exchange:
    """Send the INVITE; return once the first ``stop_reliable`` reliable provisionals
    (or the final response) came, or ``window`` s after the first provisional."""
    req = _invite(probe, profile, require=require)
    ex = await probe.transact(req, timeout=profile.response_timeout + 4,
                              until_ringing=True)
    if ex.final is None and len(_distinct(ex)) < stop_reliable:
        await _watch(probe, ex, profile.response_timeout if window is None else window,
                     stop_reliable=stop_reliable)
    await _watch(probe, ex, SETTLE)
    return ex


async def _pracks(probe: Probe, ex: Exchange, early: Dialog | None = None,
                  timeout: float = 2.0) -> tuple[Dialog | None, list[Exchange]]:
    """PRACK every distinct reliable provisional of ``ex`` (in RSeq order)."""
    out: list[Exchange] = []
    for _, prov in _distinct(ex):
        made = prack_for(probe, ex.request, prov, early)
        if made is None:
            continue
        prack, early = made
        out.append(await probe.transact(prack, timeout=timeout))
    return early, out


async def _end(probe: Probe, profile: Profile, ex: Exchange, early: Dialog | None) -> None:
    await finish_reliable(probe, profile, ex, early)


Reliables = list[tuple[float, Response]]


async def _reliable_call(probe: Probe, profile: Profile) -> tuple[Exchange, Reliables] | Outcome:
    """The INVITE sent and its first reliable provisional come; without one the call is
    ended and the case inconclusive."""
    ex = await _start(probe, profile)
    rel = _distinct(ex)
    if not rel:
        await _end(probe, profile, ex, None)
        return inconclusive(f"no reliable provisional response (final: {status_text(ex)})")
    return ex, rel


def _on_reliable(case: Callable[[Probe, Profile, Exchange, Reliables], Awaitable[Outcome]]
                 ) -> CaseFunc:
    """The case ``case`` run on a call with a reliable provisional (:func:`_reliable_call`)."""
    async def run(probe: Probe, profile: Profile) -> Outcome:
        got = await _reliable_call(probe, profile)
        return got if isinstance(got, Outcome) else await case(probe, profile, *got)
    return run


async def _prack_or_end(probe: Probe, profile: Profile, ex: Exchange, prov: Response,
                        rseq: int | None = None) -> tuple[Request, Dialog] | Outcome:
    """A PRACK for ``prov`` (naming ``rseq``); where it cannot be made the call is ended
    and the case inconclusive."""
    made = prack_for(probe, ex.request, prov, None, rseq=rseq)
    if made is None:
        await _end(probe, profile, ex, None)
        return inconclusive(f"the {prov.status} cannot be PRACKed (no To tag or Contact)")
    return made


# --------------------------------------------------------------------------- cases


async def willing_or_420(probe: Probe, profile: Profile) -> Outcome:
    ex = await _start(probe, profile)
    early, _ = await _pracks(probe, ex)
    await _end(probe, profile, ex, early)
    provs = [r for _, r in ex.provisionals if r.status > 100]
    unreliable = [r for r in provs if not reliable(r)]
    if unreliable:
        return broke(WILLING_OR_420, f"{unreliable[0].status} sent unreliably (no Require: "
                     "100rel and RSeq) to an INVITE with Require: 100rel")
    if provs:
        return passed(f"{provs[0].status} sent reliably (RSeq {_rseq(provs[0])})")
    if ex.final is None:
        return broke(ANSWER_INVITE, "no final response to the INVITE")
    if ex.status == 420:
        if "100rel" not in ex.final.unsupported:
            return broke(WILLING_OR_420, "420 without Unsupported: 100rel")
        return passed("unwilling: 420 with Unsupported: 100rel")
    if 200 <= ex.status < 300:
        return passed(f"{ex.status} without a provisional response: nothing to send "
                      "reliably")
    return inconclusive(f"the INVITE got {status_text(ex)} before any provisional response")


async def not_asked(probe: Probe, profile: Profile) -> Outcome:
    ex = await _start(probe, profile, require=False)
    await _watch(probe, ex, profile.response_timeout)
    rel = _distinct(ex)
    await _end(probe, profile, ex, None)
    if rel:
        return broke(NOT_ASKED, f"{rel[0][1].status} carries Require: 100rel and RSeq, but "
                     "the INVITE offered no 100rel")
    if ex.final is None and not ex.provisionals:
        return broke(ANSWER_INVITE, "no response to the INVITE")
    got = " ".join(str(r.status) for _, r in ex.provisionals) or "none"
    return passed(f"provisionals ({got}) sent without RSeq or Require: 100rel")


@_on_reliable
async def first_rseq(probe: Probe, profile: Profile, ex: Exchange, rel: Reliables
                     ) -> Outcome:
    early, _ = await _pracks(probe, ex)
    await _end(probe, profile, ex, early)
    value = _rseq(rel[0][1])
    if value is None or not 1 <= value <= 2**31 - 1:
        return broke(FIRST_RSEQ, f"the first reliable provisional has RSeq {value}")
    return passed(f"first RSeq {value}")


@_on_reliable
async def unknown_rseq(probe: Probe, profile: Profile, ex: Exchange, rel: Reliables
                       ) -> Outcome:
    prov = rel[0][1]
    never = (_rseq(prov) or 0) + 1000
    made = await _prack_or_end(probe, profile, ex, prov, rseq=never)
    if isinstance(made, Outcome):
        return made
    bogus, dialog = made
    bad = await probe.transact(bogus, timeout=profile.response_timeout)
    early, _ = await _pracks(probe, ex, dialog)
    await _end(probe, profile, ex, early)
    if bad.status != 481:
        return broke(NO_MATCH_481, f"a PRACK naming RSeq {never}, which "
                     f"no provisional carried, got {status_text(bad)}, not 481")
    return passed("481 for a PRACK naming an RSeq never sent")


@_on_reliable
async def acknowledged_twice(probe: Probe, profile: Profile, ex: Exchange, rel: Reliables
                             ) -> Outcome:
    prov = rel[0][1]
    made = await _prack_or_end(probe, profile, ex, prov)
    if isinstance(made, Outcome):
        return made
    first, dialog = made
    one = await probe.transact(first, timeout=profile.response_timeout)
    again = prack_for(probe, ex.request, prov, dialog)
    early: Dialog | None = dialog
    assert again is not None
    two = await probe.transact(again[0], timeout=profile.response_timeout)
    await _watch(probe, ex, profile.response_timeout)
    rest = [(t, r) for t, r in _distinct(ex) if _rseq(r) != _rseq(prov)]
    if rest:
        ex.provisionals = rest
        early, _ = await _pracks(probe, ex, early)
    await _end(probe, profile, ex, early)
    if not 200 <= one.status < 300:
        return broke(PRACK_2XX, f"the first PRACK got {status_text(one)}, not 2xx")
    if two.status != 481:
        return broke(NO_MATCH_481, f"a second PRACK (new CSeq) for the already acknowledged "
                     f"{prov.status} got {status_text(two)}, not 481")
    return passed("the PRACK answered 2xx; a second PRACK for the same response 481")


async def hold_2xx(probe: Probe, profile: Profile) -> Outcome:
    ex = await _start(probe, profile)
    rel = _distinct(ex)
    with_sdp = [(t, r) for t, r in rel if r.body]
    if not with_sdp:
        early, _ = await _pracks(probe, ex)
        await _end(probe, profile, ex, early)
        return inconclusive("no reliable provisional response carried a session description "
                            f"(final: {status_text(ex)})")
    # hold the PRACK back for a few T1: a 2xx may not come meanwhile
    await _watch(probe, ex, 3 * profile.t1 + 0.5)
    early_final = ex.final
    ex.provisionals = rel
    early, _ = await _pracks(probe, ex)
    await _end(probe, profile, ex, early)
    if early_final is not None and 200 <= early_final.status < 300:
        return broke(HOLD_2XX, f"{early_final.status} sent while the reliable "
                     f"{with_sdp[0][1].status} with SDP was not yet PRACKed")
    return passed(f"no 2xx in the {3 * profile.t1 + 0.5:g} s the PRACK of the "
                  f"{with_sdp[0][1].status} with SDP was held back")


async def rseq_plus_one(probe: Probe, profile: Profile) -> Outcome:
    req = _invite(probe, profile)
    ex = await probe.transact(req, timeout=profile.response_timeout + 4, until_ringing=True)
    await _watch(probe, ex, SETTLE)
    early: Dialog | None = None
    done: set[int | None] = set()
    deadline = probe.now() + profile.response_timeout + 4
    while ex.final is None and probe.now() < deadline:
        for _, prov in _distinct(ex):
            if _rseq(prov) in done:
                continue
            done.add(_rseq(prov))
            made = prack_for(probe, req, prov, early)
            if made is not None:
                early = made[1]
                await probe.transact(made[0], timeout=2.0)
        await _watch(probe, ex, min(profile.response_timeout, deadline - probe.now()),
                     stop_reliable=len(done) + 1)
    rseqs = [_rseq(r) for _, r in _distinct(ex)]
    for _, prov in _distinct(ex):
        if _rseq(prov) not in done:
            made = prack_for(probe, req, prov, early)
            if made is not None:
                early = made[1]
                await probe.transact(made[0], timeout=2.0)
    await _end(probe, profile, ex, early)
    if len(rseqs) < 2:
        return inconclusive(f"{len(rseqs)} reliable provisional response(s): no second RSeq "
                            "to compare")
    for a, b in itertools.pairwise(rseqs):
        if a is None or b != a + 1:
            return broke(RSEQ_PLUS_ONE, f"RSeq {a} then {b}")
    return passed(f"RSeq {' then '.join(str(r) for r in rseqs)}")


@_on_reliable
async def one_at_a_time(probe: Probe, profile: Profile, ex: Exchange, first: Reliables
                        ) -> Outcome:
    await _watch(probe, ex, 3 * profile.t1 + 0.5, stop_reliable=2)
    rel = _distinct(ex)
    second = rel[1][1] if len(rel) > 1 else None
    ex.provisionals = rel
    early, _ = await _pracks(probe, ex)
    await _end(probe, profile, ex, early)
    if second is not None:
        return broke(ONE_AT_A_TIME, f"{second.status} (RSeq {_rseq(second)}) sent reliably "
                     f"before the {first[0][1].status} (RSeq {_rseq(first[0][1])}) was PRACKed")
    return passed(f"no second reliable provisional in the {3 * profile.t1 + 0.5:g} s the "
                  "first was left unacknowledged")


@_on_reliable
async def give_up_5xx(probe: Probe, profile: Profile, ex: Exchange, rel: Reliables
                      ) -> Outcome:
    await _watch(probe, ex, 64 * profile.t1 + 4 * profile.t1 + profile.response_timeout)
    final = ex.final
    early: Dialog | None = None
    if final is None:
        early, _ = await _pracks(probe, ex)
    await _end(probe, profile, ex, early)
    if final is None:
        return broke(GIVE_UP_5XX, f"no final response {64 * profile.t1:g} s after the "
                     "reliable provisional went unacknowledged")
    if not 500 <= final.status < 600:
        return broke(GIVE_UP_5XX, f"the unacknowledged INVITE ended with {final.status} "
                     f"{final.reason}, not a 5xx")
    return passed(f"{final.status} {final.reason} after "
                  f"{final_at_offset(ex):.1f} s without PRACK")


def final_at_offset(ex: Exchange) -> float:
    return ex.final_at - ex.sent_at if ex.final is not None else 0.0


_REL = ("role:uas", "ext:100rel")

CASES = [
    Case("PRACK-001", "3262", "3", "an INVITE with Require: 100rel gets reliable provisionals "
         "or a 420 naming 100rel in Unsupported", "prack", ("role:uas",), willing_or_420,
         rules=(WILLING_OR_420, ANSWER_INVITE)),
    Case("PRACK-002", "3262", "3", "without 100rel in Supported or Require, no provisional is "
         "sent reliably", "prack", ("role:uas",), not_asked, rules=(NOT_ASKED, ANSWER_INVITE)),
    Case("PRACK-003", "3262", "3", "the first RSeq is between 1 and 2**31-1", "prack", _REL,
         first_rseq, rules=(FIRST_RSEQ,)),
    Case("PRACK-004", "3262", "3", "a PRACK naming an RSeq never sent gets 481", "prack", _REL,
         unknown_rseq, rules=(NO_MATCH_481,)),
    Case("PRACK-005", "3262", "3", "a PRACK is answered 2xx; a second PRACK for the same, "
         "acknowledged response gets 481", "prack", _REL, acknowledged_twice,
         rules=(PRACK_2XX, NO_MATCH_481)),
    Case("PRACK-006", "3262", "3", "no 2xx to the INVITE while a reliable provisional with SDP "
         "awaits its PRACK", "prack", _REL, hold_2xx, rules=(HOLD_2XX,)),
    Case("PRACK-007", "3262", "3", "each further reliable provisional's RSeq is one more "
         "than the last", "prack", _REL, rseq_plus_one, rules=(RSEQ_PLUS_ONE,)),
    Case("PRACK-008", "3262", "3", "no second reliable provisional before the first is "
         "PRACKed", "prack", _REL, one_at_a_time, rules=(ONE_AT_A_TIME,)),
    Case("PRACK-009", "3262", "3", "a reliable provisional never PRACKed ends the INVITE with "
         "a 5xx after 64*T1 (slow)", "prack", _REL, give_up_5xx, slow=True,
         rules=(GIVE_UP_5XX,)),
]
