"""The UAS pack, part 3: what a UAS copies into its answers and what it refuses.

Record-Route copied into the 2xx that makes a dialog (§12.1.1), a body of a
type it does not understand refused with 415 and an Accept list (§8.2.3), and
a CANCEL that matches no transaction answered 481 (§9.2).  Every call is
ACKed and hung up (:meth:`~sipload.conformance.probe.Probe.finish`).
"""

from __future__ import annotations

from sipload.conformance.cases_uas import ANSWER_INVITE
from sipload.conformance.judge import earlier_step
from sipload.conformance.model import Case, Outcome, broke, inconclusive, must, passed, should
from sipload.conformance.probe import Probe
from sipload.conformance.profile import Profile
from sipload.conformance.steps import no_final, status_text, uas_uri
from sipload.sip.build import make_cancel
from sipload.sip.grammar import split_commas

RECORD_ROUTE = must("RFC 3261 §12.1.1", "When a UAS responds to a request with a response that "
                    "establishes a dialog (such as a 2xx to INVITE), the UAS MUST copy all "
                    "Record-Route header field values from the request into the response "
                    "(including the URIs, URI parameters, and any Record-Route header field "
                    "parameters, whether they are known or unknown to the UAS) and MUST "
                    "maintain the order of those values.")
UNKNOWN_BODY = must("RFC 3261 §8.2.3", "If there are any bodies whose type (indicated by the "
                    "Content-Type), language (indicated by the Content-Language) or encoding "
                    "(indicated by the Content-Encoding) are not understood, and that body part "
                    "is not optional (as indicated by the Content-Disposition header field), the "
                    "UAS MUST reject the request with a 415 (Unsupported Media Type) response.  "
                    "The response MUST contain an Accept header field listing the types of all "
                    "bodies it understands, in the event the request contained bodies of types "
                    "not supported by the UAS.")
CANCEL_481 = should("RFC 3261 §9.2", "If the UAS did not find a matching transaction for the "
                    "CANCEL according to the procedure above, it SHOULD respond to the CANCEL "
                    "with a 481 (Call Leg/Transaction Does Not Exist).")

ROUTES = ("<sip:p1.example.net;lr;x-sipload=1>", "<sip:p2.example.net;lr>;x-rr-param=2")


async def record_route(probe: Probe, profile: Profile) -> Outcome:
    ex = await probe.invite(uas_uri(profile), headers=[("Record-Route", r) for r in ROUTES],
                            timeout=profile.response_timeout + 4)
    final = ex.final
    # hang up without following the routes (they name proxies that do not exist)
    if final is not None and 200 <= ex.status < 300:
        final_rr = [v.strip() for h in final.get_all("record-route") for v in split_commas(h)]
        final.remove_header("record-route")
    else:
        final_rr = []
    await probe.finish(ex.request, ex)
    if final is None:
        return broke(ANSWER_INVITE, f"{no_final(ex)} to the INVITE")
    if not 200 <= ex.status < 300:
        return inconclusive(f"no 2xx to judge: the INVITE got {status_text(ex)}")
    if final_rr != list(ROUTES):
        return broke(RECORD_ROUTE, f"the INVITE's Record-Route was {' , '.join(ROUTES)}; "
                     f"the {ex.status} has {' , '.join(final_rr) or 'none'}")
    return passed(f"the {ex.status} copies both Record-Route values, in order, parameters "
                  "kept")


async def unknown_body(probe: Probe, profile: Profile) -> Outcome:
    req = probe.request("INVITE", uas_uri(profile))
    req.set_body(b"<x-sipload>no such format</x-sipload>\r\n", "application/x-sipload-unknown")
    ex = await probe.transact(req, timeout=profile.response_timeout + 4)
    await probe.finish(req, ex)
    if ex.final is None:
        return broke(ANSWER_INVITE, f"{no_final(ex)} to an INVITE with an unknown body type")
    if ex.status == 415:
        accept = ex.final.get("accept")
        if not accept:
            return broke(UNKNOWN_BODY, "415 without Accept")
        return passed(f"415 with Accept: {accept}")
    earlier = earlier_step(ex.status, "content")
    if earlier is not None:
        return passed(f"answered {status_text(ex)}: right at an earlier step of §8.2 "
                      f"({earlier})")
    return broke(UNKNOWN_BODY, f"an INVITE whose only body is application/x-sipload-unknown "
                 f"got {status_text(ex)}, not 415")


async def cancel_no_match(probe: Probe, profile: Profile) -> Outcome:
    invite = probe.request("INVITE", uas_uri(profile))
    cancel = make_cancel(invite)  # an INVITE never sent: the CANCEL matches nothing
    ex = await probe.transact(cancel, timeout=profile.response_timeout)
    if ex.status == 481:
        return passed("481 for a CANCEL that matches no transaction")
    if 200 <= ex.status < 300:
        return broke(CANCEL_481, f"a CANCEL matching no transaction got {status_text(ex)}")
    return broke(CANCEL_481, f"a CANCEL matching no transaction got {status_text(ex)}, "
                 "not 481")


CASES = [
    Case("UAS-INV-008", "3261", "12.1.1", "the 2xx copies the INVITE's Record-Route values, "
         "in order, with their parameters", "uas", ("role:uas",), record_route,
         rules=(RECORD_ROUTE, ANSWER_INVITE)),
    Case("UAS-REQ-006", "3261", "8.2.3", "a body of a type the UAS does not understand gets "
         "415 with Accept", "uas", ("role:uas",), unknown_body,
         rules=(UNKNOWN_BODY, ANSWER_INVITE)),
    Case("UAS-CAN-001", "3261", "9.2", "a CANCEL that matches no transaction gets 481", "uas",
         ("role:uas",), cancel_no_match, rules=(CANCEL_481,)),
]
