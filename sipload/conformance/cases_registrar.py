"""The registrar pack (RFC 3261 §10): bindings added, refreshed, listed and removed.

Every REGISTER goes to ``sip:DOMAIN`` (the host part of the profile's
``registrar.aor``) with To and From set to the AOR.  When the profile claims
``digest``, a 401/407 is answered once with the profile's credentials (a new
branch and CSeq, the same Call-ID, §22.2).  Each case removes its bindings at
the end (``Contact: *``, ``Expires: 0``).
"""

from __future__ import annotations

from sipload.conformance.judge import challenge_problems
from sipload.conformance.model import Case, Outcome, broke, inconclusive, must, passed, should
from sipload.conformance.probe import Exchange, Probe
from sipload.conformance.profile import Profile
from sipload.conformance.steps import authorize, status_text
from sipload.sip.errors import ParseError
from sipload.sip.message import Response


class _Binding:
    """One REGISTER session: a Call-ID and a CSeq that only goes up (§10.2)."""

    def __init__(self, probe: Probe, profile: Profile) -> None:
        self.probe = probe
        self.profile = profile
        self.aor = profile.uri(profile.registrar.aor)
        self.domain_uri = "sip:" + self.aor.split("@", 1)[-1].split(";")[0]
        self.call_id = probe.new_call_id()
        self.from_tag = probe.tag()
        self.cseq = 0

    def contact(self, n: int) -> str:
        host, port = self.probe.local
        return f"sip:conformance-{n}@{host}:{port}"

    async def register(self, contacts: list[str], expires: int | None,
                       password: str | None = None, authenticate: bool = True) -> Exchange:
        probe = self.probe
        self.cseq += 1
        req = probe.request("REGISTER", self.domain_uri, call_id=self.call_id,
                            from_uri=self.aor, from_tag=self.from_tag, to=f"<{self.aor}>",
                            cseq=self.cseq, contact=False)
        for c in contacts:
            req.add_header("Contact", c if c == "*" or c.startswith("<") else f"<{c}>")
        if expires is not None:
            req.add_header("Expires", str(expires))
        ex = await probe.transact(req, timeout=self.profile.response_timeout)
        if (authenticate and ex.final is not None and ex.status in (401, 407)
                and "digest" in self.profile.extensions):
            self.cseq += 1
            retry = authorize(probe, req, ex.final, self.profile.username,
                              self.profile.password if password is None else password,
                              self.cseq)
            if retry is not None:
                ex = await probe.transact(retry, timeout=self.profile.response_timeout)
        return ex

    async def clear(self) -> None:
        await self.register(["*"], 0)


LISTS_BINDINGS = must("RFC 3261 §10.3 step 8", "The registrar returns a 200 (OK) response.  The "
                      "response MUST contain Contact header field values enumerating all "
                      "current bindings.  Each Contact value MUST feature an \"expires\" "
                      "parameter indicating its expiration interval chosen by the registrar.")
REFRESHED = must("RFC 3261 §10.3 step 7", "If they are the same, the registrar compares the "
                 "CSeq value.  If the value is higher than that of the existing binding, it "
                 "MUST update or remove the binding as above.")
STAR_REMOVES = must("RFC 3261 §10.3 step 6", "If it does agree, it MUST remove the binding "
                    "only if the CSeq in the request is higher than the value stored for that "
                    "binding.")
STAR_INVALID = must("RFC 3261 §10.3 step 6", "If the request has additional Contact fields or "
                    "an expiration time other than zero, the request is invalid, and the "
                    "server MUST return a 400 (Invalid Request) and skip the remaining steps.")
MIN_EXPIRES = must("RFC 3261 §10.3 step 7", "the registrar MAY reject the registration with a "
                   "response of 423 (Interval Too Brief).  This response MUST contain a "
                   "Min-Expires header field that states the minimum expiration interval the "
                   "registrar is willing to honor.")
STALE = must("RFC 3261 §10.3 step 7", "If they are the same, the registrar compares the CSeq "
             "value.  If the value is higher than that of the existing binding, it MUST update "
             "or remove the binding as above.  If not, the update MUST be aborted and the "
             "request fails.")
AUTHENTICATES = should("RFC 3261 §10.3 step 3", "A registrar SHOULD authenticate the UAC.")
CHALLENGE = must("RFC 3261 §22.2, §22.4", "The WWW-Authenticate response-header field MUST be "
                 "included in 401 (Unauthorized) response messages. [...] servers MUST always "
                 "send a \"qop\" parameter in WWW-Authenticate and Proxy-Authenticate header "
                 "field values.")
REFUSE_WRONG = must("RFC 3261 §10.3 step 3-4, §22.1", "A registrar SHOULD authenticate the "
                    "UAC. [...] If the authenticated user is not authorized to modify bindings, "
                    "the registrar MUST return a 403 (Forbidden) and skip the remaining steps. "
                    "[...] (§22.1) a server may repeat its challenge, or it may respond with a "
                    "403 Forbidden.  (The profile claims digest: credentials made with a wrong "
                    "password authenticate no one.)")


def bound(resp: Response | None, contact: str) -> int | None:
    """The expires the 200 gives ``contact`` (None when it is not listed)."""
    if resp is None:
        return None
    try:
        for na in resp.contacts or []:
            if str(na.uri).split(";")[0] == contact:
                exp = na.expires
                return exp if exp is not None else (resp.expires or -1)
    except ParseError:
        return None
    return None


async def add_binding(probe: Probe, profile: Profile) -> Outcome:
    b = _Binding(probe, profile)
    c1 = b.contact(1)
    ex = await b.register([c1], 300)
    await b.clear()
    if ex.status != 200:
        return broke(LISTS_BINDINGS, f"REGISTER (Expires: 300) got {status_text(ex)}, not 200")
    exp = bound(ex.final, c1)
    if exp is None:
        return broke(LISTS_BINDINGS, "the 200 does not list the new binding")
    if not 0 < exp <= 300:
        return broke(LISTS_BINDINGS, f"the binding's expires is {exp}, not in 1..300")
    return passed(f"200 lists the binding with expires={exp}")


async def refresh(probe: Probe, profile: Profile) -> Outcome:
    b = _Binding(probe, profile)
    c1 = b.contact(1)
    first = await b.register([c1], 300)
    if first.status != 200:
        await b.clear()
        return inconclusive(f"the first REGISTER got {status_text(first)}")
    second = await b.register([c1], 600)
    await b.clear()
    if second.status != 200:
        return broke(REFRESHED, f"the refresh (same Call-ID, higher CSeq) got "
                     f"{status_text(second)}")
    e1, e2 = bound(first.final, c1), bound(second.final, c1)
    if e2 is None or e2 <= 0:
        return broke(LISTS_BINDINGS, "the refreshed binding is not listed with a positive "
                     "expires")
    return passed(f"refreshed: expires {e1} → {e2} (the registrar MAY choose less than "
                  "asked, §10.3 step 7)")


async def several(probe: Probe, profile: Profile) -> Outcome:
    b = _Binding(probe, profile)
    c1, c2 = b.contact(1), b.contact(2)
    ex = await b.register([c1, c2], 300)
    await b.clear()
    if ex.status != 200:
        return broke(LISTS_BINDINGS, f"REGISTER with two Contacts got {status_text(ex)}")
    missing = [c for c in (c1, c2) if bound(ex.final, c) is None]
    if missing:
        return broke(LISTS_BINDINGS, f"the 200 does not list {', '.join(missing)}")
    return passed("both contacts bound and listed")


async def remove_all(probe: Probe, profile: Profile) -> Outcome:
    b = _Binding(probe, profile)
    c1, c2 = b.contact(1), b.contact(2)
    ex = await b.register([c1, c2], 300)
    if ex.status != 200:
        await b.clear()
        return inconclusive(f"the REGISTER adding bindings got {status_text(ex)}")
    star = await b.register(["*"], 0)
    if star.status != 200:
        return broke(STAR_REMOVES, f"Contact: * with Expires: 0 got {status_text(star)}, "
                     "not 200")
    left = [c for c in (c1, c2) if bound(star.final, c) is not None]
    query = await b.register([], None)
    left += [c for c in (c1, c2) if bound(query.final, c) is not None and c not in left]
    if left:
        return broke(STAR_REMOVES, f"still bound after Contact: *: {', '.join(left)}")
    return passed("every binding removed; a query lists none")


async def too_brief(probe: Probe, profile: Profile) -> Outcome:
    b = _Binding(probe, profile)
    ex = await b.register([b.contact(1)], 1)
    await b.clear()
    if ex.status != 423:
        return passed(f"Expires: 1 got {status_text(ex)}: the 423 is a MAY (§10.3 step 7), "
                      "not judged")
    assert ex.final is not None
    value = ex.final.get("min-expires")
    if value is None or not value.strip().isdigit() or int(value) <= 1:
        return broke(MIN_EXPIRES, f"423 without a usable Min-Expires ({value!r})")
    return passed(f"423 with Min-Expires: {value}")


async def star_with_expiry(probe: Probe, profile: Profile) -> Outcome:
    b = _Binding(probe, profile)
    ex = await b.register(["*"], 300)
    await b.clear()
    if ex.status != 400:
        return broke(STAR_INVALID, f"Contact: * with Expires: 300 got {status_text(ex)}, "
                     "not 400")
    return passed("400 for Contact: * with a non-zero expiry")


async def challenge(probe: Probe, profile: Profile) -> Outcome:
    b = _Binding(probe, profile)
    ex = await b.register([b.contact(1)], 300, authenticate=False)
    if ex.status not in (401, 407):
        await b.clear()
        return broke(AUTHENTICATES, f"REGISTER without credentials got {status_text(ex)}, "
                     "not 401/407")
    assert ex.final is not None
    problems, summary = challenge_problems(ex.final, profile.digest_algorithms)
    if problems:
        return broke(CHALLENGE, "; ".join(problems))
    return passed(f"{ex.status} challenge: {summary}")


async def wrong_password(probe: Probe, profile: Profile) -> Outcome:
    b = _Binding(probe, profile)
    ex = await b.register([b.contact(1)], 300, password="wrong-" + profile.password)
    if ex.status == 200:
        await b.clear()
        return broke(REFUSE_WRONG, "a REGISTER with a wrong password was accepted")
    if ex.final is None:
        return broke(REFUSE_WRONG, "no answer to the REGISTER with wrong credentials")
    return passed(f"refused with {status_text(ex)}")


async def query(probe: Probe, profile: Profile) -> Outcome:
    b = _Binding(probe, profile)
    c1 = b.contact(1)
    first = await b.register([c1], 300)
    if first.status != 200:
        await b.clear()
        return inconclusive(f"the REGISTER adding a binding got {status_text(first)}")
    asked = await b.register([], None)
    await b.clear()
    if asked.status != 200:
        return broke(LISTS_BINDINGS, f"a REGISTER without Contact (a query) got "
                     f"{status_text(asked)}, not 200")
    exp = bound(asked.final, c1)
    if exp is None:
        return broke(LISTS_BINDINGS, "the 200 to a query does not list the current binding")
    return passed(f"the query's 200 lists the binding (expires={exp})")


async def stale_cseq(probe: Probe, profile: Profile) -> Outcome:
    b = _Binding(probe, profile)
    c1 = b.contact(1)
    b.cseq = 10
    first = await b.register([c1], 300)
    if first.status != 200:
        await b.clear()
        return inconclusive(f"the REGISTER adding a binding got {status_text(first)}")
    kept = b.cseq
    b.cseq = 1  # same Call-ID, a CSeq below the binding's: out of order
    stale = await b.register([c1], 0)
    b.cseq = kept + 10
    after = await b.register([], None)
    await b.clear()
    if bound(after.final, c1) is None and after.status == 200:
        return broke(STALE, f"a REGISTER with a lower CSeq (Expires: 0) removed the binding "
                     f"(it got {status_text(stale)})")
    if stale.final is not None and 200 <= stale.status < 300:
        return broke(STALE, f"a REGISTER with a lower CSeq got {status_text(stale)}: the "
                     "request must fail")
    return passed(f"the out-of-order REGISTER failed ({status_text(stale)}); the binding "
                  "stays")


CASES = [
    Case("REG-001", "3261", "10.3", "REGISTER with an expiry: 200 lists the binding with "
         "its expires", "registrar", ("role:registrar",), add_binding, rules=(LISTS_BINDINGS,)),
    Case("REG-002", "3261", "10.2.1", "a refresh (same Call-ID, higher CSeq) keeps the "
         "binding and renews its expiry", "registrar", ("role:registrar",), refresh,
         rules=(REFRESHED, LISTS_BINDINGS)),
    Case("REG-003", "3261", "10.2.1.2", "several Contacts in one REGISTER are all bound",
         "registrar", ("role:registrar",), several, rules=(LISTS_BINDINGS,)),
    Case("REG-004", "3261", "10.2.2", "Contact: * with Expires: 0 removes every binding",
         "registrar", ("role:registrar",), remove_all, rules=(STAR_REMOVES,)),
    Case("REG-005", "3261", "10.3", "an expiry below the minimum: a 423 (a MAY) "
         "carries Min-Expires (profile registrar.min_expires)", "registrar",
         ("role:registrar", "set:registrar.min_expires"), too_brief, rules=(MIN_EXPIRES,)),
    Case("REG-006", "3261", "10.3", "Contact: * with a non-zero expiry gets 400",
         "registrar", ("role:registrar",), star_with_expiry, rules=(STAR_INVALID,)),
    Case("REG-007", "3261", "10.2.3", "a REGISTER without Contact (a query) gets 200 listing "
         "the current bindings", "registrar", ("role:registrar",), query,
         rules=(LISTS_BINDINGS,)),
    Case("REG-008", "3261", "10.3", "a REGISTER with a lower CSeq in the same Call-ID fails "
         "and leaves the binding", "registrar", ("role:registrar",), stale_cseq,
         rules=(STALE,)),
    Case("REG-AUTH-001", "3261", "22.4", "REGISTER is challenged with a well-formed digest "
         "challenge (realm, nonce, algorithm, qop)", "registrar",
         ("role:registrar", "ext:digest"), challenge, rules=(CHALLENGE, AUTHENTICATES)),
    Case("REG-AUTH-002", "3261", "22.4", "a REGISTER with a wrong password is refused",
         "registrar", ("role:registrar", "ext:digest"), wrong_password, rules=(REFUSE_WRONG,)),
]
