"""Where the UA's requests go and how they are addressed: Via, the next hop, new requests.

1. A new request outside a dialog gets From (with a fresh tag), To, Call-ID, CSeq 1,
   Max-Forwards 70, an optional Route and User-Agent; its addresses are parsed once
   per distinct text (a run uses few).
2. Every request we send gets a Via of our own with a fresh branch and ``rport``
   (RFC 3581).
3. The next hop is the first Route if there is one, else the Request-URI (RFC 3261
   §8.1.2): its transport (``transport=``, ``sips`` → tls, else ours; ``transport=ws``
   is WSS under ``sips`` or when ours is WSS, RFC 7118 §5.2), ``maddr`` or host, and
   port (5060; 5061 for tls, 80 for ws, 443 for wss).  Resolved once per distinct Route or
   Request-URI text.
"""

from __future__ import annotations

from sipload.sip.errors import LocalProtocolError, ParseError
from sipload.sip.headers import MAGIC_COOKIE, our_via, parse_name_addr_head, sent_by_of
from sipload.sip.message import Request
from sipload.sip.uri import SipUri, Uri
from sipload.ua.state import Peer, UAState


def build_initial(
    s: UAState, method: str, to: str, from_: str, route: str | None, uri: str | None = None
) -> Request:
    """A request outside any dialog (rule 1); ``uri`` overrides the To URI as Request-URI."""
    try:
        to_uri, to_text = address(s, to)
        _, from_text = address(s, from_)
        req = Request(method, uri if uri is not None else to_uri)
        if uri is not None:
            _ = req.uri
    except ParseError as e:
        raise LocalProtocolError(f"bad address: {e.reason}") from e
    req.add_header("From", f"{from_text};tag={s.ids.tag()}")
    req.add_header("To", to_text)
    req.add_header("Call-ID", s.ids.call_id())
    req.add_header("CSeq", f"1 {method}")
    req.add_header("Max-Forwards", "70")
    if route is not None:
        req.add_header("Route", route)
    req.add_header("User-Agent", s.config.user_agent)
    return req


_DEFAULT_PORTS = {"tls": 5061, "ws": 80, "wss": 443}
"""The port of a hop whose URI names none (RFC 3261 §19.1.2, RFC 7118 §5.3 via RFC 6455)."""


def address(s: UAState, text: str) -> tuple[str, str]:
    """(URI text, header text) of a name-addr, parsed once per distinct text."""
    hit = s.addresses.get(text)
    if hit is None:
        na = parse_name_addr_head(text)
        if na.tag is not None:
            raise ParseError("an address for a new request carries no tag")
        hit = (str(na.uri), str(na))
        if len(s.addresses) < 1024:
            s.addresses[text] = hit
    return hit


def via_text(s: UAState, local: int = 0) -> tuple[str, str]:
    """Our Via with a fresh branch (rule 2) over the UA's transport, and that branch: for
    bytes written from text (no parsed Via wanted).  ``local`` as for :func:`add_via`."""
    branch = s.ids.branch()
    return via_with_branch(s, local, branch), branch


def via_with_branch(s: UAState, local: int, branch: str) -> str:
    """:func:`via_text`'s Via with ``branch`` (one it gave before: the same text again)."""
    hostport = s.locals[local][0] if local else s.hostport
    return f"SIP/2.0/{s.config.transport.upper()} {hostport};branch={branch};rport"


def add_via(s: UAState, req: Request, transport: str = "", local: int = 0) -> str:
    """Put our Via with a fresh branch on top of ``req`` (rule 2); returns the branch.
    ``transport``: the one the request goes over, when not the UA's own; ``local``: the
    local address it leaves from (an index of ``s.locals``)."""
    ids = s.ids
    branch = ids.branch()
    tp = (transport or s.config.transport).upper()
    hostport = s.locals[local][0] if local else s.hostport
    # the parsed top Via comes with it: our transactions key on its branch (rule 2)
    key = (tp, hostport, ids.prefix)
    shape = _VIA_SHAPES.get(key)
    if shape is None and key not in _VIA_SHAPES:
        # a branch is MAGIC_COOKIE + prefix + hex digits: one check per prefix
        shape = sent_by_of(tp, hostport, f"{MAGIC_COOKIE}{ids.prefix}0")
        if len(_VIA_SHAPES) >= 256:
            _VIA_SHAPES.clear()
        _VIA_SHAPES[key] = shape
    req.prepend_via(f"SIP/2.0/{tp} {hostport};branch={branch};rport",
                    None if shape is None else our_via(shape, branch))
    return branch


#: (transport, sent-by, branch prefix) -> our Via's parsed transport, host and port, or
#: None where the parser's fast path would not take it (those Vias are parsed when asked)
_VIA_SHAPES: dict[tuple[str, str, str], tuple[str, str, int | None] | None] = {}


def next_hop(s: UAState, req: Request, default: Peer | None = None) -> Peer:
    """Where ``req`` goes (rule 3); ``default`` when its target is not a SIP URI.

    Raises:
        LocalProtocolError: the target is not a SIP URI and there is no default.
    """
    first_route = req.get("route")
    key = first_route if first_route is not None else req.uri_text
    hop = s.hops.get(key)
    if hop is None:
        hop = _resolve_hop(s, req, first_route)
        if hop is None:
            if default is not None:
                return default
            raise LocalProtocolError(f"cannot send to {key[:60]!r}: not a SIP URI")
        if len(s.hops) < 4096:
            s.hops[key] = hop
    return hop


def _resolve_hop(s: UAState, req: Request, first_route: str | None) -> Peer | None:
    uri: Uri
    if first_route is not None:
        uri = parse_name_addr_head(first_route.split(",")[0]).uri
    else:
        uri = req.uri
    if not isinstance(uri, SipUri):
        return None
    transport = uri.transport or ("tls" if uri.scheme == "sips" else s.config.transport)
    if transport == "ws" and (uri.scheme == "sips" or s.config.transport == "wss"):
        transport = "wss"  # RFC 7118 §5.2: transport=ws names WSS too
    port = uri.port or _DEFAULT_PORTS.get(transport, 5060)
    maddr = uri.params.get("maddr")
    return (transport, maddr or uri.host_plain, port)
