"""The SIP message model: requests, responses, their headers and body.

Theory of operation
===================

1. A message keeps its header fields in order as ``(key, name, value)`` triples:
   ``key`` is the lower-case full name used for look-ups (compact forms already
   expanded), ``name`` is how the field is written out (canonical spelling for
   known headers, the sender's spelling for unknown ones), ``value`` is the
   unfolded text with surrounding white space removed.
2. Typed views (``vias``, ``cseq``, ``from_``, ``to`` ...) are parsed on first
   access and cached; any header change drops the caches.  A typed view of a
   malformed header raises :class:`ParseError` with the status to answer.
3. Serializing writes the start line, each field as ``Name: value``, a
   Content-Length computed from the body (in the position the field had, or
   last), the empty line, then the body: byte-exact and canonical.
4. Nothing here reads a clock or a socket.
"""

from __future__ import annotations

from typing import Final

from sipload.sip.errors import LocalProtocolError, ParseError
from sipload.sip.grammar import split_commas
from sipload.sip.headers import (
    LIST_HEADERS,
    CSeq,
    MediaType,
    NameAddress,
    RAck,
    ValueWithParams,
    Via,
    display_name_of,
    fast_tag,
    header_key,
    parse_contacts,
    parse_cseq,
    parse_media_type,
    parse_name_addr_head,
    parse_rack,
    parse_tokens,
    parse_uint,
    parse_value_params,
    parse_via,
    parse_vias,
)
from sipload.sip.uri import Uri, parse_uri

Header = tuple[str, str, str]

_UNREAD: Final = "\x00unread"
"""A From or To tag not looked for yet (no tag holds a NUL)."""


class Message:
    """Common part of :class:`Request` and :class:`Response`."""

    __slots__ = ("_cid", "_cseq", "_from", "_ftag", "_headers", "_to", "_top", "_ttag", "_vias",
                 "body")

    def __init__(self, headers: list[Header] | None = None, body: bytes = b"") -> None:
        self._headers: list[Header] = headers if headers is not None else []
        self.body: bytes = body
        self._vias: list[Via] | None = None
        self._top: Via | None = None
        self._cseq: CSeq | None = None
        self._from: NameAddress | None = None
        self._to: NameAddress | None = None
        self._ftag: str | None = _UNREAD
        self._ttag: str | None = _UNREAD
        self._cid: str | None = None

    # ------------------------------------------------------------------ raw access

    def _changed(self) -> None:
        self._vias = None
        self._top = None
        self._cseq = None
        self._from = None
        self._to = None
        self._ftag = _UNREAD
        self._ttag = _UNREAD
        self._cid = None

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Every header field as ``(name, value)``, in order."""
        return [(name, value) for _, name, value in self._headers]

    def get(self, name: str) -> str | None:
        """The value of the first field called ``name`` (any spelling), or None."""
        key = header_key(name)
        for k, _, v in self._headers:
            if k == key:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        """The values of every field called ``name``, one per field as written."""
        key = header_key(name)
        return [v for k, _, v in self._headers if k == key]

    def values(self, name: str) -> list[str]:
        """List elements of ``name``: comma lists split (outside quotes and <>)."""
        key = header_key(name)
        raw = [v for k, _, v in self._headers if k == key]
        if key not in LIST_HEADERS:
            return raw
        out: list[str] = []
        for v in raw:
            out.extend(split_commas(v))
        return out

    def has(self, name: str) -> bool:
        key = header_key(name)
        for h in self._headers:  # noqa: SIM110 - a plain loop beats any() here
            if h[0] == key:
                return True
        return False

    def count(self, name: str) -> int:
        key = header_key(name)
        return sum(1 for k, _, _ in self._headers if k == key)

    def set_header(self, name: str, value: str) -> None:
        """Replace every field called ``name`` by one with ``value`` (in the first's place)."""
        key = header_key(name)
        field = (key, display_name_of(key, name), value)
        out: list[Header] = []
        placed = False
        for h in self._headers:
            if h[0] == key:
                if not placed:
                    out.append(field)
                    placed = True
            else:
                out.append(h)
        if not placed:
            out.append(field)
        self._headers = out
        self._changed()

    def add_header(self, name: str, value: str) -> None:
        """Append a field (after the others of that name, or last)."""
        key = header_key(name)
        field = (key, display_name_of(key, name), value)
        hs = self._headers
        i = len(hs)
        while i:
            i -= 1
            if hs[i][0] == key:
                hs.insert(i + 1, field)
                break
        else:
            hs.append(field)
        self._changed()

    def prepend_header(self, name: str, value: str) -> None:
        """Insert a field before the others of that name (a new top Via, Route ...)."""
        key = header_key(name)
        field = (key, display_name_of(key, name), value)
        for i, h in enumerate(self._headers):
            if h[0] == key:
                self._headers.insert(i, field)
                break
        else:
            self._headers.insert(0, field)
        self._changed()

    def prepend_via(self, value: str, parsed: Via | None) -> None:
        """Insert ``value`` as the top Via; ``parsed`` is what :func:`parse_via` makes of
        it (the sender built both: no parse when the top Via is asked for), or None."""
        self.prepend_header("Via", value)
        if parsed is not None:
            self._top = parsed

    def replace_first(self, name: str, value: str) -> None:
        """Replace the value of the first field called ``name`` (the others stay)."""
        key = header_key(name)
        hs = self._headers
        for i, h in enumerate(hs):
            if h[0] == key:
                hs[i] = (key, h[1], value)
                self._changed()
                return
        raise LocalProtocolError(f"no {name} header to replace")

    def remove_header(self, name: str) -> None:
        key = header_key(name)
        self._headers = [h for h in self._headers if h[0] != key]
        self._changed()

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        """Set the body (and its Content-Type when given); Content-Length follows."""
        self.body = body
        if content_type is not None:
            self.set_header("Content-Type", content_type)

    def copy_headers_from(self, other: Message, name: str) -> None:
        """Append every field called ``name`` of ``other``, as written."""
        key = header_key(name)
        for h in other._headers:
            if h[0] == key:
                self._headers.append(h)
        self._changed()

    # ------------------------------------------------------------------ typed views

    def _one(self, key: str) -> str:
        """The value of a single-valued header (check_syntax refuses duplicates)."""
        for k, _, v in self._headers:
            if k == key:
                return v
        raise ParseError(f"missing {display_name_of(key, key)} header")

    @property
    def vias(self) -> list[Via]:
        v = self._vias
        if v is None:
            v = parse_vias([v for k, _, v in self._headers if k == "via"])
            self._vias = v
        return v

    def via_count(self) -> int:
        """How many Via values there are, without parsing them in the common case."""
        n = 0
        for k, _, v in self._headers:
            if k == "via":
                if "," in v:
                    return len(self.vias)
                n += 1
        return n

    @property
    def via(self) -> Via:
        """The top Via (raises ParseError when there is none)."""
        vias = self._vias
        if vias is not None:
            if not vias:
                raise ParseError("missing Via header")
            return vias[0]
        top = self._top
        if top is None:
            for k, _, v in self._headers:
                if k == "via":
                    first = v if "," not in v else split_commas(v)[0] if split_commas(v) else ""
                    top = parse_via(first)
                    break
            else:
                raise ParseError("missing Via header")
            self._top = top
        return top

    @property
    def call_id(self) -> str:
        cid = self._cid
        if cid is None:  # read ~5 times a message: looked up once
            cid = self._one("call-id")
            self._cid = cid
        return cid

    @property
    def cseq(self) -> CSeq:
        c = self._cseq
        if c is None:
            c = parse_cseq(self._one("cseq"))
            self._cseq = c
        return c

    @property
    def from_(self) -> NameAddress:
        f = self._from
        if f is None:
            f = parse_name_addr_head(self._one("from"))
            self._from = f
        return f

    @property
    def to(self) -> NameAddress:
        t = self._to
        if t is None:
            t = parse_name_addr_head(self._one("to"))
            self._to = t
        return t

    @property
    def from_tag(self) -> str | None:
        f = self._from
        if f is not None:
            return f.tag
        known = self._ftag
        if known is not _UNREAD:
            return known
        tag = fast_tag(self._one("from"))
        found = (tag if isinstance(tag, str) else None) if tag is not False else self.from_.tag
        self._ftag = found  # read from the header's text: a header change forgets it
        return found

    @property
    def to_tag(self) -> str | None:
        t = self._to
        if t is not None:
            return t.tag
        known = self._ttag
        if known is not _UNREAD:
            return known
        tag = fast_tag(self._one("to"))
        found = (tag if isinstance(tag, str) else None) if tag is not False else self.to.tag
        self._ttag = found
        return found

    @property
    def contacts(self) -> list[NameAddress] | None:
        """Contact values; ``None`` for ``Contact: *``; ``[]`` when absent."""
        return parse_contacts(self.get_all("contact"))

    @property
    def contact(self) -> NameAddress | None:
        cs = self.contacts
        return cs[0] if cs else None

    @property
    def routes(self) -> list[NameAddress]:
        return [parse_name_addr_head(v) for v in self.values("route")]

    @property
    def record_routes(self) -> list[NameAddress]:
        return [parse_name_addr_head(v) for v in self.values("record-route")]

    @property
    def max_forwards(self) -> int | None:
        v = self.get("max-forwards")
        return None if v is None else parse_uint(v, "Max-Forwards", 255)

    @property
    def expires(self) -> int | None:
        v = self.get("expires")
        return None if v is None else parse_uint(v, "Expires")

    @property
    def content_type(self) -> MediaType | None:
        v = self.get("content-type")
        return None if v is None else parse_media_type(v)

    @property
    def require(self) -> list[str]:
        return parse_tokens(self.get_all("require"))

    @property
    def proxy_require(self) -> list[str]:
        return parse_tokens(self.get_all("proxy-require"))

    @property
    def supported(self) -> list[str]:
        return parse_tokens(self.get_all("supported"))

    @property
    def unsupported(self) -> list[str]:
        return parse_tokens(self.get_all("unsupported"))

    @property
    def allow(self) -> list[str]:
        return parse_tokens(self.get_all("allow"))

    @property
    def rseq(self) -> int | None:
        v = self.get("rseq")
        return None if v is None else parse_uint(v, "RSeq")

    @property
    def rack(self) -> RAck | None:
        v = self.get("rack")
        return None if v is None else parse_rack(v)

    @property
    def session_expires(self) -> ValueWithParams | None:
        v = self.get("session-expires")
        return None if v is None else parse_value_params(v)

    @property
    def min_se(self) -> int | None:
        v = self.get("min-se")
        return None if v is None else parse_uint(parse_value_params(v).value, "Min-SE")

    @property
    def refer_to(self) -> NameAddress | None:
        v = self.get("refer-to")
        return None if v is None else parse_name_addr_head(v)

    @property
    def event(self) -> ValueWithParams | None:
        v = self.get("event")
        return None if v is None else parse_value_params(v)

    # ------------------------------------------------------------------ output

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The message on the wire, with Content-Length computed from the body."""
        lines = [self.start_line()]
        cl_written = False
        for key, name, value in self._headers:
            if key == "content-length":
                if not cl_written:
                    lines.append(f"Content-Length: {len(self.body)}")
                    cl_written = True
            else:
                lines.append(f"{name}: {value}")
        if not cl_written:
            lines.append(f"Content-Length: {len(self.body)}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


class Request(Message):
    """A SIP request: ``METHOD Request-URI SIP/2.0``."""

    __slots__ = ("_uri", "method", "uri_text", "version")

    def __init__(
        self,
        method: str,
        uri: str | Uri,
        headers: list[Header] | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.version = version
        if isinstance(uri, str):
            self.uri_text = uri
            self._uri: Uri | None = None
        else:
            self.uri_text = str(uri)
            self._uri = uri

    @property
    def uri(self) -> Uri:
        """The Request-URI, parsed on first access."""
        u = self._uri
        if u is None:
            u = parse_uri(self.uri_text)
            self._uri = u
        return u

    @uri.setter
    def uri(self, value: Uri) -> None:
        self._uri = value
        self.uri_text = str(value)

    def start_line(self) -> str:
        return f"{self.method} {self.uri_text} {self.version}"

    def copy(self) -> Request:
        r = Request(self.method, self.uri_text, list(self._headers), self.body, self.version)
        return r

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri_text}>"


class Response(Message):
    """A SIP response: ``SIP/2.0 status reason``."""

    __slots__ = ("reason", "status", "version")

    def __init__(
        self,
        status: int,
        reason: str = "",
        headers: list[Header] | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason or REASONS.get(status, "")
        self.version = version

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def copy(self) -> Response:
        return Response(self.status, self.reason, list(self._headers), self.body, self.version)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


REASONS: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK", 202: "Accepted",
    204: "No Notification", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 433: "Anonymity Disallowed",
    436: "Bad Identity-Info", 437: "Unsupported Certificate", 438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support", 440: "Max-Breadth Exceeded",
    469: "Bad Info Package", 470: "Consent Needed", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 555: "Push Notification Service Not Supported",
    580: "Precondition Failure", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable", 607: "Unwanted",
    608: "Rejected",
}
