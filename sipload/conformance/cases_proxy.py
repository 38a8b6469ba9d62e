"""The proxy pack (RFC 3261 §16): what a proxy does to the requests it forwards.

The tester plays both ends.  As the caller it sends to the proxy (the target)
a request for the profile's ``proxy.uri``; as the callee it listens on
``proxy.callee``, where the proxy must route that URI (Kamailio's proxy.cfg:
``-A UAS_ADDR=host:port``), and answers what arrives there.  Both ends share the
probe's inbox: the Call-ID tells the calls apart, the socket does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

from sipload.conformance.model import Case, Outcome, broke, inconclusive, must, passed
from sipload.conformance.probe import Incoming, Probe, is_response_to
from sipload.conformance.profile import Profile
from sipload.sip import sdp
from sipload.sip.build import make_response
from sipload.sip.dialog import Dialog
from sipload.sip.errors import ParseError
from sipload.sip.message import Request, Response


@dataclass(slots=True)
class Call:
    """What one call through the proxy showed at each end."""

    invite: Request  #: as the caller sent it
    at_callee: Request | None = None  #: as the proxy delivered it
    final: Response | None = None  #: as the caller got it
    dialog: Dialog | None = None
    bye_at_callee: Request | None = None
    bye_status: int = 0


VIA_ADDED = must("RFC 3261 §16.6 step 8", "The proxy MUST insert a Via header field value into "
                 "the copy before the existing Via header field values.  The construction of "
                 "this value follows the same guidelines of Section 8.1.1.7.")
MF_DECREMENTED = must("RFC 3261 §16.6 step 3", "If the copy contains a Max-Forwards header "
                      "field, the proxy MUST decrement its value by one (1).")
ROUTE_REMOVED = must("RFC 3261 §16.4", "If the first value in the Route header field "
                     "indicates this proxy, the proxy MUST remove that value from the request.")
PROXY_REQUIRE = must("RFC 3261 §16.3 step 5", "If the request contains a Proxy-Require header "
                     "field (Section 20.29) with one or more option-tags this element does not "
                     "understand, the element MUST return a 420 (Bad Extension) response.  The "
                     "response MUST include an Unsupported (Section 20.40) header field listing "
                     "those option-tags the element did not understand.")
TOO_MANY_HOPS = must("RFC 3261 §16.3 step 3", "If the request contains a Max-Forwards header "
                     "field with a field value of zero (0), the element MUST NOT forward the "
                     "request. [...] Otherwise, the element MUST return a 483 (Too many hops) "
                     "response.")


def _callee_contact(profile: Profile) -> str:
    host, port = profile.proxy.callee
    return f"<sip:callee@{host}:{port}>"


def _answer(probe: Probe, profile: Profile, got: Incoming, status: int) -> None:
    req = got.msg
    assert isinstance(req, Request)
    resp = make_response(req, status, to_tag=f"callee{probe.tag()}")
    if 200 <= status < 300 and req.method == "INVITE":
        resp.copy_headers_from(req, "record-route")
        resp.add_header("Contact", _callee_contact(profile))
        resp.set_body(sdp.build_audio_offer(probe.local[0], 6002, session_id=3).to_bytes(),
                      "application/sdp")
    probe.send(resp, got.peer)


async def call_through(probe: Probe, profile: Profile, *, max_forwards: int = 70,
                       uri: str | None = None, complete: bool = True,
                       headers: tuple[tuple[str, str], ...] = ()) -> Call:
    """INVITE through the proxy, 200 from the callee, ACK, BYE (when ``complete``)."""
    rt = profile.response_timeout
    req = probe.request("INVITE", uri or profile.uri(profile.proxy.uri),
                        max_forwards=max_forwards)
    for name, value in headers:
        req.add_header(name, value)
    req.set_body(sdp.build_audio_offer(probe.local[0], 6000, session_id=1).to_bytes(),
                 "application/sdp")
    call = Call(req)
    probe.send(req)
    got = await probe.expect(lambda m: isinstance(m, Request) and m.method == "INVITE"
                             and m.call_id == req.call_id, rt if complete else 0.5)
    if got is not None:
        assert isinstance(got.msg, Request)
        call.at_callee = got.msg
        _answer(probe, profile, got, 200)
    final = await probe.expect(lambda m: is_response_to(m, req)
                               and m.status >= 200, rt)  # type: ignore[attr-defined]
    if final is None:
        return call
    assert isinstance(final.msg, Response)
    call.final = final.msg
    call.dialog = probe.ack(req, final.msg)
    if call.dialog is None or not complete:
        return call
    bye = probe.in_dialog(call.dialog, "BYE")
    probe.send(bye)
    got_bye = await probe.expect(lambda m: isinstance(m, Request) and m.method == "BYE"
                                 and m.call_id == req.call_id, rt)
    if got_bye is not None:
        assert isinstance(got_bye.msg, Request)
        call.bye_at_callee = got_bye.msg
        _answer(probe, profile, got_bye, 200)
    answer = await probe.expect(lambda m: is_response_to(m, bye), rt)
    if answer is not None and isinstance(answer.msg, Response):
        call.bye_status = answer.msg.status
    return call


def _not_forwarded(call: Call) -> Outcome | None:
    if call.at_callee is None:
        status = f"{call.final.status}" if call.final is not None else "no answer"
        return inconclusive(f"the INVITE never reached the callee (caller got {status}): "
                            "check that the proxy routes proxy.uri to proxy.callee")
    return None


async def via_added(probe: Probe, profile: Profile) -> Outcome:
    call = await call_through(probe, profile)
    bad = _not_forwarded(call)
    if bad is not None:
        return bad
    assert call.at_callee is not None
    try:
        top = call.at_callee.via
    except ParseError as e:
        return broke(VIA_ADDED, f"the forwarded INVITE's Via does not parse: {e.reason}")
    if len(call.at_callee.vias) != len(call.invite.vias) + 1:
        return broke(VIA_ADDED, f"the forwarded INVITE has {len(call.at_callee.vias)} Via "
                     "values, expected ours plus one")
    if not top.rfc3261_branch:
        return broke(VIA_ADDED, f"the proxy's Via branch {top.branch!r} lacks the magic "
                     "cookie (§8.1.1.7)")
    mine, below = call.invite.via, call.at_callee.vias[1]
    if below.branch != mine.branch or below.sent_by != mine.sent_by:
        return broke(VIA_ADDED, f"the Via below the proxy's is '{below}', not ours")
    return passed(f"the proxy added Via '{top}' above ours")


async def max_forwards_decremented(probe: Probe, profile: Profile) -> Outcome:
    call = await call_through(probe, profile, max_forwards=70)
    bad = _not_forwarded(call)
    if bad is not None:
        return bad
    assert call.at_callee is not None
    try:
        mf = call.at_callee.max_forwards
    except ParseError as e:
        return broke(MF_DECREMENTED, f"the forwarded Max-Forwards does not parse: {e.reason}")
    if mf != 69:
        return broke(MF_DECREMENTED, f"Max-Forwards 70 was forwarded as {mf}, not 69")
    return passed("Max-Forwards 70 forwarded as 69")


async def record_route(probe: Probe, profile: Profile) -> Outcome:
    call = await call_through(probe, profile)
    bad = _not_forwarded(call)
    if bad is not None:
        return bad
    assert call.at_callee is not None
    if not call.at_callee.has("record-route"):
        return inconclusive("the proxy does not record-route: nothing to honour")
    if call.final is None or call.final.status != 200:
        return broke(ROUTE_REMOVED, f"the callee's 200 did not reach the caller "
                     f"({call.final.status if call.final else 'nothing'})")
    if not call.final.has("record-route"):
        return broke(ROUTE_REMOVED, "the 200 reached the caller without the Record-Route "
                     "(§16.7 step 9): the caller cannot route through the proxy")
    if call.bye_at_callee is None:
        return broke(ROUTE_REMOVED, "the BYE sent along the route set never reached the "
                     "callee")
    host, port = profile.target
    for route in call.bye_at_callee.get_all("route"):
        if f"{host}:{port}" in route or (port == 5060 and host in route):
            return broke(ROUTE_REMOVED, f"the proxy forwarded the BYE with its own Route "
                         f"'{route}'")
    if call.bye_status != 200:
        return broke(ROUTE_REMOVED, f"the BYE's 200 did not come back to the caller "
                     f"({call.bye_status})")
    return passed("Record-Route returned in the 200; the BYE followed the route set, "
                  "with the proxy's Route removed")


async def too_many_hops(probe: Probe, profile: Profile) -> Outcome:
    call = await call_through(probe, profile, max_forwards=0, complete=False)
    if call.at_callee is not None:
        return broke(TOO_MANY_HOPS, "an INVITE with Max-Forwards: 0 was forwarded")
    if call.final is None:
        return broke(TOO_MANY_HOPS, "no answer to an INVITE with Max-Forwards: 0; expected 483")
    if call.final.status != 483:
        return broke(TOO_MANY_HOPS, f"Max-Forwards: 0 got {call.final.status}, not 483")
    return passed("483 Too Many Hops, not forwarded")


async def loop_detected(probe: Probe, profile: Profile) -> Outcome:
    call = await call_through(probe, profile, uri=profile.uri(profile.proxy.loop_uri),
                              complete=False)
    if call.final is None:
        return broke(TOO_MANY_HOPS, "no answer to a looping INVITE: at the latest Max-Forwards "
                     "runs out and a 483 is due")
    if call.final.status == 483:
        return passed("the loop ended when Max-Forwards ran out (483); loop detection and "
                      "its 482 are a MAY (§16.3 step 4), not judged")
    if call.final.status != 482:
        return inconclusive(f"the looping INVITE got {call.final.status}: is proxy.loop_uri "
                            "routed back to the proxy?")
    return passed("482 Loop Detected")


UNKNOWN_TAG = "x-sipload-proxy-feature"


async def proxy_require(probe: Probe, profile: Profile) -> Outcome:
    call = await call_through(probe, profile, headers=(("Proxy-Require", UNKNOWN_TAG),))
    if call.at_callee is not None:
        return broke(PROXY_REQUIRE, f"an INVITE with Proxy-Require: {UNKNOWN_TAG} was "
                     "forwarded")
    if call.final is None:
        return broke(PROXY_REQUIRE, f"no answer to an INVITE with Proxy-Require: {UNKNOWN_TAG}")
    if call.final.status != 420:
        return broke(PROXY_REQUIRE, f"Proxy-Require: {UNKNOWN_TAG} got {call.final.status}, "
                     "not 420")
    if UNKNOWN_TAG not in call.final.unsupported:
        return broke(PROXY_REQUIRE, f"420 without Unsupported: {UNKNOWN_TAG}")
    return passed(f"420 with Unsupported: {UNKNOWN_TAG}, not forwarded")


CASES = [
    Case("PRX-001", "3261", "16.6", "the proxy adds its own Via (with a magic-cookie branch) "
         "above the caller's", "proxy", ("role:proxy",), via_added, rules=(VIA_ADDED,)),
    Case("PRX-002", "3261", "16.6", "the proxy decrements Max-Forwards by one", "proxy",
         ("role:proxy",), max_forwards_decremented, rules=(MF_DECREMENTED,)),
    Case("PRX-003", "3261", "16.12", "Record-Route is honoured: returned in the 2xx, and "
         "in-dialog requests routed by it with the proxy's Route removed", "proxy",
         ("role:proxy",), record_route, rules=(ROUTE_REMOVED,)),
    Case("PRX-004", "3261", "16.3", "a request that loops back to the proxy ends: "
         "482 (loop detection, a MAY) or 483 (profile proxy.loop_uri)", "proxy",
         ("role:proxy", "set:proxy.loop_uri"), loop_detected, rules=(TOO_MANY_HOPS,)),
    Case("PRX-005", "3261", "16.3", "Max-Forwards: 0 gets 483 and is not forwarded (the "
         "proxy's rule; a UAS processes it, see UAS-REQ-002)", "proxy", ("role:proxy",),
         too_many_hops, rules=(TOO_MANY_HOPS,)),
    Case("PRX-006", "3261", "16.3", "an unknown option in Proxy-Require gets 420 with "
         "Unsupported naming it, and is not forwarded", "proxy", ("role:proxy",),
         proxy_require, rules=(PROXY_REQUIRE,)),
]
