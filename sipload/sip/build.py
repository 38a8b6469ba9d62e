"""Building messages from other messages: responses, ACK for non-2xx, CANCEL.

These are the constructions that RFC 3261 fixes header by header:
responses copy Via, From, To, Call-ID, CSeq (and Timestamp on a 100) from the
request (§8.2.6.2); the ACK for a non-2xx final response reuses the INVITE's
top Via, Request-URI, Call-ID, From, CSeq number and Route, and the response's
To (§17.1.1.3); a CANCEL copies the INVITE's Request-URI, top Via, Call-ID,
From, To, CSeq number and Route (§9.1).
"""

from __future__ import annotations

from sipload.sip.errors import ParseError
from sipload.sip.grammar import Params, split_commas
from sipload.sip.headers import NameAddress
from sipload.sip.message import Request, Response


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> Response:
    """A response to ``request`` with the headers §8.2.6.2 copies.

    Args:
        to_tag: added to To when the request's To has no tag and status > 100.
        extra: more ``(name, value)`` fields, appended in order.
    """
    resp = Response(status, reason or "")
    for key in ("via", "from"):
        resp.copy_headers_from(request, key)
    to_value = request.get("to")
    if to_value is not None:
        if to_tag is not None and status > 100 and request.to_tag is None:
            to_value = f"{to_value};tag={to_tag}"
        resp.add_header("To", to_value)
    for key in ("call-id", "cseq"):
        resp.copy_headers_from(request, key)
    if status == 100:
        resp.copy_headers_from(request, "timestamp")
    if extra:
        for name, value in extra:
            resp.add_header(name, value)
    return resp


def make_ack_for_non2xx(invite: Request, response: Response) -> Request:
    """The ACK an INVITE client transaction sends for a 300-699 (§17.1.1.3)."""
    ack = Request("ACK", invite.uri_text)
    ack.add_header("Via", split_commas(invite.get_all("via")[0])[0])
    for key in ("max-forwards", "route"):
        ack.copy_headers_from(invite, key)
    ack.copy_headers_from(invite, "from")
    to = response.get("to")
    if to is not None:
        ack.add_header("To", to)
    ack.copy_headers_from(invite, "call-id")
    ack.add_header("CSeq", f"{invite.cseq.seq} ACK")
    return ack


def make_cancel(invite: Request) -> Request:
    """A CANCEL for a pending INVITE (§9.1)."""
    cancel = Request("CANCEL", invite.uri_text)
    cancel.add_header("Via", split_commas(invite.get_all("via")[0])[0])
    for key in ("max-forwards", "route", "from", "to", "call-id"):
        cancel.copy_headers_from(invite, key)
    cancel.add_header("CSeq", f"{invite.cseq.seq} CANCEL")
    return cancel


def with_tag(address: NameAddress, tag: str) -> NameAddress:
    """A copy of ``address`` carrying ``;tag=tag``."""
    items = [(k, v) for k, v in address.params.items if k.lower() != "tag"]
    items.append(("tag", tag))
    return NameAddress(address.uri, address.display_name, Params(items))


_SALVAGE_KEYS = {
    b"via": "Via", b"v": "Via", b"from": "From", b"f": "From", b"to": "To", b"t": "To",
    b"call-id": "Call-ID", b"i": "Call-ID", b"cseq": "CSeq",
}


def salvage_response(data: bytes, status: int, reason: str,
                     retry_after: int = -1) -> bytes | None:
    """An error response for bytes that did not parse, if they were a request.

    Copies the Via, From, To, Call-ID and CSeq lines as they came so the sender
    can match the answer (RFC 3261 §8.2.6); with ``retry_after`` >= 0 (a 503 for
    a request refused for want of capacity) it carries Retry-After (§20.33).
    Returns None for responses, and for bytes lacking any of those fields
    (nothing can be matched: drop them).
    """
    head = data.lstrip(b"\r\n")
    if head[:4].upper() == b"SIP/":
        return None
    end = head.find(b"\r\n\r\n")
    lines = (head if end < 0 else head[:end]).split(b"\r\n")[1:]
    found: dict[str, list[str]] = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key = _SALVAGE_KEYS.get(name.strip().lower())
        if key is None:
            continue
        text = value.strip().decode("utf-8", "replace")
        if "\r" in text or "\n" in text or not text:
            return None
        found.setdefault(key, []).append(text)
    if any(k not in found for k in ("Via", "From", "To", "Call-ID", "CSeq")):
        return None
    phrase = reason.replace("\r", " ").replace("\n", " ")[:120]
    resp = Response(status, "")
    for key in ("Via", "From", "To", "Call-ID", "CSeq"):
        for v in found[key]:
            resp.add_header(key, v)
    if retry_after >= 0:
        resp.add_header("Retry-After", str(retry_after))
    resp.add_header("Warning", f'399 sipload "{phrase.replace(chr(34), chr(39))}"')
    return resp.to_bytes()


def stamp_source(request: Request, host: str, port: int) -> None:
    """Note in the top Via where a request came from, as the server transport must.

    RFC 3261 §18.2.1: add ``received=<source address>`` when the sent-by host is
    not that address.  RFC 3581 §4: an ``rport`` with no value gets the source
    port, and then ``received`` is added even when it equals the sent-by host.
    Responses copy the Via, so they carry both back.  A top Via that does not
    parse is left as it is (the request gets its 400 elsewhere).
    """
    try:
        via = request.via
    except ParseError:
        return
    params = via.params
    rport = "rport" in params
    if rport and params.get("rport") is not None:
        rport = False  # already filled in (by a proxy, say): leave it
    sent_by = via.host[1:-1] if via.host.startswith("[") else via.host
    if not rport and sent_by == host:
        return
    params.set("received", host)
    if rport:
        params.set("rport", str(port))
    first = request.get("via")
    assert first is not None  # request.via parsed from it
    if "," in first:
        values = split_commas(first)
        values[0] = str(via)
        request.replace_first("via", ", ".join(values))
    else:
        request.replace_first("via", str(via))
