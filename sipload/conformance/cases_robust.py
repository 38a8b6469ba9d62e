"""The robustness pack: RFC 4475 torture messages sent raw, one case each.

The messages and their index ship in ``sipload/conformance/data/`` (byte-exact
copies of ``tests/data/rfc4475/``).  The pack sends every message RFC 4475
calls invalid (§3.1.2), every semantically wrong one whose expected handling
does not depend on the element's role (§3.2, §3.3), and its valid ones (§3.1.1,
plus §3.3.6's body of unknown type, judged by what a UAS answers), as bytes: a request as a
client transaction does (retransmitted over UDP on the §17.1 schedule until a
final response or the profile's ``response_timeout``), a response once.

Judging (``expect`` in ``index.json``; levels as RFC 3261 gives them, since
RFC 4475 is informational):

1. A response must get no answer at all: the target must discard it (RFC 3261
   §18.1.2: its top Via is not the target's) -- a MUST.
2. A malformed request may be dropped (RFC 3261 §18.3, RFC 4475); a valid one
   (``badbranch``, ``unkscm``, ``novelsc``, ``bext01``, ``sdp01`` and the
   :data:`VALID` requests) must be answered: silence fails the MUST to answer
   (§17.2.1 for INVITE, §11.2 for OPTIONS, §8.2.1 for any other method).  A valid
   message refused 400 breaks RFC 4475's own sentence (:data:`RFC4475_SAYS`),
   advice: ``warn``.
3. An answer the entry names (``reject-400``, ``reject-416-or-404``,
   ``reject-error`` = any 4xx-6xx, ``liberal-accept`` = any) passes; so does an
   answer right at an earlier step of the §8.2 order (authentication, then the
   method, then the Request-URI ...).  Any other answer breaks the entry's
   rule: a MUST where RFC 3261 has one (``bext01``: 420), else a SHOULD
   (``warn``) -- RFC 4475's "400" is advice, RFC 3261 §18.3 a SHOULD.
4. Whatever happened, the target must still answer a valid request afterwards
   (an OPTIONS, or the INVITE the reachability probe found it answers), or the
   case fails: the message broke it.

Two changes are made to each request before it is sent: the top Via's
transport and sent-by become the tester's own, or the target would answer to
``192.0.2.x:5060`` (RFC 3261 §18.2.2) and the tester could not see the answer;
and the Request-URI becomes the profile's ``uas.uri`` unless the Request-URI is
what the message tests (``ltgtruri``, ``lwsruri``, ``escruri``, ``unkscm``,
``novelsc``), so the target judges the message, not an address it does not
serve.  No other message's defect lies in those fields; the ladder shows the
bytes as sent.  A final answer to an INVITE is ACKed, and a 2xx hung up, even
when the INVITE itself does not parse (:meth:`~sipload.conformance.probe.Probe.stand_in`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sipload.conformance.cases_uas import (
    ANSWER_INVITE,
    METHOD,
    MISSING_TO,
    OPTIONS_CODE,
    REQUIRE,
    SCHEME,
)
from sipload.conformance.judge import earlier_step
from sipload.conformance.ladder import call_id_of
from sipload.conformance.model import Case, Outcome, Rule, broke, must, passed, should
from sipload.conformance.probe import Exchange, Probe
from sipload.conformance.profile import Profile
from sipload.conformance.steps import uas_uri
from sipload.sip.errors import ParseError
from sipload.sip.message import Message, Request, Response
from sipload.sip.parser import parse_message

_ROLE_SPECIFIC = ("uas-", "proxy-", "registrar-", "non-registrar-")
_LWS = rb"[ \t]*(?:\r?\n[ \t]+)?"
_VIA = re.compile(rb"(?im)^((?:via|v)" + _LWS + rb":" + _LWS + rb"SIP" + _LWS + rb"/" + _LWS
                  + rb"2\.0" + _LWS + rb"/" + _LWS + rb")([A-Za-z]+)(" + _LWS
                  + rb")([^;,\s]+)")
_BRANCH = re.compile(rb"(?i)branch[ \t]*=[ \t]*z9hG4bK[^;,\s]+")


def _data(name: str) -> bytes:
    return resources.files("sipload.conformance").joinpath("data", name).read_bytes()


def index() -> list[dict[str, Any]]:
    """The entries of ``data/index.json``."""
    entries: list[dict[str, Any]] = json.loads(_data("index.json"))
    return entries


def in_pack(entry: dict[str, Any]) -> bool:
    """Invalid messages, and wrong ones whose handling does not depend on the role."""
    expect = str(entry["expect"])
    if entry["name"] in VALID:
        return True
    if any(part.strip().startswith(_ROLE_SPECIFIC) for part in expect.split(";")):
        return False
    if not entry["valid"]:
        return True
    return expect.startswith(("reject", "discard", "accept-or-reject"))


@dataclass(frozen=True, slots=True)
class Expectation:
    discard: bool  #: no answer is the only right outcome
    any_answer: bool  #: any final answer is acceptable
    statuses: frozenset[int]  #: acceptable final statuses (when not any_answer)
    text: str

    def allows(self, status: int | None) -> bool:
        if status is None:
            return True  # dropping is always allowed
        if self.discard:
            return False
        return self.any_answer or status in self.statuses


def uas_expect(entry: dict[str, Any]) -> str:
    """What ``expect`` asks of a UAS: its ``uas-`` part when it has one (``uas-501`` is
    ``reject-501``), else the whole."""
    for part in str(entry["expect"]).split(";"):
        part = part.strip()
        if part.startswith("uas-"):
            return "reject-" + part.removeprefix("uas-")
    return str(entry["expect"])


def parse_expect(text: str) -> Expectation:
    """``reject-400-or-liberal-accept`` and its kin, as an :class:`Expectation`."""
    if text.strip() == "accept":  # a valid message: any answer but a parse error
        return Expectation(False, False, frozenset(s for s in range(100, 700) if s != 400),
                           text)
    if text.strip() == "discard":
        return Expectation(True, False, frozenset(), text)
    statuses: set[int] = set()
    any_answer = False
    body = text.strip()
    if body.startswith("accept"):
        any_answer = True
    body = body.removeprefix("reject-")
    for alt in body.split("-or-"):
        alt = alt.strip()
        if alt.isdigit():
            statuses.add(int(alt))
        elif alt == "error":
            statuses.update(range(400, 700))
        else:  # liberal-accept, ignore-date, accept
            any_answer = True
    return Expectation(False, any_answer, frozenset(statuses), text)


def rewrite_via(data: bytes, probe: Probe) -> bytes:
    """The message with its top Via's transport and sent-by made the tester's.

    A branch longer than the bare magic cookie also gets a unique suffix: RFC 4475
    reuses branches across messages (``z9hG4bKkdjuw`` in several), and a target
    that rightly matches them as retransmissions of one transaction (§17.2.3)
    would answer the next message with the previous one's response.
    """
    host, port = probe.local
    sent_by = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode()
    transport = probe.target[0].upper().encode()
    m = _VIA.search(data)
    if m is None:
        return data
    end = data.find(b"\r\n", m.end())
    end = len(data) if end < 0 else end
    rest = _BRANCH.sub(lambda b: b.group(0) + b"." + probe.tag().encode(), data[m.end():end],
                       count=1)
    return data[:m.start()] + m.group(1) + transport + m.group(3) + sent_by + rest + data[end:]



RFC4475_SAYS: dict[str, str] = {
    "wsinv": "All elements should treat this as a well-formed request.",
    "esc01": "A parser must accept this as a well-formed message.",
    "escnull": "The message is well formed - parsers must accept this message.",
    "lwsdisp": "Elements should accept this request as well formed.",
    "longreq": "This well-formed request contains header fields with many values and values "
               "that are very long.",
    "dblreq": "A SIP element receiving this datagram would handle the REGISTER request "
              "normally and ignore the extra bits that look like an INVITE request.",
    "semiuri": "Receiving elements will accept this as a well-formed message.",
    "transports": "Parsers must accept this message as well formed.",
    "mpart01": "Parsers must accept this message as well formed, even if the application "
               "above the parser does not support multipart/signed.",
    "badinv01": "This message is syntactically invalid.  An element receiving this request "
                "should respond with a 400 Bad Request error.",
    "ncl": "An element receiving this message should respond with an error.",
    "scalar02": "An element receiving this request should respond with a 400 Bad Request due "
                "to the CSeq error.",
    "quotbal": "An element receiving this request should return a 400 Bad Request error.  An "
               "element could attempt to infer a terminating quote and accept the message.",
    "ltgtruri": "It is reasonable always to reject a request with this error with a 400 Bad "
                "Request.  Elements attempting to be liberal with what they accept may choose "
                "to ignore the brackets.",
    "lwsruri": "An element receiving this request should respond with a 400 Bad Request.  An "
               "element could attempt to ignore the embedded LWS for those schemes (like SIP) "
               "where doing so would not introduce ambiguity.",
    "lwsstart": "It is acceptable to reject this request as malformed.  An element that is "
                "liberal in what it accepts may ignore these extra SP characters when "
                "processing the request.",
    "trws": "It is acceptable to reject this request as malformed.  An element that is "
            "liberal in what it accepts may ignore these extra SP characters when processing "
            "the request.",
    "escruri": "It is acceptable for an element to reject this request with a 400 Bad "
               "Request.  An element could choose to be liberal in what it accepts and ignore "
               "the escaped headers.",
    "baddate": "It is acceptable to reject this request as malformed (though an element "
               "shouldn't do that unless the contents of the Date header field were actually "
               "important to its processing).",
    "regbadct": "It is reasonable for an element receiving this request to respond with a 400 "
                "Bad Request.  An element choosing to be liberal in what it accepts could infer "
                "the angle brackets since there is no ambiguity in this example.",
    "badaspec": "Parsers receiving this request must not break.  It is reasonable to reject "
                "this request with a 400 Bad Request response.  Elements attempting to be "
                "liberal may ignore the spaces.",
    "baddn": "It is reasonable always to reject this kind of error with a 400 Bad Request "
             "response.  An element may attempt to be liberal in what it receives and infer "
             "the missing quotes.",
    "badvers": "The element should respond to the request with a 505 Version Not Supported "
               "error.",
    "mismatch01": "Any element receiving this request will respond with a 400 Bad Request.",
    "mismatch02": "Any element receiving this response should respond with a 501 Not "
                  "Implemented.  A 400 Bad Request is also acceptable",
    "badbranch": "A parser must not break when receiving this message.  An element receiving "
                 "this request could reject the request with a 400 Response [...] or it could "
                 "fall back to the RFC 2543-style transaction identifier.",
}
"""RFC 4475's own sentence for each message, quoted from the RFC's text (as carried in
reSIProcate's ``resip/stack/test/RFC4475TortureTests.cxx``, which embeds each section).
RFC 4475 is informational: its "should" and "must" are advice, judged as a SHOULD."""

VALID = frozenset({"wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq",
                   "dblreq", "semiuri", "transports", "mpart01", "unreason", "noreason",
                   "invut"})
"""RFC 4475's valid messages (§3.1.1) and the semantically wrong ones whose UAS answer it
names (§3.3.6), in the pack besides every invalid one; registrar-only and role-split
ones (``cparam01``, ``regaut01``, ``zeromf`` ...) stay out."""


RURI_TESTED = frozenset({"ltgtruri", "lwsruri", "escruri", "unkscm", "novelsc", "semiuri",
                         "esc01"})
"""Messages whose Request-URI is the defect: sent with it as it is."""

MUST_ANSWER = frozenset({"badbranch", "unkscm", "novelsc", "bext01", "sdp01"}) | (
    VALID - {"unreason", "noreason"})
"""Valid requests a UAS can process: silence is not allowed."""
CONTENT_415 = must("RFC 3261 §8.2.3", "If there are any bodies whose type (indicated by the "
                   "Content-Type), language (indicated by the Content-Language) or encoding "
                   "(indicated by the Content-Encoding) are not understood, and that body part "
                   "is not optional (as indicated by the Content-Disposition header field), the "
                   "UAS MUST reject the request with a 415 (Unsupported Media Type) response.")

DISCARD = must("RFC 3261 §18.1.2", "If the value of the \"sent-by\" parameter in that header "
               "field does not correspond to a value that the client transport is configured "
               "to insert into requests, the response MUST be silently discarded.")
ALIVE = must("RFC 3261 §17.2.1", "The server transaction MUST generate a 100 (Trying) response "
             "unless it knows that the TU will generate a provisional or final response within "
             "200 ms (after a torture message the target still answers a valid request)")
FRAMING = should("RFC 3261 §18.3", "If the transport packet ends before the end of the message "
                 "body, this is considered an error. [...] If the message is a request, the "
                 "element SHOULD generate a 400 (Bad Request) response.")
SINGLE_VALUED = should("RFC 3261 §7.3.1, §21.4.1", "(informational) Multiple header field "
                       "rows with the same field-name MAY be present in a message if and only "
                       "if the entire field-value for that header field is defined as a "
                       "comma-separated list [...] (§21.4.1, 400 Bad Request) The request could "
                       "not be understood due to malformed syntax.")
NOT_ACCEPTABLE = should("RFC 3261 §21.4.7", "(informational) 406 Not Acceptable: The resource "
                        "identified by the request is only capable of generating response "
                        "entities that have content characteristics not acceptable according "
                        "to the Accept header field sent in the request.")
_RULES: dict[str, Rule] = {"bext01": REQUIRE, "unkscm": SCHEME, "novelsc": SCHEME,
                           "clerr": FRAMING, "intmeth": METHOD, "esc02": METHOD,
                           "invut": CONTENT_415, "insuf": MISSING_TO,
                           "multi01": SINGLE_VALUED, "mcl01": SINGLE_VALUED,
                           "sdp01": NOT_ACCEPTABLE}
_REQUEST_LINE = re.compile(rb"^([A-Za-z0-9!%*_+`'~.\-]+)([ \t]+)(\S+)([ \t]+SIP/)")


def rule_for(entry: dict[str, Any]) -> Rule:
    """The rule an answer other than the expected one breaks (see the module docstring)."""
    name = str(entry["name"])
    if name in _RULES:
        return _RULES[name]
    if name in RFC4475_SAYS:
        return should(f"RFC 4475 §{entry['section']}", f"(informational) {RFC4475_SAYS[name]}")
    what = str(entry.get("what", "")).split(";")[0]
    return should(f"RFC 4475 §{entry['section']}", f"(informational) (a summary: the RFC's "
                  f"words were not at hand) {what}; expected: "
                  f"{entry['expect']}")


def retarget(data: bytes, uri: str) -> bytes:
    """The request with its Request-URI replaced by ``uri`` (spacing kept)."""
    m = _REQUEST_LINE.match(data)
    if m is None:
        return data
    return data[:m.start(3)] + uri.encode() + data[m.end(3):]


async def _finish_raw(probe: Probe, data: bytes, method: str, ex: Exchange) -> None:
    """ACK (and BYE) what the final response to a torture INVITE calls for; CANCEL it
    when it only rang."""
    resp = ex.final or (ex.provisionals[-1][1] if ex.provisionals else None)
    if method != "INVITE" or resp is None:
        return
    try:
        req = parse_message(data)
    except ParseError:
        req = None
    if not isinstance(req, Request):
        m = _REQUEST_LINE.match(data)
        uri = m.group(3).decode("utf-8", "replace") if m else "sip:invalid"
        try:
            req = probe.stand_in("INVITE", uri, resp)
        except ParseError:
            return  # a response without Call-ID or CSeq: nothing can match an ACK to it
    await probe.finish(req, Exchange(req, ex.sent_at, ex.final, ex.final_at,
                                     list(ex.provisionals)))


def _case_for(entry: dict[str, Any]) -> Case:
    name = str(entry["name"])
    expectation = parse_expect(uas_expect(entry))
    if rule_for(entry) is METHOD:  # an unknown method: 405 or 501 (§8.2.1, §21.5.2)
        expectation = Expectation(False, False, frozenset({405, 501}), expectation.text)
    rule = rule_for(entry)

    async def run(probe: Probe, profile: Profile) -> Outcome:
        raw = _data(str(entry["file"]))
        is_request = not raw.lstrip(b"\r\n").upper().startswith(b"SIP/")
        data = raw
        if is_request:
            data = rewrite_via(raw, probe)
            if name not in RURI_TESTED:
                data = retarget(data, uas_uri(profile))
        call_id = call_id_of(data)
        branch_m = _BRANCH.search(data)
        branch = branch_m.group(0).split(b"=", 1)[1].strip().decode() if branch_m else None
        method = data.split(b" ", 1)[0].decode("ascii", "replace") if is_request else ""
        probe.divert_all = True  # answers may lack a Call-ID (insuf): match by branch too

        def answer(m: Message) -> bool:
            if not isinstance(m, Response):
                return False
            if branch is not None and m.via.branch == branch:
                return True
            return call_id is not None and m.call_id == call_id

        window = profile.response_timeout
        if is_request:
            ex = await probe.transact_raw(data, method, answer, timeout=window)
            final = ex.final
            if final is None and ex.provisionals and ex.provisionals[-1][1].status > 100:
                final = ex.provisionals[-1][1]  # it rang: the message was accepted
            await _finish_raw(probe, data, method, ex)
        else:
            probe.send_raw(data)
            got = await probe.expect(answer, window)
            final = got.msg if got is not None and isinstance(got.msg, Response) else None
        alive = await probe.alive(uas_uri(profile), timeout=max(profile.response_timeout, 2.0))
        said = f"{final.status} {final.reason}" if final is not None else "no answer"
        if not alive:
            return broke(ALIVE, f"the target stopped answering after this message ({said})")
        if not is_request:
            if final is not None:
                return broke(DISCARD, f"a response was answered ({said})")
            return passed("discarded; still alive")
        if final is None:
            if name in MUST_ANSWER:
                silent = {"INVITE": ANSWER_INVITE, "OPTIONS": OPTIONS_CODE}.get(method, METHOD)
                return broke(silent, f"no final response to a valid {method} within "
                             f"{window:g} s")
            return passed("dropped (allowed for a malformed message); still alive")
        if expectation.allows(final.status):
            return passed(f"{said} (expected {expectation.text}); still alive")
        # 404 is no answer to a scheme; before the method only authentication comes
        step = "uri" if rule is SCHEME else "method" if rule is METHOD else "content"
        earlier = earlier_step(final.status, step) if (
            entry["valid"] or expectation.any_answer or name in RURI_TESTED) else None
        if earlier is not None:
            return passed(f"{said}: right at an earlier step of §8.2 ({earlier}); still alive")
        return broke(rule, f"answered {said}; expected {expectation.text}")

    what = str(entry.get("what", ""))
    if len(what) > 110:
        what = what[:107].rsplit(" ", 1)[0] + "..."
    response = _data(str(entry["file"])).lstrip(b"\r\n").upper().startswith(b"SIP/")
    return Case(f"ROB-{name}", "4475", str(entry["section"]),
                f"{what} — expect {uas_expect(entry)}, and the target survives",
                "robustness", ("role:uas",), run, budget=15.0,
                rules=(ALIVE, DISCARD if entry["expect"] == "discard" or response else rule))


def cases() -> list[Case]:
    """One case per message in the pack, in the RFC's order."""
    return [_case_for(e) for e in index() if in_pack(e)]
