"""Header names and the typed header values that SIP logic needs.

Owns: the compact-form table (RFC 3261 §7.3.3), canonical spellings for
serialization, which headers are comma lists, and parsers for Via, name-addr
(From, To, Contact, Route, Record-Route, Refer-To ...), CSeq, RAck and the
option-tag lists.  Every parser raises only :class:`ParseError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from sipload.sip.errors import ParseError
from sipload.sip.grammar import (
    QUOTED_STRING,
    TOKEN,
    Params,
    parse_params,
    quote,
    split_commas,
    unquote,
)
from sipload.sip.uri import AbsoluteUri, SipUri, Uri, parse_hostport, parse_uri

# Compact forms, RFC 3261 §7.3.3 and later RFCs (o: Event, u: Allow-Events, r: Refer-To,
# b: Referred-By, x: Session-Expires, y: Identity, a: Accept-Contact, j: Reject-Contact,
# d: Request-Disposition).
COMPACT: dict[str, str] = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
    "v": "via", "o": "event", "u": "allow-events", "r": "refer-to", "b": "referred-by",
    "x": "session-expires", "y": "identity", "a": "accept-contact", "j": "reject-contact",
    "d": "request-disposition",
}

_CANONICAL_LIST = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "Identity",
    "In-Reply-To", "Max-Forwards", "Min-Expires", "Min-SE", "MIME-Version", "Organization",
    "Path", "Priority", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck",
    "Reason", "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Replaces",
    "Reply-To", "Request-Disposition", "Require", "Retry-After", "Route", "RSeq",
    "Server", "Service-Route", "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject",
    "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent",
    "Via", "Warning", "WWW-Authenticate",
]
CANONICAL: dict[str, str] = {n.lower(): n for n in _CANONICAL_LIST}

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1).  The
# Authorization family is *not* split: its commas separate auth-params.
LIST_HEADERS = frozenset({
    "accept", "accept-encoding", "accept-language", "alert-info", "allow", "allow-events",
    "call-info", "contact", "content-encoding", "content-language", "error-info",
    "in-reply-to", "path", "proxy-require", "record-route", "reason", "reject-contact",
    "accept-contact", "require", "route", "service-route", "supported", "unsupported",
    "via", "warning",
})

# Headers that may appear at most once (RFC 3261 §20; multi01 in RFC 4475).
SINGLE_HEADERS = frozenset({
    "call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type",
    "expires", "min-expires", "rseq", "rack", "session-expires", "min-se", "refer-to",
    "event", "subscription-state",
})


_KEY_CACHE: dict[str, str] = {}


def header_key(name: str) -> str:
    """The lookup key of a header name: lower case, compact forms expanded."""
    key = _KEY_CACHE.get(name)
    if key is not None:
        return key
    key = name.lower()
    if len(key) == 1:
        key = COMPACT.get(key, key)
    if len(_KEY_CACHE) < 4096:
        _KEY_CACHE[name] = key
    return key


def display_name_of(key: str, original: str) -> str:
    """How a header is written when serialized: canonical if known, else as it came."""
    return CANONICAL.get(key, original if len(original) > 1 else key)


# ---------------------------------------------------------------------------- Via

# via-parm = sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol = protocol-name SLASH protocol-version SLASH transport
_VIA_RE = re.compile(
    r"[ \t]*(" + TOKEN + r")[ \t]*/[ \t]*(" + TOKEN + r")[ \t]*/[ \t]*(" + TOKEN + r")"
    r"[ \t]+(\[[0-9A-Fa-f:.]+\](?:[ \t]*:[ \t]*[0-9]+)?|[A-Za-z0-9_\-.]+(?:[ \t]*:[ \t]*[0-9]+)?)"
    r"(.*)",
    re.DOTALL,
)

MAGIC_COOKIE = "z9hG4bK"


@dataclass(slots=True, init=False)
class Via:
    """One Via header value: ``SIP/2.0/UDP host:port;branch=...``."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=Params)
    protocol: str = "SIP/2.0"

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: Params | None = None,
        protocol: str = "SIP/2.0",
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.params = Params() if params is None else params
        self.protocol = protocol

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> str | None:
        """``None`` when absent, ``""`` when present without a value."""
        if "rport" not in self.params:
            return None
        return self.params.get("rport") or ""

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def ttl(self) -> int | None:
        t = self.params.get("ttl")
        return int(t) if t is not None and t.isdigit() else None

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    @property
    def rfc3261_branch(self) -> bool:
        b = self.branch
        return b is not None and b.startswith(MAGIC_COOKIE)

    def __str__(self) -> str:
        hp = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.protocol}/{self.transport} {hp}{self.params}"


# Fast path: "SIP/2.0/UDP host[:port][;name[=value]]*" with nothing unusual in it.
_FAST_PARAMS_RE = re.compile(r"(?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~:\[\]]+)?)*")
_FAST_HOST_RE = re.compile(r"[A-Za-z0-9_\-.]+|\[[0-9A-Fa-f:.]+\]")


def _fast_via(value: str) -> Via | None:
    """Parse the common Via form without the general grammar; None if unsure."""
    if not value.startswith("SIP/2.0/"):
        return None
    sp = value.find(" ", 8)
    if sp < 0:
        return None
    transport = value[8:sp]
    rest = value[sp + 1 :]
    semi = rest.find(";")
    if semi < 0:
        hostport, ptext = rest, ""
    else:
        hostport, ptext = rest[:semi], rest[semi:]
    if not transport.isalnum() or not transport.isascii():
        return None
    if ptext and _FAST_PARAMS_RE.fullmatch(ptext) is None:
        return None
    colon = hostport.rfind(":")
    port: int | None = None
    if colon > 0 and hostport[colon - 1] != ":" and (
            not hostport.startswith("[") or hostport[colon - 1] == "]"):
        digits = hostport[colon + 1 :]
        if not digits.isdigit() or not digits.isascii() or len(digits) > 5:
            return None
        port = int(digits)
        if port > 65535:
            return None
        hostport = hostport[:colon]
    if _FAST_HOST_RE.fullmatch(hostport) is None:
        return None
    items: list[tuple[str, str | None]] = []
    if ptext:
        for piece in ptext[1:].split(";"):
            name, eq, v = piece.partition("=")
            items.append((name, v if eq else None))
            if name == "branch" and not v:
                return None
            if name.lower() == "ttl" and (not v.isdigit() or int(v) > 255):
                return None
    return Via(transport.upper(), hostport, port, Params(items))


def sent_by_of(transport: str, sent_by: str, branch: str) -> tuple[str, str, int | None] | None:
    """Transport, host and port of ``SIP/2.0/{transport} {sent_by};branch={branch};rport``
    as :func:`parse_via` gives them, when its fast path takes that Via (else None): a
    sender that checked this once per ``sent_by`` and branch alphabet can build the
    parsed Via of each request it sends (:func:`our_via`) instead of parsing it."""
    via = _fast_via(f"SIP/2.0/{transport} {sent_by};branch={branch};rport")
    return None if via is None else (via.transport, via.host, via.port)


def our_via(shape: tuple[str, str, int | None], branch: str) -> Via:
    """The Via :func:`parse_via` makes of ``SIP/2.0/T host:port;branch=B;rport`` for
    a ``shape`` from :func:`sent_by_of` and a branch of the alphabet it was checked with."""
    return Via(shape[0], shape[1], shape[2], Params([("branch", branch), ("rport", None)]))


def parse_via(value: str) -> Via:
    fast = _fast_via(value)
    if fast is not None:
        return fast
    m = _VIA_RE.fullmatch(value)
    if m is None:
        raise ParseError(f"malformed Via {value[:80]!r}")
    name, version, transport, sent_by, rest = m.groups()
    host, port = parse_hostport(sent_by.replace(" ", "").replace("\t", ""))
    params = parse_params(rest, "Via")
    for k, v in params.items:
        lk = k.lower()
        if lk == "ttl" and (v is None or not v.isdigit() or int(v) > 255):
            raise ParseError(f"bad Via ttl {v!r}")
        if lk == "branch" and not v:
            raise ParseError("empty Via branch")
    return Via(transport.upper(), host, port, params, f"{name.upper()}/{version}")


def parse_vias(values: list[str]) -> list[Via]:
    out: list[Via] = []
    for raw in values:
        stripped = raw.strip()
        if stripped.endswith(",") or ",," in stripped.replace(" ", ""):
            raise ParseError("empty element in Via list")
        for v in split_commas(raw):
            out.append(parse_via(v))
    return out


# ---------------------------------------------------------------------------- name-addr

_DISPLAY_TOKENS_RE = re.compile(r"(?:" + TOKEN + r")(?:[ \t]+" + TOKEN + r")*")
_QUOTED_RE = re.compile(r"[ \t]*(" + QUOTED_STRING + r")[ \t]*")


@dataclass(slots=True, init=False)
class NameAddress:
    """A name-addr or addr-spec with header parameters (From, To, Contact, Route ...).

    ``display_name`` is decoded (no quotes); serialization always writes the
    URI in brackets.
    """

    uri: Uri
    display_name: str | None = None
    params: Params = field(default_factory=Params)

    def __init__(
        self,
        uri: Uri,
        display_name: str | None = None,
        params: Params | None = None,
    ) -> None:
        self.uri = uri
        self.display_name = display_name
        self.params = Params() if params is None else params

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def expires(self) -> int | None:
        e = self.params.get("expires")
        return int(e) if e is not None and e.isdigit() else None

    @property
    def q(self) -> float | None:
        q = self.params.get("q")
        try:
            return float(q) if q is not None else None
        except ValueError:
            return None

    def copy(self) -> NameAddress:
        return NameAddress(self.uri.copy(), self.display_name, self.params.copy())

    def __str__(self) -> str:
        if self.display_name is not None:
            return f"{quote(self.display_name)} <{self.uri}>{self.params}"
        return f"<{self.uri}>{self.params}"


def parse_name_addr(value: str) -> NameAddress:
    """Parse ``[display-name] <uri> *(;param)`` or ``addr-spec *(;param)``.

    In the addr-spec form every ``;`` starts a header parameter (RFC 3261
    §20.10), and the URI may not contain ``,``, ``?`` or ``;``.
    """
    text = value.strip()
    lt = text.find("<")
    if lt < 0:
        if '"' in text:
            raise ParseError(f"quoted display name without <URI>: {text[:80]!r}")
        uri_text, semi, rest = text.partition(";")
        uri_text = uri_text.strip()
        if not uri_text or "?" in uri_text or " " in uri_text:
            raise ParseError(f"malformed address {text[:80]!r}")
        uri = parse_uri(uri_text)
        params = parse_params(semi + rest) if semi else Params()
        return NameAddress(uri, None, params)
    display: str | None = None
    head = text[:lt]
    if head.strip():
        m = _QUOTED_RE.fullmatch(head)
        if m is not None:
            display = unquote(m.group(1))
        else:
            dm = _DISPLAY_TOKENS_RE.fullmatch(head.strip())
            if dm is None:
                raise ParseError(f"malformed display name {head[:80]!r}")
            display = dm.group(0)
    elif '"' in head:
        raise ParseError("unterminated quoted display name")
    gt = text.find(">", lt)
    if gt < 0:
        raise ParseError(f"missing '>' in {text[:80]!r}")
    uri = parse_uri(text[lt + 1 : gt].strip())
    params = parse_params(text[gt + 1 :]) if gt + 1 < len(text) else Params()
    for k, v in params.items:
        if k.lower() == "tag" and not v:
            raise ParseError("empty tag parameter")
    return NameAddress(uri, display, params)


_TAG_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


def fast_tag(value: str) -> str | bool | None:
    """The ``tag`` parameter of a From/To value without parsing it all.

    Returns the tag, None when there is plainly none, or False when the value
    is unusual enough that the full parser must decide.
    """
    gt = value.rfind(">")
    if gt >= 0:
        tail = value[gt + 1 :]
    else:
        semi = value.find(";")
        tail = value[semi:] if semi >= 0 else ""
    i = tail.find(";tag=")
    if i < 0:
        return None if "tag" not in tail.lower() else False
    j = tail.find(";", i + 5)
    tag = tail[i + 5 :] if j < 0 else tail[i + 5 : j]
    if _TAG_RE.fullmatch(tag) is None or tail.count(";tag=") > 1:
        return False
    return tag


def parse_name_addr_head(value: str) -> NameAddress:
    """Parse From/To, where the display name may be quoted and hold ``<``."""
    text = value.strip()
    if text.startswith('"'):
        m = _QUOTED_RE.match(text)
        if m is None:
            raise ParseError(f"unterminated quoted display name in {text[:80]!r}")
        rest = text[m.end() :]
        if not rest.startswith("<"):
            raise ParseError(f"expected '<' after display name in {text[:80]!r}")
        na = parse_name_addr(rest)
        na.display_name = unquote(m.group(1))
        return na
    return parse_name_addr(text)


def parse_contacts(values: list[str]) -> list[NameAddress] | None:
    """Parse every Contact value; ``None`` means ``Contact: *``."""
    out: list[NameAddress] = []
    for raw in values:
        elements = split_commas(raw)
        if not elements:
            raise ParseError("empty Contact header")
        for v in elements:
            if v == "*":
                if len(values) != 1 or len(elements) != 1:
                    raise ParseError("Contact '*' mixed with other contacts")
                return None
            out.append(parse_name_addr_head(v))
    return out


# ---------------------------------------------------------------------------- CSeq, RAck

_CSEQ_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK",
                           "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE",
                           "UPDATE"})
_CSEQ_RE = re.compile(r"[ \t]*([0-9]{1,10})[ \t]+(" + TOKEN + r")[ \t]*")
MAX_CSEQ = 2**31 - 1


class CSeq(NamedTuple):
    """``CSeq: 314159 INVITE``; the number is below 2**31 (RFC 3261 §8.1.1.5)."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(value: str) -> CSeq:
    num, sp, method = value.partition(" ")
    if sp and num.isdigit() and num.isascii() and len(num) <= 10 and (
            method in _CSEQ_METHODS):
        seq = int(num)
        if seq <= 2**32 - 1:
            # tuple.__new__ directly: a NamedTuple's own __new__ is an interpreted
            # lambda even in the compiled build (once per message parsed)
            return tuple.__new__(CSeq, (seq, method))
    m = _CSEQ_RE.fullmatch(value)
    if m is None:
        raise ParseError(f"malformed CSeq {value[:80]!r}")
    seq = int(m.group(1))
    if seq > 2**32 - 1:
        raise ParseError(f"CSeq number too large: {seq}")
    return CSeq(seq, m.group(2))


@dataclass(slots=True, frozen=True)
class RAck:
    """``RAck: rseq cseq method`` (RFC 3262 §7.2)."""

    rseq: int
    cseq: int
    method: str

    def __str__(self) -> str:
        return f"{self.rseq} {self.cseq} {self.method}"


_RACK_RE = re.compile(r"[ \t]*([0-9]{1,10})[ \t]+([0-9]{1,10})[ \t]+(" + TOKEN + r")[ \t]*")


def parse_rack(value: str) -> RAck:
    m = _RACK_RE.fullmatch(value)
    if m is None:
        raise ParseError(f"malformed RAck {value[:80]!r}")
    return RAck(int(m.group(1)), int(m.group(2)), m.group(3))


# ---------------------------------------------------------------------------- small scalars

def parse_uint(value: str, what: str, limit: int = 2**32 - 1) -> int:
    """A delta-seconds / 1*DIGIT value; too large or not digits is a 400."""
    v = value.strip()
    if not v.isdigit() or not v.isascii() or len(v) > 10 or int(v) > limit:
        raise ParseError(f"bad {what} {value[:40]!r}")
    return int(v)


def parse_tokens(values: list[str]) -> list[str]:
    """An option-tag or method list: Require, Supported, Allow, Unsupported ..."""
    out: list[str] = []
    for raw in values:
        for v in split_commas(raw):
            if re.fullmatch(TOKEN, v) is None:
                raise ParseError(f"bad token {v[:40]!r}")
            out.append(v)
    return out


@dataclass(slots=True)
class MediaType:
    """``type/subtype;params`` of Content-Type and Accept."""

    type: str
    subtype: str
    params: Params = field(default_factory=Params)

    @property
    def mime(self) -> str:
        return f"{self.type}/{self.subtype}".lower()

    def __str__(self) -> str:
        return f"{self.type}/{self.subtype}{self.params}"


_MEDIA_RE = re.compile(r"[ \t]*(" + TOKEN + r")[ \t]*/[ \t]*(" + TOKEN + r")(.*)", re.DOTALL)


def parse_media_type(value: str) -> MediaType:
    m = _MEDIA_RE.fullmatch(value)
    if m is None:
        raise ParseError(f"malformed media type {value[:80]!r}")
    return MediaType(m.group(1), m.group(2), parse_params(m.group(3), "media type"))


@dataclass(slots=True)
class ValueWithParams:
    """A token value with parameters: Event, Session-Expires, Subscription-State ..."""

    value: str
    params: Params = field(default_factory=Params)

    def __str__(self) -> str:
        return f"{self.value}{self.params}"


def parse_value_params(value: str) -> ValueWithParams:
    v, semi, rest = value.partition(";")
    v = v.strip()
    if not v:
        raise ParseError(f"empty value in {value[:80]!r}")
    return ValueWithParams(v, parse_params(semi + rest) if semi else Params())


def uri_is_sip(uri: Uri) -> bool:
    return isinstance(uri, SipUri)


def uri_is_absolute(uri: Uri) -> bool:
    return isinstance(uri, AbsoluteUri)
