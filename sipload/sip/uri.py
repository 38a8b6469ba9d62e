"""URIs: SIP and SIPS (RFC 3261 §19.1), tel (RFC 3966) and other absolute URIs.

A parsed URI keeps its parts as they were written (escapes included), so that
serializing gives back the same text; comparison follows §19.1.4 (user and
password case-sensitive after unescaping, host case-insensitive, parameters
that appear in both must match, ``user``/``ttl``/``method``/``maddr``/
``transport`` must match when either side has them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sipload.sip.errors import ParseError
from sipload.sip.grammar import (
    HNV_RE,
    HOST_RE,
    PARAMCHARS_RE,
    PASSWORD_RE,
    TOKEN_RE,
    USER_RE,
    Params,
    unescape,
)

# SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
_SIP_RE = re.compile(
    r"(?P<scheme>sips?):(?:(?P<user>[^:@]*)(?::(?P<password>[^@]*))?@)?"
    r"(?P<host>\[[^\]]*\]|[^:;?\[\]]*)(?::(?P<port>[^;?]*))?"
    r"(?P<params>;[^?]*)?(?:\?(?P<headers>.*))?",
    re.IGNORECASE | re.DOTALL,
)
# absoluteURI = scheme ":" ( hier-part / opaque-part )
# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_ABS_RE = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):(\S+)")
_IPV4_RE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")


_NO_HEADERS: list[tuple[str, str]] = []
"""The headers of every :class:`SipUri` without any: one list, never mutated."""


@dataclass(slots=True, init=False)
class SipUri:
    """A ``sip:`` or ``sips:`` URI.

    ``user`` and ``password`` are kept escaped as written; ``user_plain`` gives
    them decoded.  ``host`` keeps IPv6 references with their brackets.
    """

    host: str
    user: str | None = None
    port: int | None = None
    scheme: str = "sip"
    password: str | None = None
    params: Params = field(default_factory=Params)
    headers: list[tuple[str, str]] = field(default_factory=list)

    def __init__(
        self,
        host: str,
        user: str | None = None,
        port: int | None = None,
        scheme: str = "sip",
        password: str | None = None,
        params: Params | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.host = host
        self.user = user
        self.port = port
        self.scheme = scheme
        self.password = password
        self.params = Params() if params is None else params
        self.headers = headers if headers else _NO_HEADERS

    @property
    def user_plain(self) -> str | None:
        return None if self.user is None else unescape(self.user)

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    @property
    def host_plain(self) -> str:
        """The host without IPv6 brackets, for socket calls."""
        h = self.host
        return h[1:-1] if h.startswith("[") else h

    @property
    def transport(self) -> str | None:
        t = self.params.get("transport")
        return t.lower() if t else None

    @property
    def lr(self) -> bool:
        return "lr" in self.params

    def copy(self) -> SipUri:
        return SipUri(
            self.host, self.user, self.port, self.scheme, self.password,
            self.params.copy(), list(self.headers),
        )

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts.append(":" + self.password)
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        if self.params.items:
            parts.append(str(self.params))
        if self.headers:
            parts.append("?" + "&".join(f"{k}={v}" for k, v in self.headers))
        return "".join(parts)

    def matches(self, other: Uri) -> bool:
        """URI equality per RFC 3261 §19.1.4."""
        if not isinstance(other, SipUri) or other.scheme != self.scheme:
            return False
        if self.user_plain != other.user_plain or self.password != other.password:
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        for name in ("user", "ttl", "method", "maddr", "transport"):
            a, b = self.params.get(name), other.params.get(name)
            if (a is None) != (b is None) or (a and b and a.lower() != b.lower()):
                return False
        mine = {k.lower(): v for k, v in self.params.items}
        for k, v in other.params.items:
            lk = k.lower()
            if lk in mine and (mine[lk] or "").lower() != (v or "").lower():
                return False
        mh = {unescape(k).lower(): unescape(v) for k, v in self.headers}
        oh = {unescape(k).lower(): unescape(v) for k, v in other.headers}
        return mh == oh


@dataclass(slots=True)
class TelUri:
    """A ``tel:`` URI (RFC 3966): the number and its parameters."""

    number: str
    params: Params = field(default_factory=Params)
    scheme: str = "tel"

    def __str__(self) -> str:
        return f"tel:{self.number}{self.params}"

    def copy(self) -> TelUri:
        return TelUri(self.number, self.params.copy())

    def matches(self, other: Uri) -> bool:
        if not isinstance(other, TelUri):
            return False
        strip = str.maketrans("", "", "-.()")
        return self.number.translate(strip) == other.number.translate(strip)


@dataclass(slots=True)
class AbsoluteUri:
    """Any other absolute URI, kept opaque (``scheme:rest``)."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"

    def copy(self) -> AbsoluteUri:
        return AbsoluteUri(self.scheme, self.rest)

    def matches(self, other: Uri) -> bool:
        return isinstance(other, AbsoluteUri) and str(self) == str(other)


Uri = SipUri | TelUri | AbsoluteUri


def _parse_uri_params(text: str) -> Params:
    items: list[tuple[str, str | None]] = []
    for piece in text[1:].split(";"):
        name, eq, value = piece.partition("=")
        if not name or PARAMCHARS_RE.fullmatch(name) is None:
            raise ParseError(f"bad URI parameter {piece!r}")
        if eq:
            if not value or PARAMCHARS_RE.fullmatch(value) is None:
                raise ParseError(f"bad URI parameter value {piece!r}")
            items.append((name, value))
        else:
            items.append((name, None))
    return Params(items)


def _parse_sip(text: str) -> SipUri:
    m = _SIP_RE.fullmatch(text)
    if m is None:
        raise ParseError(f"malformed SIP URI {text[:80]!r}")
    user, password, host, port_s, params_s, headers_s = m.group(
        "user", "password", "host", "port", "params", "headers"
    )
    if user is not None and USER_RE.fullmatch(user) is None:
        raise ParseError(f"bad user part in URI {text[:80]!r}")
    if password is not None and PASSWORD_RE.fullmatch(password) is None:
        raise ParseError(f"bad password in URI {text[:80]!r}")
    if not host or HOST_RE.fullmatch(host) is None:
        raise ParseError(f"bad host in URI {text[:80]!r}")
    port: int | None = None
    if port_s is not None:
        if not port_s.isdigit() or not port_s.isascii() or int(port_s) > 65535:
            raise ParseError(f"bad port in URI {text[:80]!r}")
        port = int(port_s)
    params = _parse_uri_params(params_s) if params_s else Params()
    headers: list[tuple[str, str]] = []
    if headers_s is not None:
        for h in headers_s.split("&"):
            k, eq, v = h.partition("=")
            if not k or not eq or HNV_RE.fullmatch(k) is None or HNV_RE.fullmatch(v) is None:
                raise ParseError(f"bad URI header {h!r}")
            headers.append((k, v))
    return SipUri(host, user, port, m.group("scheme").lower(), password, params, headers)


_CACHE: dict[str, Uri] = {}
_CACHE_SIZE = 4096


def parse_uri(text: str) -> Uri:
    """Parse a URI as it appears in a Request-URI or inside ``<...>``.

    The same few URIs recur in every call of a run (the peer's Contact, the
    Request-URI), so parses are cached by text; each caller gets its own copy.

    Raises:
        ParseError: the text is not a URI (white space, a bad scheme, bad parts).
    """
    hit = _CACHE.get(text)
    if hit is not None:
        return hit.copy()
    uri = _parse_uri(text)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.clear()
    _CACHE[text] = uri.copy()
    return uri


def _parse_uri(text: str) -> Uri:
    colon = text.find(":")
    if colon <= 0:
        raise ParseError(f"not a URI: {text[:80]!r}")
    scheme = text[:colon].lower()
    if scheme in ("sip", "sips"):
        return _parse_sip(text)
    m = _ABS_RE.fullmatch(text)
    if m is None:
        raise ParseError(f"not a URI: {text[:80]!r}")
    if scheme == "tel":
        number, _, rest = m.group(2).partition(";")
        if not number:
            raise ParseError(f"empty tel number: {text[:80]!r}")
        params = _parse_uri_params(";" + rest) if rest else Params()
        return TelUri(number, params)
    return AbsoluteUri(m.group(1), m.group(2))


def parse_hostport(text: str) -> tuple[str, int | None]:
    """Parse ``host[:port]`` (sent-by, Via received and the like)."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ParseError(f"bad IPv6 reference {text!r}")
        host, rest = text[: end + 1], text[end + 1 :].strip()
    else:
        host, _, p = text.partition(":")
        host = host.strip()
        rest = ":" + p if _ else ""
    if HOST_RE.fullmatch(host) is None:
        raise ParseError(f"bad host {host!r}")
    if not rest:
        return host, None
    if not rest.startswith(":"):
        raise ParseError(f"bad host:port {text!r}")
    p = rest[1:].strip()
    if not p.isdigit() or not p.isascii() or int(p) > 65535:
        raise ParseError(f"bad port in {text!r}")
    return host, int(p)


def is_ip_address(host: str) -> bool:
    """True for an IPv4 address or an IPv6 reference."""
    return host.startswith("[") or _IPV4_RE.fullmatch(host) is not None


def is_token(text: str) -> bool:
    return TOKEN_RE.fullmatch(text) is not None
