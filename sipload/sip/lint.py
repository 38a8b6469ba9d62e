"""What ``sipload parse`` calls valid: the linter's rule, over raw bytes.

Theory of operation.  A message is *valid* when it is complete, parses, its
headers are well formed (:func:`~sipload.sip.parser.check_syntax`) and it has
every header RFC 3261 makes mandatory.  Rules, in the order applied:

1. Complete: an empty line ends the header section (RFC 3261 §7), and on a
   stream the body holds Content-Length bytes (§18.3, §20.14).  An incomplete
   message is invalid, with that reason.
2. It parses (:func:`~sipload.sip.parser.parse_message`): otherwise invalid,
   with the parser's reason and status.
3. Its headers are well formed: otherwise invalid (400).
4. Mandatory headers: a request has To, From, CSeq, Call-ID, Max-Forwards and
   Via (§8.1.1); a response has To, From, CSeq, Call-ID and Via (§20's table).
   A message missing one is invalid.
5. Only a message that passes 1-4 is valid; a UAS may still refuse it by
   policy (405/501, 415, 416, 420, 406: :func:`~sipload.sip.checks.verdict`),
   and that answer is reported beside ``valid``.

An invalid request gets the status a UAS answers (400, 505, 513 ...); an
invalid response has no answer: a UA discards it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sipload.sip.checks import verdict
from sipload.sip.errors import ParseError
from sipload.sip.headers import CANONICAL
from sipload.sip.message import Request, Response
from sipload.sip.parser import check_syntax, parse_message

REQUEST_MANDATORY = ("to", "from", "cseq", "call-id", "max-forwards", "via")  #: §8.1.1
RESPONSE_MANDATORY = ("to", "from", "cseq", "call-id", "via")  #: §20, table 2


@dataclass(frozen=True, slots=True)
class Lint:
    """The linter's judgement of one message."""

    valid: bool  #: complete, parses, well formed, has its mandatory headers
    message: Request | Response | None  #: the parsed message, None if it did not parse
    kind: str  #: "request" or "response" (from the start line when it did not parse)
    reason: str  #: why it is invalid, or why a UAS refuses a valid one; "" if accepted
    status: int | None  #: what a UAS answers (None: accepted, or a response: discarded)
    action: str  #: what a UA does with it: "accept", "reject" (with status) or "discard"


def _kind_of(data: bytes) -> str:
    return "response" if data.lstrip(b"\r\n")[:4].upper() == b"SIP/" else "request"


def _invalid(kind: str, reason: str, status: int, msg: Request | Response | None) -> Lint:
    if kind == "response":
        return Lint(False, msg, kind, reason, None, "discard")
    return Lint(False, msg, kind, reason, status, "reject")


def incomplete(data: bytes, *, datagram: bool) -> str:
    """Why ``data`` is not a whole message, or "" if it is (rule 1)."""
    start = len(data) - len(data.lstrip(b"\r\n"))
    if data.find(b"\r\n\r\n", start) < 0 and data.find(b"\n\n", start) < 0:
        return "incomplete: no empty line ends the header section (RFC 3261 §7)"
    if datagram:
        return ""  # a short body in a datagram is the parser's 400 (§18.3)
    try:
        parse_message(data, datagram=False)
    except ParseError as e:
        if e.reason.startswith("Content-Length") and "larger than" in e.reason:
            return (f"incomplete: {e.reason} on a stream (RFC 3261 §18.3: the rest never "
                    "came)")
    return ""


def lint(data: bytes, *, datagram: bool = True) -> Lint:
    """Judge one message by the rules of the module docstring.

    Args:
        data: one message's bytes.
        datagram: True for a datagram (UDP: the body is the rest of the packet);
            False for a message cut from a stream (Content-Length is exact).

    Returns:
        A :class:`Lint`; never raises on any input.
    """
    kind = _kind_of(data)
    why = incomplete(data, datagram=datagram)
    if why:
        return _invalid(kind, why, 400, None)
    try:
        msg = parse_message(data, datagram=datagram)
    except ParseError as e:
        return _invalid(kind, e.reason, e.status, None)
    kind = "request" if isinstance(msg, Request) else "response"
    try:
        check_syntax(msg)
    except ParseError as e:
        return _invalid(kind, e.reason, e.status, msg)
    mandatory = REQUEST_MANDATORY if isinstance(msg, Request) else RESPONSE_MANDATORY
    missing = [CANONICAL.get(h, h) for h in mandatory if not msg.has(h)]
    if missing:
        where = "§8.1.1" if isinstance(msg, Request) else "§20"
        reason = (f"missing mandatory header{'s' if len(missing) > 1 else ''} "
                  f"{', '.join(missing)} (RFC 3261 {where})")
        if isinstance(msg, Request) and not _rfc3261_branch(msg):
            reason += ("; an RFC 2543 request (no z9hG4bK branch): a UAS keeping "
                       "backward compatibility accepts it (RFC 4475 §3.4.1)")
        return _invalid(kind, reason, 400, msg)
    action, status, reason = verdict(data, datagram=datagram)
    return Lint(True, msg, kind, reason, status, action)


def _rfc3261_branch(req: Request) -> bool:
    try:
        branch = req.via.branch
    except ParseError:
        return False
    return branch is not None and branch.startswith("z9hG4bK")
