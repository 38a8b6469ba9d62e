"""The checks a UAS applies to a request before processing it (RFC 3261 §8.2).

:func:`check_request` returns ``None`` when the request may be processed, or the
:class:`Rejection` to answer with: 400 for a malformed request or one lacking a
mandatory header, 405 (with Allow) for a known method this UAS does not
handle, 501 for an unknown method, 416 for a Request-URI scheme it does not
handle, 420 (with Unsupported) for an unknown Require option, 415 (with Accept
or Accept-Encoding) for a body it cannot read, 406 when the request's Accept
excludes every type the UAS would answer with.  Checks run in the RFC's order.

:func:`verdict` runs the parser, the syntax checks and these checks over raw
bytes and says in one word what a UAS does with them, for tools and tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sipload.sip.errors import ParseError
from sipload.sip.message import Request, Response
from sipload.sip.parser import check_syntax, parse_message

KNOWN_METHODS = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
    "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
})
MANDATORY = ("via", "to", "from", "call-id", "cseq")


@dataclass(frozen=True, slots=True)
class Rejection:
    """The response a UAS gives instead of processing a request."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


def check_request(
    req: Request,
    *,
    allowed_methods: Iterable[str],
    supported: Iterable[str] = (),
    accepted_types: Iterable[str] = ("application/sdp",),
    answer_types: Iterable[str] = ("application/sdp",),
    uri_schemes: Iterable[str] = ("sip", "sips", "tel"),
) -> Rejection | None:
    """Apply §8.2's checks; ``None`` means "go on and process it"."""
    try:
        check_syntax(req)
    except ParseError as e:
        return Rejection(e.status, e.reason)
    for key in MANDATORY:
        if not req.has(key):
            return Rejection(400, f"missing mandatory header {key}")
    allowed = list(allowed_methods)
    method = req.method
    if method not in allowed:
        allow = (("Allow", ", ".join(allowed)),)
        if method in KNOWN_METHODS:
            return Rejection(405, "Method Not Allowed", allow)
        return Rejection(501, "Not Implemented", allow)
    schemes = {s.lower() for s in uri_schemes}
    if req.uri.scheme.lower() not in schemes:
        return Rejection(416, "Unsupported URI Scheme")
    if method not in ("ACK", "CANCEL"):
        sup = {s.lower() for s in supported}
        unknown = [opt for opt in req.require if opt.lower() not in sup]
        if unknown:
            return Rejection(420, "Bad Extension", (("Unsupported", ", ".join(unknown)),))
    if req.body:
        ctype = req.content_type
        accepted = [t.lower() for t in accepted_types]
        if ctype is not None and ctype.mime not in accepted and not ctype.mime.startswith(
            "multipart/"
        ):
            return Rejection(415, "Unsupported Media Type", (("Accept", ", ".join(accepted)),))
        encoding = req.get("content-encoding")
        if encoding is not None and encoding.strip().lower() not in ("identity", ""):
            return Rejection(
                415, "Unsupported Media Type", (("Accept-Encoding", "identity"),)
            )
    accept = req.values("accept")
    if accept and method in ("INVITE", "OPTIONS"):
        wanted = {a.split(";")[0].strip().lower() for a in accept}
        ours = {t.lower() for t in answer_types}
        if not any(w in ours or w in ("*/*",) or _wild(w, ours) for w in wanted):
            return Rejection(
                406, "Not Acceptable", (("Warning", '399 sipload "no acceptable body type"'),)
            )
    return None


def _wild(wanted: str, ours: set[str]) -> bool:
    if not wanted.endswith("/*"):
        return False
    prefix = wanted[:-1]
    return any(o.startswith(prefix) for o in ours)


DEFAULT_UAS_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE",
                       "PRACK", "REFER", "NOTIFY", "MESSAGE")


def verdict(
    data: bytes,
    *,
    datagram: bool = True,
    allowed_methods: Iterable[str] = DEFAULT_UAS_METHODS,
    supported: Iterable[str] = ("100rel", "timer", "replaces"),
) -> tuple[str, int | None, str]:
    """What a UAS does with these bytes: ``("accept"|"reject"|"discard", status, reason)``."""
    try:
        msg = parse_message(data, datagram=datagram)
    except ParseError as e:
        if data.lstrip(b"\r\n")[:4].upper() == b"SIP/":
            return "discard", None, e.reason
        return "reject", e.status, e.reason
    if isinstance(msg, Response):
        try:
            check_syntax(msg)
            _ = msg.call_id
            _ = msg.via
        except ParseError as e:
            return "discard", None, e.reason
        if len(msg.vias) > 1:
            return "discard", None, "a response reaching a UAC carries one Via (§8.1.3.3)"
        return "accept", None, ""
    rej = check_request(msg, allowed_methods=allowed_methods, supported=supported)
    if rej is None:
        return "accept", None, ""
    return "reject", rej.status, rej.reason
